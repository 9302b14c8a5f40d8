"""The backend process: gRPC server, health, reflection, signals, readiness."""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent import futures

import grpc
import zhmcclient
from grpc_health.v1 import health
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from oslo_config import cfg
from oslo_log import log as oslo_logging

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import auth
from dpm_backend import checkconfig
from dpm_backend import config as config_mod
from dpm_backend import coordination
from dpm_backend import correlation
from dpm_backend import errors
from dpm_backend import metrics as metrics_mod
from dpm_backend import standby
from dpm_backend import startup
from dpm_backend.config import BackendConfig
from dpm_backend.hmc import Interceptor
from dpm_backend.hmc import PoolExhausted
from dpm_backend.hmc import SessionPool
from dpm_backend.host import CpcFactsCache
from dpm_backend.host import Host
from dpm_backend.host import PartitionSizes
from dpm_backend.jobs import JobWaiter
from dpm_backend.notifications import NotificationStream
from dpm_backend.service import DPMHostServicer
from dpm_backend.watch import WATCHERS_PER_HOST
from dpm_backend.watch import InstanceFeed

LOG = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name['DPMHost'].full_name
# The health service that says whether the HMC's notifications flow (SERVING) or
# the backend reads the HMC for every answer (NOT_SERVING); absent when
# [hmc] notifications is off.
NOTIFICATIONS_SERVICE = 'hmc-notifications'
# Seconds between new checks of a host that failed its start-up checks.
RECHECK_INTERVAL = 60.0
# Threads kept free of DPMHost work, for health checks and reflection.
RESERVED_THREADS = 4
# Calls admitted at once (in flight or queued for a thread), per thread. The
# DPMHost slots shed excess operations at once; this only bounds memory, and
# is far above what the slots let through, so that a burst of calls (which the
# reserved threads answer in well under a millisecond each) never makes gRPC
# refuse a health check.
ADMITTED_PER_THREAD = 64
# Seconds stop() waits, past the grace period, for halted operations to end (an
# HMC request already sent runs to its reply) and for the probe thread.
HALT_WAIT = 5.0
# Seconds to wait for a process behind an existing socket file to accept.
SOCKET_PROBE_TIMEOUT = 2.0


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return
    if address.startswith('@'):
        address = '\0' + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


def _in_use(path: str) -> str:
    return f'another backend is serving on unix:{path}; stop it or choose another [backend] listen'


def _claim_socket_path(path: str) -> None:
    """Refuse a socket a live process serves; remove one a killed predecessor left behind."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise config_mod.ConfigError(f'[backend] listen: {path} exists and is not a socket')
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(SOCKET_PROBE_TIMEOUT)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nothing listens: stale
            return
        except FileNotFoundError:
            return
        except (TimeoutError, BlockingIOError):
            pass  # a listener whose backlog is full is alive too
    raise config_mod.ConfigError(_in_use(path))


class Backend:
    """One running DPMHost server for the hosts of one HMC."""

    def __init__(
        self, config: BackendConfig, interceptors: list[Interceptor] | None = None
    ) -> None:
        self.config = config
        # Recorded always (microseconds a call); served when metrics_listen is set.
        self.metrics = metrics_mod.Metrics(metrics_mod.version())
        # With [coordination]: the HMC's lock, without which no HMC request is sent.
        self.lease: coordination.Lease | None = None
        gates: list[Interceptor] = []
        if config.coordination is not None:
            self.lease = coordination.Lease(
                config.coordination,
                coordination.lock_name(config.hmc),
                ','.join(config.hmc.hosts),
                on_active=self._became_active,
                on_standby=self._became_standby,
            )
            gates.append(self.lease.gate)
            self.metrics.watch_lease(self.lease)
        # The metrics count what the caller's interceptors let through to the HMC.
        self.pool = SessionPool(
            config.hmc,
            [*gates, *(interceptors or []), self.metrics.hmc_request],
            on_wait=self.metrics.session_wait,
        )
        self._facts = facts = CpcFactsCache(config.hmc.cpc_cache_ttl)
        self._sizes = sizes = PartitionSizes()
        self.hosts = {name: Host(host, facts, sizes) for name, host in config.hosts.items()}
        self.jobs = JobWaiter(
            config.hmc.job_poll_interval,
            config.hmc.job_poll_max_interval,
            on_wait=self.metrics.job_wait,
        )
        self.feed = InstanceFeed({n: h.cpc_object_id for n, h in config.hosts.items()})
        self.servicer = DPMHostServicer(
            self.hosts,
            self.pool,
            self.jobs,
            sizes,
            config.max_concurrent_operations,
            config.default_deadline,
            self.host_problem,
            self.feed,
        )
        self.health = standby.HealthServicer(self._may_use_hmc)
        # A new stream each time the backend becomes active (a standby has none).
        self.notifications: NotificationStream | None = None
        if config.hmc.notifications and self.lease is None:
            self.notifications = self._notification_stream()
        self._draining = False
        self._stopped = threading.Event()
        # Wakes the HMC probe thread early: the backend became active, or stops.
        self._wake_monitor = threading.Event()
        self._server: grpc.Server | None = None
        self._exporter: metrics_mod.Exporter | None = None
        self._monitor: threading.Thread | None = None
        # Hosts whose start-up checks passed; the others are checked again.
        self._checked: set[str] = set()
        self._last_check = 0.0
        self.address = ''
        # Where metrics are served once started ('' when they are not).
        self.metrics_address = ''
        # (st_dev, st_ino) of the unix socket file this process put in place.
        self._socket_id: tuple[int, int] | None = None
        self.pool.reachability.add_listener(lambda reachable: self._update_health())
        self.metrics.watch(self.pool, self.serving_hosts, self._notifications_live, self.feed)

    def _notification_stream(self) -> NotificationStream:
        hosts_by_cpc: dict[str, list[str]] = {}
        for name, host in self.config.hosts.items():
            hosts_by_cpc.setdefault(host.cpc_object_id, []).append(name)
        return NotificationStream(
            self.config.hmc,
            self.pool,
            self.jobs,
            self.servicer.snapshots,
            self._facts,
            self._sizes,
            hosts_by_cpc,
            on_live=self._notifications_changed,
            on_notification=self.metrics.notification,
            may_connect=self._may_use_hmc,
        )

    def _may_use_hmc(self) -> bool:
        """Whether this backend may send HMC requests: it holds the HMC's lease, or needs none."""
        return self.lease is None or self.lease.valid()

    def _notifications_live(self) -> bool | None:
        """Whether the HMC's notifications flow; None when they are off."""
        if not self.config.hmc.notifications:
            return None
        stream = self.notifications
        return stream is not None and stream.live

    def _became_active(self) -> None:
        """The lock is ours: check the hosts at once, then serve; follow the notifications."""
        self._checked.clear()
        self._last_check = 0.0
        if self.config.hmc.notifications and not self._draining:
            stream = self._notification_stream()
            self.notifications = stream
            stream.start()
        self._update_health()
        self._wake_monitor.set()

    def _became_standby(self) -> bool:
        """The lease is lost: end streams, forget what may be stale, log off.

        Every HMC request but logoffs is refused already (the gate). Returns
        whether every operation ended (then the lock may be released).
        """
        self._update_health()
        self._checked.clear()
        self._last_check = 0.0
        # Streams end with UNAVAILABLE: their clients go to the backend that serves now.
        self.feed.reset('standby')
        stream, self.notifications = self.notifications, None
        if stream is not None:
            stream.stop()
        self.servicer.snapshots.set_live(set())
        self.servicer.snapshots.clear()
        self._facts.clear()
        self._sizes.clear()
        # Probed and read again once active: the HMC may be upgraded or gone meanwhile.
        self.pool.reachability.forget()
        self.pool.forget_dialect()
        self._update_health()
        idle = self.servicer.slots.wait_idle(HALT_WAIT)
        if not idle:
            LOG.warning(
                '%d operations still wait for an HMC reply; the lock is left to expire',
                self.servicer.slots.in_use(),
            )
        logged_off = self.pool.log_off_idle()
        LOG.info('STANDBY: logged off %d HMC sessions', logged_off)
        return idle

    def _notifications_changed(self, live: bool) -> None:
        self.feed.notifications = live
        self._update_health()

    @staticmethod
    def host_service_name(host: str) -> str:
        """The health service name of one host (its own SERVING status)."""
        return f'{SERVICE_NAME}/{host}'

    def host_problem(self, name: str) -> str | None:
        """Why a host is not served now, or None: its health status, in words (ListHosts)."""
        if self._draining:
            return 'the backend is shutting down'
        if self.lease is not None and not self.lease.valid():
            return f'this backend is a standby: {self.lease.why_not()}'
        if not self.pool.reachability.reachable:
            return (
                'the HMC does not answer (the backend probes it every '
                f'{self.config.hmc.probe_interval:g} s)'
            )
        problem = self.hosts[name].problem
        if problem is not None:
            return f'{problem} (checked again every {RECHECK_INTERVAL:g} s)'
        if name not in self._checked:
            return 'its start-up checks have not run yet'
        return None

    def serving(self) -> bool:
        """Whether the service as a whole is SERVING: the HMC answers, no drain, the lease."""
        return self.pool.reachability.reachable and not self._draining and self._may_use_hmc()

    def serving_hosts(self) -> dict[str, bool]:
        """Whether each host is SERVING: the service is, and the host passed its checks."""
        return {name: self.host_problem(name) is None for name in self.hosts}

    def _update_health(self) -> None:
        def status(ok: bool):
            if ok:
                return health_pb2.HealthCheckResponse.SERVING
            return health_pb2.HealthCheckResponse.NOT_SERVING

        serving = self.serving()
        for service in ('', SERVICE_NAME):
            self.health.set(service, status(serving))
        for name, ok in self.serving_hosts().items():
            self.health.set(self.host_service_name(name), status(ok))
        live = self._notifications_live()
        if live is not None:
            self.health.set(NOTIFICATIONS_SERVICE, status(live and not self._draining))

    def check_hosts(self) -> None:
        """Run the start-up checks of the hosts not yet found usable; update health."""
        unchecked = [host for name, host in self.hosts.items() if name not in self._checked]
        try:
            outcomes = startup.check_hosts(
                self.pool,
                self.jobs,
                unchecked,
                self.config.hmc.connect_timeout + self.config.hmc.read_timeout,
            )
        except (zhmcclient.Error, PoolExhausted) as exc:
            # The HMC is not answering: the checks run again when it is.
            LOG.warning('Could not check the hosts: %s', type(exc).__name__)
            outcomes = {}
        if not self._may_use_hmc():
            return  # the lease lapsed meanwhile: the checks run again when it is held
        for name, outcome in outcomes.items():
            self._record(self.hosts[name], outcome)
        self._last_check = time.monotonic()
        self._update_health()

    def _record(self, host: Host, outcome: str | errors.DPMError) -> None:
        """Log a host's check outcome once per change: ERROR when it is not served."""
        if isinstance(outcome, errors.DPMError):
            if host.problem != outcome.message:
                LOG.error('Host %s is not served: %s', host.name, outcome.message)
            host.problem = outcome.message
            return
        if host.problem is None:
            LOG.info('Host %s passed its checks: %s', host.name, outcome)
        else:
            LOG.info('Host %s passed its checks and is served again: %s', host.name, outcome)
        host.problem = None
        self._checked.add(host.name)

    def hosts_checked(self) -> bool:
        """Whether the start-up checks have run (each host passed, failed, or met an outage)."""
        return self._last_check > 0.0

    def warn_about_host_names(self) -> None:
        for claimer, other in startup.nic_claim_collisions(list(self.hosts.values())):
            LOG.warning(
                "networking-dpm's agent for host %s will take the NICs of host %s for "
                'its own (its NIC filter is a plain substring test on the NIC '
                'description): give hosts on one CPC names that do not occur in '
                "each other's NIC descriptions",
                claimer,
                other,
            )

    def _bind(self, server: grpc.Server, gid: int) -> str:
        listen = self.config.listen
        if listen.unix_path:
            self._bind_unix(server, listen.unix_path, gid)
            return f'unix:{listen.unix_path}'
        if listen.tls_cert_file:
            # config.load() requires the three TLS files together.
            assert listen.tls_key_file and listen.tls_client_ca_file
            with (
                open(listen.tls_key_file, 'rb') as key,
                open(listen.tls_cert_file, 'rb') as cert,
                open(listen.tls_client_ca_file, 'rb') as ca,
            ):
                credentials = grpc.ssl_server_credentials(
                    [(key.read(), cert.read())],
                    root_certificates=ca.read(),
                    require_client_auth=True,
                )
            port = server.add_secure_port(listen.address, credentials)
        else:
            port = server.add_insecure_port(listen.address)
        host = listen.address.rpartition(':')[0]
        return f'{host}:{port}'

    def _socket_gid(self) -> int:
        """The gid of socket_group (-1: unchanged); checked before anything is bound."""
        group = self.config.listen.socket_group
        if not group or not self.config.listen.unix_path:
            return -1
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            raise config_mod.ConfigError(
                f'[backend] socket_group: no such group: {group}'
            ) from None

    def _bind_unix(self, server: grpc.Server, path: str, gid: int) -> None:
        """Bind the socket where only this process reaches it, then link it into place.

        gRPC creates the socket file with the process umask; it gets its mode
        and group in a private directory (0700) and appears at ``path`` only
        then, so it never exists there with a wider mode, without touching the
        process-wide umask (other threads create files meanwhile). A hard link
        never replaces what another process put at ``path`` meanwhile.
        """
        _claim_socket_path(path)
        private = tempfile.mkdtemp(prefix='.dpm-backend-', dir=os.path.dirname(path) or '.')
        try:
            staged = os.path.join(private, 'socket')
            server.add_insecure_port(f'unix:{staged}')
            os.chmod(staged, self.config.listen.socket_mode)
            if gid != -1:
                os.chown(staged, -1, gid)
            placed = os.lstat(staged)
            try:
                os.link(staged, path)
            except FileExistsError:
                raise config_mod.ConfigError(_in_use(path)) from None
            self._socket_id = (placed.st_dev, placed.st_ino)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(private, 'socket'))
            os.rmdir(private)

    def _start_exporter(self) -> None:
        if self.config.metrics_listen is None:
            return
        host, port = self.config.metrics_listen
        try:
            self._exporter = metrics_mod.Exporter(self.metrics.registry, host, port)
        except OSError as exc:
            raise OSError(exc.errno, f'{exc.strerror} (metrics on {host}:{port})') from None
        self.metrics_address = self._exporter.address
        LOG.info('Serving metrics on http://%s/metrics', self.metrics_address)

    def _stop_exporter(self) -> None:
        if self._exporter is not None:
            self._exporter.stop()
            self._exporter = None

    def _remove_socket(self, path: str) -> None:
        """Unlink the socket file only if it is still ours (another backend may own it now)."""
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            return
        if (current.st_dev, current.st_ino) == self._socket_id:
            os.unlink(path)
        else:
            LOG.warning("Left %s in place: another process replaced this backend's socket", path)

    def start(self) -> None:
        gid = self._socket_gid()
        if self.lease is not None:
            self.lease.load()
        self._start_exporter()
        try:
            self._start_server(gid)
        except BaseException:
            self._stop_exporter()
            raise

    def _start_server(self, gid: int) -> None:
        # Each WatchInstances stream holds a thread for as long as it lasts.
        threads = (
            self.config.max_concurrent_operations
            + RESERVED_THREADS
            + WATCHERS_PER_HOST * len(self.hosts)
        )
        correlation.add_request_id_to_log_records()
        # The request id first: the token check logs and refuses with it bound; then
        # metrics, so that they see the status of the calls the token check refuses.
        server_interceptors: list[grpc.ServerInterceptor] = [
            correlation.RequestIdInterceptor(),
            metrics_mod.ServerInterceptor(self.metrics),
        ]
        if self.config.tokens:
            checker = auth.TokenChecker(self.config.tokens, set(self.config.hosts))
            server_interceptors.append(auth.TokenInterceptor(checker, SERVICE_NAME))
        if self.lease is not None:
            lease = self.lease
            server_interceptors.append(
                standby.StandbyInterceptor(lease.valid, lease.why_not, SERVICE_NAME)
            )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix='grpc'),
            interceptors=server_interceptors,
            maximum_concurrent_rpcs=threads * ADMITTED_PER_THREAD,
        )
        pb_grpc.add_DPMHostServicer_to_server(self.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.address = self._bind(server, gid)
        server.start()
        self._server = server
        self.warn_about_host_names()
        self._update_health()
        self._monitor = threading.Thread(target=self._watch_hmc, name='hmc-probe', daemon=True)
        self._monitor.start()
        if self.notifications is not None:
            self.notifications.start()
        if self.lease is not None:
            self.lease.start()
        LOG.info('Serving DPMHost for hosts %s on %s', ', '.join(self.hosts), self.address)

    def _watch_hmc(self) -> None:
        """Probe the HMC while it is unreachable, so health recovers by itself.

        Hosts are checked once the HMC answers; one that failed is checked
        again every RECHECK_INTERVAL seconds (a CPC may come back, an adapter
        may be configured).
        """
        while not self._stopped.is_set():
            self._wake_monitor.clear()
            # A standby makes no HMC request: it probes and checks once it is active.
            if self._may_use_hmc():
                self._probe_and_check()
            self._wake_monitor.wait(self.config.hmc.probe_interval)

    def _probe_and_check(self) -> None:
        if not self.pool.reachability.reachable and self.pool.probe():
            self.pool.reachability.set(True)
        unchecked = len(self._checked) < len(self.hosts)
        first = self._last_check == 0.0
        due = time.monotonic() - self._last_check >= RECHECK_INTERVAL
        if self.pool.reachability.reachable and unchecked and (first or due):
            self.check_hosts()

    def stop(self, grace: float | None = None) -> None:
        """Drain, then halt: no HMC request after the grace period but logoffs.

        New calls are refused at once (gRPC stops accepting RPCs, health
        checks included); calls in flight get ``grace`` seconds. Past it, they
        are cancelled, every HMC request but a logoff is refused below the
        session and every job wait ends, so each operation unwinds at its next
        step (leaving what a retry converges from; rollbacks need the HMC and
        are refused too). Then every HMC session is logged off.
        """
        if self._server is None:
            return
        self._draining = True
        if self.lease is not None:
            # A held lock is refreshed until the operations in flight have ended.
            self.lease.retire()
        self._update_health()
        self._stopped.set()
        self._wake_monitor.set()
        # Streams end now, with UNAVAILABLE: their clients go to another backend.
        self.feed.close()
        grace = self.config.grace_period if grace is None else grace
        self._server.stop(grace).wait()
        self._server = None
        self.pool.halt()
        self.jobs.halt()
        # A quick stop (grace 0: tests, an operator in a hurry) waits less.
        if not self.servicer.slots.wait_idle(min(HALT_WAIT, grace + 1.0)):
            LOG.warning(
                '%d operations still wait for an HMC reply after the grace period',
                self.servicer.slots.in_use(),
            )
        if self._monitor is not None:
            self._monitor.join(HALT_WAIT)
        if self.notifications is not None:
            self.notifications.stop()
        if self.lease is not None:
            # A standby takes over now, not when the lease expires (unless an
            # operation may still get an HMC reply).
            self.lease.stop(release=self.servicer.slots.in_use() == 0)
        logged_off = self.pool.close()
        if self.config.listen.unix_path and self._socket_id is not None:
            self._remove_socket(self.config.listen.unix_path)
        # Last: the scrape before the exit sees the drain and the logoffs.
        self._stop_exporter()
        LOG.info('Stopped; logged off %d HMC sessions', logged_off)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM; exit 2 on a configuration error (one line on stderr)."""
    args = config_mod.with_check_config_file(list(sys.argv[1:] if argv is None else argv))
    conf = cfg.ConfigOpts()
    try:
        config = config_mod.load(args, conf)
    except config_mod.ConfigError as exc:
        print(f'dpm-backend: configuration error: {exc}', file=sys.stderr)
        return 2
    unknown = config_mod.unknown_settings(conf, list(config.hosts))
    if conf.check_config:
        return checkconfig.run(config, unknown, sys.stdout)
    oslo_logging.setup(conf, 'dpm-backend')
    LOG.info(
        'dpm-backend %s (zhmcclient %s) starting for HMC %s',
        config_mod.version(),
        zhmcclient.__version__,
        ','.join(config.hmc.hosts),
    )
    for finding in unknown:
        LOG.warning('Configuration: %s', finding)
    if config.hmc.verify_cert is False:
        LOG.warning('HMC certificate verification is OFF ([hmc] verify_cert = false)')
    backend = Backend(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        backend.start()
    except config_mod.ConfigError as exc:
        print(f'dpm-backend: configuration error: {exc}', file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        # grpc says "Failed to bind to address ...": the option is what to fix.
        error = config_mod.ConfigError(
            f'[backend] listen: cannot serve on {config.listen.address}: {exc}'
        )
        LOG.error('%s', error)
        print(f'dpm-backend: configuration error: {error}', file=sys.stderr)
        return 2
    sd_notify('READY=1')
    stop.wait()
    sd_notify('STOPPING=1')
    backend.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
