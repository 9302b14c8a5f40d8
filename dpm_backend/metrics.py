"""Prometheus metrics: gRPC calls, HMC requests, job waits, HMC sessions, hosts.

Each Backend keeps its metrics in a registry of its own (tests run many
backends in one process) and serves it over HTTP when ``[backend]
metrics_listen`` is set. The gRPC server metrics carry the names
go-grpc-prometheus made common, so existing dashboards and alerts apply;
the others use the ``dpm_backend_`` prefix. Base units, counters end in
``_total``, and no label holds an instance uuid or an HMC object id: HMC
requests are counted by URI class (object ids replaced by ``{id}``), and
hosts come from the config.

Recording costs a few microseconds per call or HMC request (a label lookup
and an increment); what changes slowly (sessions, reachability, hosts) is
read at scrape time instead.
"""

from __future__ import annotations

import importlib.metadata
import re
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import grpc
import zhmcclient
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import Info
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily

from dpm_backend.hmc import SessionPool

DISTRIBUTION = 'nova-dpm-grpc'

# An operation may wait for a partition start of many minutes; health checks
# take a millisecond.
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
HMC_REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
JOB_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
SESSION_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

GRPC_LABELS = ('grpc_type', 'grpc_service', 'grpc_method')
# go-grpc-prometheus's grpc_type values, by (request_streaming, response_streaming).
GRPC_TYPES = {
    (False, False): 'unary',
    (True, False): 'client_stream',
    (False, True): 'server_stream',
    (True, True): 'bidi_stream',
}
_HANDLER_FACTORIES = {
    (False, False): ('unary_unary', grpc.unary_unary_rpc_method_handler),
    (True, False): ('stream_unary', grpc.stream_unary_rpc_method_handler),
    (False, True): ('unary_stream', grpc.unary_stream_rpc_method_handler),
    (True, True): ('stream_stream', grpc.stream_stream_rpc_method_handler),
}

# notification-type header values the HMC documents (HMC WS API book, "Notifications").
NOTIFICATION_TYPES = frozenset(
    {
        'property-change',
        'status-change',
        'inventory-change',
        'job-completion',
        'log-entry',
        'os-message',
    }
)
# The code of an HMC request that succeeded: zhmcclient returns the result
# of a 2xx reply without its status.
HMC_SUCCESS = '2xx'
# A URI path segment that is an object or element id: it has a digit (UUIDs,
# storage port indexes) or is long hex.
_ID_SEGMENT = re.compile(r'[0-9]|^[0-9a-fA-F-]{8,}$')


def version() -> str:
    """The installed version of this project; 'unknown' when run from a source tree."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return 'unknown'


def uri_class(uri: str) -> str:
    """The URI's path with every object id replaced by ``{id}`` and no query string."""
    path = uri.partition('?')[0]
    return '/'.join('{id}' if _ID_SEGMENT.search(part) else part for part in path.split('/'))


def hmc_code(exc: BaseException) -> str:
    """The HTTP status of an HMC error reply, or the exception's name when none came."""
    if isinstance(exc, zhmcclient.HTTPError):
        return str(exc.http_status)
    # zhmcclient raises ServerAuthError for a 403 it could not cure by a new logon.
    details = getattr(exc, 'details', None)
    if isinstance(exc, zhmcclient.ServerAuthError) and isinstance(details, zhmcclient.HTTPError):
        return str(details.http_status)
    return type(exc).__name__


class Metrics:
    """The metrics of one backend, in a registry of their own."""

    def __init__(self, release: str) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # prometheus_client appends _total to counter names.
        self.grpc_started = Counter(
            'grpc_server_started',
            'RPCs started on the server.',
            GRPC_LABELS,
            registry=registry,
        )
        self.grpc_handled = Counter(
            'grpc_server_handled',
            'RPCs completed on the server, by status code (refusals by the token check too).',
            (*GRPC_LABELS, 'grpc_code'),
            registry=registry,
        )
        self.grpc_seconds = Histogram(
            'grpc_server_handling_seconds',
            'Seconds from the start of an RPC to its status.',
            GRPC_LABELS,
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.hmc_requests = Counter(
            'dpm_backend_hmc_requests',
            'HMC requests sent, by URI class and HTTP status (2xx for a success) or, '
            'when no reply came, the zhmcclient exception (ConnectTimeout, ReadTimeout, ...).',
            ('method', 'uri_class', 'code'),
            registry=registry,
        )
        self.hmc_seconds = Histogram(
            'dpm_backend_hmc_request_seconds',
            'Seconds until the reply (or failure) of an HMC request.',
            ('method', 'uri_class'),
            buckets=HMC_REQUEST_BUCKETS,
            registry=registry,
        )
        self.job_wait_seconds = Histogram(
            'dpm_backend_hmc_job_wait_seconds',
            'Seconds spent waiting for an HMC job (start, stop, discover-fcp), however it ended.',
            ('kind',),
            buckets=JOB_WAIT_BUCKETS,
            registry=registry,
        )
        self.session_waits = Counter(
            'dpm_backend_hmc_session_waits',
            'Operations that found every HMC session of the pool busy and waited for one.',
            registry=registry,
        )
        self.session_wait_seconds = Histogram(
            'dpm_backend_hmc_session_wait_seconds',
            'Seconds an operation waited for a free HMC session (until it got one or gave up).',
            buckets=SESSION_WAIT_BUCKETS,
            registry=registry,
        )
        self.notifications = Counter(
            'dpm_backend_hmc_notifications',
            'HMC notifications received, by notification-type.',
            ('type',),
            registry=registry,
        )
        Info('dpm_backend', 'The running dpm-backend.', registry=registry).info(
            {'version': release}
        )

    def hmc_request(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        """A SessionPool interceptor: count and time one HMC request."""
        started = time.perf_counter()
        code = HMC_SUCCESS
        try:
            return proceed()
        except Exception as exc:
            code = hmc_code(exc)
            raise
        finally:
            cls = uri_class(uri)
            self.hmc_requests.labels(method, cls, code).inc()
            self.hmc_seconds.labels(method, cls).observe(time.perf_counter() - started)

    def session_wait(self, seconds: float) -> None:
        self.session_waits.inc()
        self.session_wait_seconds.observe(seconds)

    def job_wait(self, kind: str, seconds: float) -> None:
        self.job_wait_seconds.labels(kind).observe(seconds)

    def notification(self, kind: str) -> None:
        # The HMC's documented types only: the label stays bounded.
        self.notifications.labels(kind if kind in NOTIFICATION_TYPES else 'other').inc()

    def watch(
        self,
        pool: SessionPool,
        serving: Callable[[], Mapping[str, bool]],
        notifications_live: Callable[[], bool | None] = lambda: None,
        feed: Any = None,
    ) -> None:
        """Report the pool's sessions, the hosts' health, notifications and streams at scrapes."""
        self.registry.register(_StateCollector(pool, serving, notifications_live, feed))

    def watch_lease(self, lease: Any) -> None:
        """Report the HMC lock's role, takeovers and losses at scrapes (coordination.Lease)."""
        self.registry.register(_LeaseCollector(lease))

    def finished(self, labels: tuple[str, str, str], code: grpc.StatusCode, started: float) -> None:
        """Count one RPC's end with its status, and time it from ``started``."""
        self.grpc_handled.labels(*labels, code.name).inc()
        self.grpc_seconds.labels(*labels).observe(time.perf_counter() - started)


class _StateCollector:
    """Gauges read when scraped: nothing to keep up to date on the hot paths."""

    def __init__(
        self,
        pool: SessionPool,
        serving: Callable[[], Mapping[str, bool]],
        notifications_live: Callable[[], bool | None],
        feed: Any,
    ) -> None:
        self._pool = pool
        self._serving = serving
        self._notifications_live = notifications_live
        self._feed = feed

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        pool = self._pool
        yield GaugeMetricFamily(
            'dpm_backend_hmc_sessions_in_use',
            'HMC sessions checked out by operations now.',
            value=pool.in_use(),
        )
        yield GaugeMetricFamily(
            'dpm_backend_hmc_sessions',
            'HMC sessions logged on now (at most [hmc] pool_size).',
            value=len(pool.logged_on_session_ids()),
        )
        yield GaugeMetricFamily(
            'dpm_backend_hmc_reachable',
            '1 if the HMC answered the last request, else 0.',
            value=int(pool.reachability.reachable),
        )
        serving = self._serving()
        yield GaugeMetricFamily(
            'dpm_backend_hosts_serving',
            'Hosts whose health status is SERVING.',
            value=sum(serving.values()),
        )
        per_host = GaugeMetricFamily(
            'dpm_backend_host_serving',
            '1 if the health status of the host is SERVING, else 0.',
            labels=('host',),
        )
        for host, ok in serving.items():
            per_host.add_metric((host,), int(ok))
        yield per_host
        live = self._notifications_live()
        if live is not None:
            yield GaugeMetricFamily(
                'dpm_backend_hmc_notifications_live',
                "1 while the HMC's notifications flow and keep the partition snapshots "
                'current; 0 while every read goes to the HMC.',
                value=int(live),
            )
        if self._feed is not None:
            yield GaugeMetricFamily(
                'dpm_backend_watch_streams',
                'WatchInstances streams open now.',
                value=self._feed.watching(),
            )
            yield CounterMetricFamily(
                'dpm_backend_watch_streams_cut_off',
                'WatchInstances streams ended because their client fell too far behind.',
                value=self._feed.cut_off,
            )


class _LeaseCollector:
    """The HMC lock of active/standby backends, read when scraped."""

    def __init__(self, lease: Any) -> None:
        self._lease = lease

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        lease = self._lease
        yield GaugeMetricFamily(
            'dpm_backend_coordination_active',
            "1 while this backend holds the HMC's lock with a valid lease and may send HMC "
            'requests (ACTIVE), else 0 (STANDBY).',
            value=int(lease.valid()),
        )
        yield GaugeMetricFamily(
            'dpm_backend_coordination_service_reachable',
            '1 if the coordination service answered the last request, else 0.',
            value=int(lease.service_reachable),
        )
        age = lease.seconds_since_refresh()
        if age is not None:
            yield GaugeMetricFamily(
                'dpm_backend_coordination_lease_age_seconds',
                'Seconds since the last refresh of the lease that counted (ACTIVE only); '
                'at lease_ttl/2 the backend stops serving.',
                value=age,
            )
        yield CounterMetricFamily(
            'dpm_backend_coordination_takeovers',
            "Times this backend acquired the HMC's lock and became ACTIVE.",
            value=lease.takeovers,
        )
        yield CounterMetricFamily(
            'dpm_backend_coordination_leases_lost',
            'Times this backend lost its lease while ACTIVE (not refreshed in time, or the '
            'lock was no longer its own) and was fenced.',
            value=lease.losses,
        )


class _Outcome:
    """The end of one streaming RPC, recorded once whichever way it is noticed first."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self._labels = labels
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._done = False

    def finish(self, code: grpc.StatusCode) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._metrics.finished(self._labels, code, self._started)

    def cancelled(self) -> None:
        """The RPC ended without a status from its handler: the caller went away."""
        self.finish(grpc.StatusCode.CANCELLED)


def _completed(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The status of a handler that returned: what it set, else OK (as gRPC sends it)."""
    code = context.code()
    return grpc.StatusCode.OK if code is None else code


def _failed(context: grpc.ServicerContext) -> grpc.StatusCode:
    """The status of a handler that raised: what it set or aborted with, else UNKNOWN.

    A handler whose caller went away fails reading the requests; gRPC sends
    nothing then.
    """
    code = context.code()
    if code is not None:
        return code
    return grpc.StatusCode.UNKNOWN if context.is_active() else grpc.StatusCode.CANCELLED


class ServerInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC by method and status code, as go-grpc-prometheus does.

    Installed first, it sees the status of calls the interceptors after it
    refuse (the token check aborts them). Calls to methods the server does
    not have are not counted: their names would be a label without bound.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        streaming = (handler.request_streaming, handler.response_streaming)
        service, _, method = handler_call_details.method.lstrip('/').partition('/')
        labels = (GRPC_TYPES[streaming], service, method)
        self._metrics.grpc_started.labels(*labels).inc()
        attribute, factory = _HANDLER_FACTORIES[streaming]
        behavior = getattr(handler, attribute)
        if handler.response_streaming:
            observed = self._stream_response(behavior, labels)
        else:
            observed = self._unary_response(behavior, labels)
        return factory(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary_response(self, behavior, labels):
        metrics = self._metrics

        def observed(request, context):
            started = time.perf_counter()
            try:
                response = behavior(request, context)
            except Exception:
                metrics.finished(labels, _failed(context), started)
                raise
            metrics.finished(labels, _completed(context), started)
            return response

        return observed

    def _stream_response(self, behavior, labels):
        metrics = self._metrics

        def start(context) -> _Outcome:
            outcome = _Outcome(metrics, labels)
            # Runs when the RPC ends; if the stream has not ended, the caller left.
            if not context.add_callback(outcome.cancelled):
                outcome.cancelled()
            return outcome

        if getattr(behavior, 'experimental_non_blocking', False):
            # The handler returns at once and sends through the callback
            # (the health service's Watch); None ends the stream.
            def observed_callback(request, context, send_response_callback):
                outcome = start(context)

                def send(response):
                    if response is None:
                        outcome.finish(_completed(context))
                    send_response_callback(response)

                try:
                    behavior(request, context, send)
                except Exception:
                    outcome.finish(_failed(context))
                    raise

            observed_callback.experimental_non_blocking = True  # type: ignore[attr-defined]
            observed_callback.experimental_thread_pool = getattr(  # type: ignore[attr-defined]
                behavior, 'experimental_thread_pool', None
            )
            return observed_callback

        def observed(request, context):
            outcome = start(context)
            try:
                responses = behavior(request, context)
            except Exception:
                outcome.finish(_failed(context))
                raise
            return _relay(responses, context, outcome)

        return observed


def _relay(responses, context: grpc.ServicerContext, outcome: _Outcome) -> Iterator:
    # Only Exception: a generator closed by its owner (GeneratorExit) was
    # abandoned, and the RPC's end reports it.
    try:
        yield from responses
    except Exception:
        outcome.finish(_failed(context))
        raise
    outcome.finish(_completed(context))


class Exporter:
    """The HTTP listener serving one registry (prometheus_client's own WSGI server)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, host, registry)
        shown = f'[{host}]' if ':' in host else host
        # The port bound (port 0 takes a free one).
        self.address = f'{shown}:{self._server.server_port}'

    def stop(self) -> None:
        """Close the listening socket; requests being answered finish on their threads."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
