"""What a standby backend answers: DPMHost refused, every health status NOT_SERVING.

Both look at the lease when they answer, not at a stored role: a process
resumed after its lease may have expired (SIGSTOP, a stalled VM) refuses the
calls and health checks queued meanwhile before its coordination thread has
run at all (see :mod:`dpm_backend.coordination`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2

from dpm_backend import errors
from dpm_backend import guard

LOG = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StandbyInterceptor(grpc.ServerInterceptor):
    """Refuse every DPMHost call with UNAVAILABLE (BACKEND_STANDBY) unless the lease is valid."""

    def __init__(self, valid: Callable[[], bool], why_not: Callable[[], str], service: str):
        self._valid = valid
        self._why_not = why_not
        self._prefix = f'/{service}/'

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler
        valid, why_not = self._valid, self._why_not
        action = method.rpartition('/')[2]

        def standby(request) -> errors.DPMError | None:
            return None if valid() else errors.backend_standby(action, why_not())

        return guard.checked(handler, method, standby)


class HealthServicer(health.HealthServicer):
    """The standard health service, NOT_SERVING for every service unless the lease is valid."""

    def __init__(self, valid: Callable[[], bool]) -> None:
        super().__init__()
        self._valid = valid

    def _gated(self, response: health_pb2.HealthCheckResponse | None):
        if response is not None and response.status == SERVING and not self._valid():
            return health_pb2.HealthCheckResponse(status=NOT_SERVING)
        return response

    def Check(self, request, context):
        return self._gated(super().Check(request, context))

    def Watch(self, request, context, send_response_callback=None):
        if send_response_callback is None:
            return super().Watch(request, context)

        def send(response):
            send_response_callback(self._gated(response))

        return super().Watch(request, context, send)
