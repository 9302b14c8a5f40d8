"""Active/standby backends of one HMC: the HMC's lock on a coordination service (tooz).

Every backend of one HMC names the same coordination service (``[coordination]
backend_url``: etcd through its gRPC gateway, or any tooz driver) and the same
lock, named after the HMC's addresses (:func:`lock_name`). A thread of each
backend tries to acquire the lock without blocking, every ``RETRY`` seconds;
the holder is ACTIVE and serves, the others are STANDBY: they make no HMC
request at all.

The lock lives ``lease_ttl`` seconds past its holder's last refresh (on etcd:
a lease with that TTL; tooz ``lock_timeout``). The active backend refreshes it
every ttl/4 and checks that the lock is still its own. Fencing: a refresh
counts from the moment its request was *sent*, and only if its answer came
back before the deadline below, so the lease certainly lives until at least
that moment plus the TTL. The backend may start an HMC request only while

    now < last counted refresh + ttl/2          (:meth:`Lease.valid`)

which holds ttl/2 seconds before any other backend can acquire the lock.
:meth:`Lease.gate` checks it below the HMC session for every request but
logoffs, the health service and the DPMHost interceptor check it for every
answer, all with a clock that runs on while the process is stopped (SIGSTOP)
or the machine sleeps: a process resumed after its lease may have expired
refuses before it sends anything. Once the deadline passes the backend is
STANDBY for good, and serves again only after acquiring the lock anew.

A refresh must also find the lock still the backend's own (tooz 9.1's etcd
lock ignores a lease etcd no longer knows), and after the service did not
answer a standby acquires the lock only ttl/2 after it answers again: a
holder cut off too may serve that long, and a service back without its data
would hand the lock out at once.

What remains is inherent in leases without fencing tokens at the HMC: a
request that passed the gate and was then held up (the process stopped
between the check and the send) reaches the HMC late; ttl/2 is the margin
for that and for clock rate differences.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from dpm_backend import errors
from dpm_backend.config import ConfigError
from dpm_backend.config import CoordinationConfig
from dpm_backend.config import HmcConfig
from dpm_backend.hmc import LOGOFF_URI

LOG = logging.getLogger(__name__)

ACTIVE = 'active'
STANDBY = 'standby'
# Fractions of the TTL: between refreshes, and from a refresh to the end of serving.
REFRESH_FRACTION = 0.25
VALID_FRACTION = 0.5
# Seconds between attempts to acquire the lock (standby), to reach the
# coordination service, and to repeat a failed refresh; never more than a refresh.
RETRY = 0.5
# Seconds a stopping backend waits for its last refresh or release to be answered.
STOP_WAIT = 5.0

Clock = Callable[[], float]


def clock() -> float:
    """Seconds on a clock that runs on while the process is stopped or the machine sleeps."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def lock_name(hmc: HmcConfig) -> str:
    """The HMC's lock: the same on every backend whose [hmc] hosts and port are alike."""
    hosts = sorted({host.lower() for host in hmc.hosts})
    return f'dpm-backend-hmc:{",".join(hosts)}:{hmc.port}'


def driver_options(url: str, ttl: int) -> dict[str, str]:
    """tooz options that make the driver's lock live ``ttl`` seconds.

    etcd3gw: ``lock_timeout`` is the lease TTL; its HTTP ``timeout`` (default
    30 s) would hold a refresh far past the fencing deadline, so it gets a
    quarter of the TTL unless the URL sets one. ZooKeeper: a lock lives as
    long as the client's session, whose ``timeout`` it is.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme
    options = {'lock_timeout': str(ttl)}
    if scheme.startswith('etcd3'):
        options['membership_timeout'] = str(ttl)
        if 'timeout' not in urllib.parse.parse_qs(parts.query):
            options['timeout'] = str(max(1, ttl // 4))
    elif scheme in ('zookeeper', 'kazoo'):
        options['timeout'] = str(ttl)
    return options


def _get_coordinator(url: str, member_id: bytes, **options: str) -> Any:
    # Imported here: a backend without [coordination] never loads tooz.
    from tooz import coordination as tooz_coordination

    return tooz_coordination.get_coordinator(url, member_id, None, **options)


def _why(exc: BaseException) -> str:
    """One line about a coordination failure (driver errors carry URLs, not credentials)."""
    text = ' '.join(str(exc).split())[:200]
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


class Lease:
    """This backend's hold on its HMC's lock: ACTIVE while it is valid, STANDBY otherwise."""

    def __init__(
        self,
        config: CoordinationConfig,
        name: str,
        hmc: str,
        on_active: Callable[[], None],
        on_standby: Callable[[], bool],
        now: Clock = clock,
        get_coordinator: Callable[..., Any] = _get_coordinator,
    ) -> None:
        """``on_standby`` returns whether every operation had ended (the lock may be released)."""
        self.config = config
        self.name = name
        self.hmc = hmc
        self._on_active = on_active
        self._on_standby = on_standby
        self._now = now
        self._get_coordinator = get_coordinator
        ttl = config.lease_ttl
        self._valid_for = ttl * VALID_FRACTION
        self._refresh_every = ttl * REFRESH_FRACTION
        self._retry = min(RETRY, self._refresh_every)
        self.role = STANDBY
        self._valid_until = 0.0
        self._next_refresh = 0.0
        self._standby_why = 'the lock has not been acquired yet'
        # Counted for the metrics.
        self.takeovers = 0
        self.losses = 0
        self.service_reachable = False
        self._failure = ''
        # No acquiring before this: the service answers again after it did not.
        self._quiet_until = 0.0
        self._coordinator: Any = None
        self._lock: Any = None
        self._connected = False
        self._release_pending = False
        self._retired = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what the backend asks, from any thread -----------------------------------------

    def valid(self) -> bool:
        """Whether this backend may start an HMC request now."""
        return self.role == ACTIVE and self._now() < self._valid_until

    def why_not(self) -> str:
        """Why this backend does not serve, in words (valid() is False)."""
        if self.role == ACTIVE:
            return 'its lease of the HMC lock may have expired'
        return self._standby_why

    def gate(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        """A SessionPool interceptor: no HMC request but logoffs unless the lease is valid."""
        if self.valid() or (method == 'DELETE' and uri == LOGOFF_URI):
            return proceed()
        self._wake.set()  # a lapse the thread has not seen yet: it acts on it now
        why = self.why_not()
        raise errors.BackendStandby(f'{method} {uri} not sent: {why}', why)

    def seconds_since_refresh(self) -> float | None:
        """Seconds since the last refresh that counted; None while STANDBY."""
        if self.role != ACTIVE:
            return None
        return self._now() - (self._valid_until - self._valid_for)

    # --- life ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the tooz driver; ConfigError if tooz cannot use the URL. No network yet."""
        if self._coordinator is not None:
            return
        url = self.config.backend_url
        try:
            self._coordinator = self._get_coordinator(
                url,
                self.config.member_id.encode(),
                **driver_options(url, self.config.lease_ttl),
            )
        except Exception as exc:  # stevedore, the driver's imports: anything goes
            raise ConfigError(
                f'[coordination] backend_url: tooz cannot use {self.config.display_url}: '
                f'{_why(exc)}'
            ) from None
        self._lock = self._coordinator.get_lock(self.name.encode())

    def start(self) -> None:
        """Start acquiring the lock (a thread); STANDBY until it is acquired."""
        self.load()
        LOG.info(
            'Coordination on %s as %s: STANDBY for HMC %s until the lock %r is acquired',
            self.config.display_url,
            self.config.member_id,
            self.hmc,
            self.name,
        )
        self._thread = threading.Thread(target=self._run, name='hmc-lease', daemon=True)
        self._thread.start()

    def retire(self) -> None:
        """Acquire the lock no more (the backend drains); a held lock is still refreshed."""
        self._retired = True

    def stop(self, release: bool) -> None:
        """Stop refreshing; ``release``: give the lock up now, so a standby takes over at once.

        Called once the backend makes no HMC request but logoffs; without
        ``release`` (operations may still wait for an HMC reply) the lock
        expires by itself.
        """
        self._retired = True
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT)
        held = self.role == ACTIVE
        self.role = STANDBY
        if self._coordinator is None or not self._connected:
            return
        if held and release:
            self._release()
        try:
            self._coordinator.stop()
        except Exception as exc:  # the service may be gone: nothing is left to do
            LOG.info('Disconnecting from the coordination service: %s', _why(exc))

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                pause = self.step()
            except Exception:
                # A bug must not end the thread: the backend would never serve again.
                LOG.exception('Coordination step failed')
                self._lose('an unexpected error in the coordination thread')
                pause = self._retry
            self._wake.wait(max(pause, 0.0))

    def step(self) -> float:
        """One round of the thread: connect, refresh or acquire; the seconds until the next."""
        if not self._connected:
            return self._connect()
        if self.role == ACTIVE:
            return self._keep()
        if self._retired:
            return self._retry
        return self._take()

    def _connect(self) -> float:
        try:
            self._coordinator.start(start_heart=False)
        except Exception as exc:  # each driver raises its own errors (etcd3gw's unwrapped)
            self._unreachable(exc, 'cannot connect')
            return self._retry
        self._connected = True
        self._reachable()
        return 0.0

    def _take(self) -> float:
        """STANDBY: release what a lost lease left behind, then try to acquire the lock."""
        if self._release_pending and not self._release():
            return self._retry
        if self._failure:
            # Whether the service answers again, without acquiring anything yet.
            try:
                self._coordinator.heartbeat()
            except Exception as exc:
                self._unreachable(exc, 'cannot reach it')
                return self._retry
            self._reachable()
        quiet = self._quiet_until - self._now()
        if quiet > 0:
            return quiet
        sent = self._now()
        try:
            acquired = self._lock.acquire(blocking=False)
        except Exception as exc:
            self._unreachable(exc, 'cannot acquire the lock')
            return self._retry
        self._reachable()
        if not acquired:
            held = 'another backend holds the lock of the HMC'
            if self._standby_why != held:
                LOG.info(
                    'STANDBY for HMC %s: another backend holds the lock %r', self.hmc, self.name
                )
                self._standby_why = held
            return self._retry
        if self._now() >= sent + self._valid_for:
            LOG.warning('The lock %r was acquired too slowly to be used; releasing it', self.name)
            self._release_pending = True
            return 0.0
        self._valid_until = sent + self._valid_for
        self._next_refresh = sent + self._refresh_every
        self.role = ACTIVE
        self.takeovers += 1
        LOG.info(
            'Became ACTIVE for HMC %s (lock %r on %s, member %s): serving once the '
            'hosts passed their checks',
            self.hmc,
            self.name,
            self.config.display_url,
            self.config.member_id,
        )
        self._on_active()
        return self._next_refresh - self._now()

    def _keep(self) -> float:
        """ACTIVE: refresh the lease when due; go STANDBY once it may expire."""
        now = self._now()
        if now >= self._valid_until:
            since = now - self._valid_until + self._valid_for
            self._lose(f'no refresh of the lease succeeded for {since:.1f} s')
            return 0.0
        if now < self._next_refresh:
            return min(self._next_refresh, self._valid_until) - now
        sent = now
        try:
            self._coordinator.heartbeat()
            owned = self._still_owner()
        except Exception as exc:
            left = self._valid_until - self._now()
            self._unreachable(exc, f'cannot refresh the lease ({left:.1f} s left)')
            self._next_refresh = self._now() + self._retry
            return min(self._next_refresh, self._valid_until) - self._now()
        if self._now() >= self._valid_until:
            self._lose('the refresh of the lease was answered too late')
            return 0.0
        self._reachable()
        if not owned:
            self._lose('the lock is no longer held by this backend')
            return 0.0
        self._valid_until = sent + self._valid_for
        self._next_refresh = sent + self._refresh_every
        return min(self._next_refresh, self._valid_until) - self._now()

    def _still_owner(self) -> bool:
        """Whether the lock is still this backend's (tooz's is_still_owner, or etcd's key).

        tooz 9.1's etcd3gw lock has no is_still_owner, and its heartbeat
        ignores a lease etcd no longer knows (a keepalive answering TTL -1:
        etcd lost its data, or the key was deleted): its key is read instead,
        and must still hold this lock's value.
        """
        from tooz import NotImplemented as ToozNotImplemented

        try:
            return bool(self._lock.is_still_owner())
        except ToozNotImplemented:
            pass
        client = getattr(self._coordinator, 'client', None)
        key = getattr(self._lock, '_key', None)
        value = getattr(self._lock, '_uuid', None)
        if client is None or key is None or value is None:
            return True  # the driver cannot tell: the lease timing alone fences
        return base64.b64decode(value) in client.get(key)

    def _lose(self, why: str) -> None:
        """ACTIVE → STANDBY (the lease lapsed or was lost): fenced until it is acquired anew."""
        if self.role != ACTIVE:
            return
        self.role = STANDBY
        self.losses += 1
        self._standby_why = f'it lost the lease of the HMC lock ({why})'
        LOG.warning(
            'Lost the lease of HMC %s (lock %r): %s; fenced: no HMC request is sent (but '
            'logoffs) until the lock is acquired anew',
            self.hmc,
            self.name,
            why,
        )
        idle = self._on_standby()
        # Released when every operation has ended (else it expires by itself), so that
        # a standby need not wait for the TTL where the service still knows the lease.
        self._release_pending = idle

    def _release(self) -> bool:
        """Give the lock up if it is still this backend's; False if the service did not answer."""
        try:
            released = self._lock.release()
        except Exception as exc:
            self._unreachable(exc, 'cannot release the lock')
            return False
        self._reachable()
        self._release_pending = False
        if released:
            LOG.info('Released the lock %r of HMC %s', self.name, self.hmc)
        return True

    def _unreachable(self, exc: BaseException, doing: str) -> None:
        self.service_reachable = False
        why = _why(exc)
        if self.role != ACTIVE:
            self._standby_why = (
                f'the coordination service {self.config.display_url} does not answer'
            )
        if why != self._failure:
            LOG.warning(
                'Coordination service %s: %s: %s; %s',
                self.config.display_url,
                doing,
                why,
                'still ACTIVE while the lease is valid'
                if self.role == ACTIVE
                else 'STANDBY: not serving',
            )
            self._failure = why
        else:
            LOG.debug('Coordination service %s: %s: %s', self.config.display_url, doing, why)

    def _reachable(self) -> None:
        """The service answered; after it did not, a STANDBY waits ttl/2 before acquiring.

        A holder that could not reach the service either may go on serving
        for ttl/2 past its last refresh, and a service that comes back
        without its data (restored, rebuilt) no longer knows that holder's
        lock: acquiring it at once could make two backends serve.
        """
        if self._failure:
            self._failure = ''
            self._quiet_until = self._now() + self._valid_for
            LOG.info(
                'Coordination service %s answers again%s',
                self.config.display_url,
                '' if self.role == ACTIVE else f'; acquiring the lock in {self._valid_for:g} s',
            )
        self.service_reachable = True
