"""The request id of each call: in every log line of the call and in its reply.

Nova sends its request id (``req-<uuid>``) as the metadata
``x-openstack-request-id``; an operator greps the backend log for the id a
Nova log line or an instance fault shows. The id is bound to a ContextVar in
the gRPC worker thread for the duration of the call, so every log record made
there carries it (as ``record.request_id``, which oslo.log's ContextFormatter
puts in ``logging_context_format_string``), and errors built there carry it in
their ErrorInfo. A call without a well-formed id gets one of its own, so every
call can be found; what a caller sent otherwise is never logged.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from collections.abc import Iterator

import grpc

from dpm_api.v1 import contract

LOG = logging.getLogger(__name__)

METADATA_KEY = contract.REQUEST_ID_METADATA_KEY
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar('request_id', default=None)


def current() -> str | None:
    """The request id of the call this thread is handling; None outside calls."""
    return _request_id.get()


@contextlib.contextmanager
def bound(request_id: str) -> Iterator[None]:
    """``request_id`` is the current one in this thread (and context) until the block ends."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def sent_request_id(metadata) -> str | None:
    """The caller's request id if it sent exactly one, well formed; else None."""
    values = [value for key, value in (metadata or ()) if key.lower() == METADATA_KEY]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    return values[0] if contract.REQUEST_ID.fullmatch(values[0]) else None


def new_request_id() -> str:
    return f'req-{uuid.uuid4()}'


def with_request_id(trailing_metadata, request_id: str) -> tuple:
    """``trailing_metadata`` with the request id added (once)."""
    kept = tuple(item for item in trailing_metadata or () if item[0] != METADATA_KEY)
    return (*kept, (METADATA_KEY, request_id))


class RequestIdInterceptor(grpc.ServerInterceptor):
    """Bind each unary call's request id while its handler runs; return it in the trailers.

    Put it first among the server's interceptors, so that the ones after it
    (the token check) log and refuse with the id bound.
    """

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.unary_unary or handler.unary_stream):
            return handler
        metadata = handler_call_details.invocation_metadata
        sent = sent_request_id(metadata)
        malformed = sent is None and any(key.lower() == METADATA_KEY for key, _ in metadata or ())
        if handler.unary_stream:
            streamed = handler.unary_stream
            if getattr(streamed, 'experimental_non_blocking', False):
                return handler  # the health service's Watch: answered by callbacks

            def stream_with_id(request, context):
                request_id = sent or new_request_id()
                context.set_trailing_metadata(((METADATA_KEY, request_id),))
                responses = streamed(request, context)
                while True:
                    # Bound only while the handler runs: the stream may be closed
                    # from another thread, where this binding does not exist.
                    with bound(request_id):
                        try:
                            response = next(responses)
                        except StopIteration:
                            return
                    yield response

            return grpc.unary_stream_rpc_method_handler(
                stream_with_id,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        inner = handler.unary_unary

        def with_id(request, context):
            # This runs in the worker thread: the ContextVar is that thread's.
            request_id = sent or new_request_id()
            with bound(request_id):
                if malformed:
                    LOG.debug('Ignored a malformed %s metadata', METADATA_KEY)
                try:
                    return inner(request, context)
                finally:
                    # After an abort too: gRPC sends the trailers set by then.
                    context.set_trailing_metadata(
                        with_request_id(context.trailing_metadata(), request_id)
                    )

        return grpc.unary_unary_rpc_method_handler(
            with_id,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def add_request_id_to_log_records() -> None:
    """Make every log record made during a call carry its ``request_id``.

    A record factory, not a handler filter: it reaches every handler (those
    oslo.log sets up and any added later) and runs in the thread that logs.
    Records made outside calls are left as they were. Idempotent.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, 'adds_request_id', False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        request_id = _request_id.get()
        if request_id is not None:
            record.request_id = request_id
            # oslo.log's ContextFormatter copies the record's context (else the
            # thread's current oslo context, if any) onto the record: the call's.
            record.context = {'request_id': request_id}
        return record

    factory.adds_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
