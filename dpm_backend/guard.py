"""A check before a DPMHost handler: the one way the server interceptors refuse a call.

The token check and the standby check each decide from the request whether a
call may run; this wraps the handler (unary, or a response stream such as
WatchInstances, checked before its first response) so that a refused call is
aborted with the check's status before the servicer sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc

from dpm_backend.errors import DPMError

LOG = logging.getLogger(__name__)

Check = Callable[[Any], DPMError | None]


def checked(handler: grpc.RpcMethodHandler, method: str, check: Check) -> grpc.RpcMethodHandler:
    """``handler`` run only when ``check(request)`` returns None; else aborted with its error."""

    def refuse_unless_allowed(request, context) -> None:
        error = check(request)
        if error is not None:
            LOG.info('%s refused: %s %s', method, error.code.name, error.reason_name)
            context.abort_with_status(error.to_status())  # raises

    if handler.unary_stream:
        streamed = handler.unary_stream

        def checked_stream(request, context):
            refuse_unless_allowed(request, context)
            yield from streamed(request, context)

        return grpc.unary_stream_rpc_method_handler(
            checked_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if not handler.unary_unary:
        # Every DPMHost method is unary or a response stream: refuse what is not checked.
        raise RuntimeError(f'{method} has no check')
    inner = handler.unary_unary

    def checked_unary(request, context):
        refuse_unless_allowed(request, context)
        return inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        checked_unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
