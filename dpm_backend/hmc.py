"""HMC sessions: a bounded pool, the HMC's dialect, and the seam below the Session.

zhmcclient Session/Client pairs may be used by one thread at a time, so each
operation checks one pair out of the pool and returns it afterwards. Sessions
log on at first use, log on again when the HMC expires them (zhmcclient does
this), and are all logged off at shutdown: a leaked session occupies the HMC.

The one seam at zhmcclient's session boundary: every HMC request (GET, POST,
DELETE, including logon and job polling) passes through the pool's
interceptors. Benchmarks count requests there, fault tests inject errors and
latency there, and the pool itself watches reachability there. Nothing above
the Session knows whether the HMC is real or dpm-hmc-sim.

The pool also reads the HMC's API version once (no logon needed) and keeps
the :class:`~dpm_backend.dialect.Dialect` it implies; it is read again after
the HMC was unreachable, since an HMC comes back from an upgrade that way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import zhmcclient

from dpm_backend import errors
from dpm_backend.config import HmcConfig
from dpm_backend.dialect import Dialect

LOG = logging.getLogger(__name__)

# An interceptor wraps one HMC request: interceptor(method, uri, proceed).
# It must call proceed() (or raise) and return its result.
Interceptor = Callable[[str, str, Callable[[], Any]], Any]

HTTP_METHODS = ('get', 'post', 'delete')


class PoolExhausted(Exception):
    """No HMC session became free in time (pool_wait, or the caller's deadline)."""


class Reachability:
    """Whether the HMC answered the last request; listeners hear changes."""

    def __init__(self) -> None:
        # Unknown until the HMC has answered once.
        self._reachable = False
        self._lock = threading.Lock()
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def reachable(self) -> bool:
        return self._reachable

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def set(self, reachable: bool) -> None:
        with self._lock:
            changed = reachable != self._reachable
            self._reachable = reachable
        if changed:
            if reachable:
                LOG.info('HMC is reachable')
            else:
                LOG.warning('HMC is unreachable')
            for listener in self._listeners:
                listener(reachable)

    def forget(self) -> None:
        """Unknown again, without a word to the listeners (a standby has not asked)."""
        with self._lock:
            self._reachable = False

    def interceptor(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        try:
            result = proceed()
        except zhmcclient.ConnectionError:
            self.set(False)
            raise
        self.set(True)
        return result


def log_request(method: str, uri: str, proceed: Callable[[], Any]) -> Any:
    """Interceptor that logs each request's method, URI, outcome and duration."""
    started = time.monotonic()
    outcome = 'ok'
    try:
        return proceed()
    except zhmcclient.HTTPError as exc:
        outcome = f'HTTP {exc.http_status},{exc.reason}'
        raise
    except zhmcclient.Error as exc:
        outcome = type(exc).__name__
        raise
    finally:
        elapsed = (time.monotonic() - started) * 1000
        LOG.info('HMC %s %s -> %s (%.0f ms)', method, uri, outcome, elapsed)


def _install_seam(session: zhmcclient.Session, interceptors: list[Interceptor]) -> None:
    """Route the session's HTTP methods through ``interceptors`` (in order)."""
    for method in HTTP_METHODS:
        setattr(session, method, _through(interceptors, method.upper(), getattr(session, method)))


def _through(interceptors: list[Interceptor], method: str, original: Callable) -> Callable:
    @functools.wraps(original)
    def wrapper(uri, *args, **kwargs):
        def call(index: int) -> Any:
            if index == len(interceptors):
                return original(uri, *args, **kwargs)
            return interceptors[index](method, uri, lambda: call(index + 1))

        return call(0)

    return wrapper


def retry_timeout_config(config: HmcConfig) -> zhmcclient.RetryTimeoutConfig:
    return zhmcclient.RetryTimeoutConfig(
        connect_timeout=config.connect_timeout,
        connect_retries=config.connect_retries,
        read_timeout=config.read_timeout,
        read_retries=config.read_retries,
        operation_timeout=config.operation_timeout,
        status_timeout=config.status_timeout,
    )


# zhmcclient's Session.logoff (``DELETE /api/sessions/this-session``), the one
# request a stopping backend still makes.
LOGOFF_URI = '/api/sessions/this-session'


class SessionPool:
    """A bounded pool of logged-on zhmcclient Clients."""

    def __init__(
        self,
        config: HmcConfig,
        interceptors: list[Interceptor] | None = None,
        on_wait: Callable[[float], object] | None = None,
    ):
        self._config = config
        # Told the seconds of each checkout that found every session busy.
        self._on_wait = on_wait
        self.reachability = Reachability()
        # Outermost first: the observers of the caller, then reachability.
        self.interceptors: list[Interceptor] = list(interceptors or [])
        if config.log_requests:
            self.interceptors.append(log_request)
        self.interceptors.append(self.reachability.interceptor)
        # Outermost of all: once halted, nothing but logoffs reaches the HMC.
        self.interceptors.insert(0, self._unless_halted)
        self._halted = False
        self._dialect: Dialect | None = None
        self._dialect_lock = threading.Lock()
        self.reachability.add_listener(self._forget_dialect_when_down)
        self._idle: queue.LifoQueue[zhmcclient.Client] = queue.LifoQueue()
        self._all: list[zhmcclient.Client] = []
        # Clients outside the pool (the notification session), logged off at close.
        self._dedicated: list[zhmcclient.Client] = []
        # Told each session the pool logs on (its job-notification-topic is new).
        self._logon_listeners: list[Callable[[zhmcclient.Session], None]] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def size(self) -> int:
        return self._config.pool_size

    @property
    def sessions_created(self) -> int:
        return len(self._all)

    def in_use(self) -> int:
        """Sessions checked out now."""
        with self._lock:
            return len(self._all) - self._idle.qsize()

    def has_free_session(self) -> bool:
        """Whether a checkout now would not wait (a hint: another thread may take it)."""
        with self._lock:
            return not self._idle.empty() or len(self._all) < self._config.pool_size

    def logged_on_session_ids(self) -> list[str]:
        """HMC session ids this pool holds open."""
        with self._lock:
            sessions = [client.session for client in self._all + self._dedicated]
        return [s.session_id for s in sessions if s.session_id is not None]

    def add_logon_listener(self, listener: Callable[[zhmcclient.Session], None]) -> None:
        self._logon_listeners.append(listener)

    def remove_logon_listener(self, listener: Callable[[zhmcclient.Session], None]) -> None:
        if listener in self._logon_listeners:
            self._logon_listeners.remove(listener)

    def job_topics(self) -> list[str]:
        """The job-notification-topic of each logged-on pooled session (HMC Logon response)."""
        with self._lock:
            sessions = [client.session for client in self._all]
        return [s.job_topic for s in sessions if s.session_id is not None and s.job_topic]

    def dedicated_client(self) -> zhmcclient.Client:
        """A Client of its own (not pooled), through the same seam; logged off at close.

        The notification receiver keeps one: its session's notification-topic
        carries the object notifications, and it reads the CPCs again after a
        reconnect without taking a session from the operations.
        """
        session = self._new_session()
        _install_seam(session, self.interceptors)
        client = zhmcclient.Client(session)
        with self._lock:
            if self._closed:
                raise PoolExhausted('the session pool is closed')
            self._dedicated.append(client)
        return client

    def _new_session(self) -> zhmcclient.Session:
        return zhmcclient.Session(
            list(self._config.hosts),
            userid=self._config.userid,
            password=self._config.password,
            retry_timeout_config=retry_timeout_config(self._config),
            port=self._config.port,
            verify_cert=self._config.verify_cert,
        )

    def _forget_dialect_when_down(self, reachable: bool) -> None:
        if not reachable:
            self.forget_dialect()

    def forget_dialect(self) -> None:
        """Read the HMC's API version again before the next operation (it may be upgraded)."""
        with self._dialect_lock:
            self._dialect = None

    def dialect(self, client: zhmcclient.Client) -> Dialect:
        """The HMC's dialect, read with ``client`` the first time (one request, no logon)."""
        with self._dialect_lock:
            dialect = self._dialect
        if dialect is None:
            dialect = Dialect.of(client.query_api_version())
            LOG.info('HMC %s', dialect)
            with self._dialect_lock:
                self._dialect = dialect
        return dialect

    def _unless_halted(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        if self._halted and not (method == 'DELETE' and uri == LOGOFF_URI):
            raise errors.BackendStopping(f'{method} {uri} not sent: the backend is stopping')
        return proceed()

    def halt(self) -> None:
        """Refuse every HMC request but logoffs from now on (operations still running end)."""
        self._halted = True

    def _take(self, timeout: float) -> zhmcclient.Client:
        with self._lock:
            if self._closed:
                raise PoolExhausted('the session pool is closed')
            with contextlib.suppress(queue.Empty):
                return self._idle.get_nowait()
            if len(self._all) < self._config.pool_size:
                session = self._new_session()
                _install_seam(session, self.interceptors)
                client = zhmcclient.Client(session)
                self._all.append(client)
                return client
        wait = max(min(timeout, self._config.pool_wait), 0)
        started = time.monotonic()
        try:
            return self._idle.get(timeout=wait)
        except queue.Empty:
            raise PoolExhausted(
                f'all {self._config.pool_size} HMC sessions stayed busy for {wait:.0f} s'
            ) from None
        finally:
            if self._on_wait is not None:
                self._on_wait(time.monotonic() - started)

    @contextlib.contextmanager
    def client(self, timeout: float, logon: bool = True) -> Iterator[zhmcclient.Client]:
        """Check out one logged-on Client for the duration of the block."""
        client = self._take(timeout)
        keep = True
        try:
            if logon and client.session.session_id is None:
                client.session.logon()
                for listener in self._logon_listeners:
                    listener(client.session)
            yield client
        except (zhmcclient.HTTPError, zhmcclient.ServerAuthError) as exc:
            # zhmcclient logs on again by itself when the HMC expired the
            # session; what still fails that way means the session is gone
            # for good: never hand it out again.
            keep = not errors.is_session_gone(exc)
            raise
        finally:
            if not keep:
                self._discard(client)
            elif not self._give_back(client):
                # Returned after close(): log it off here, nobody else will.
                self._log_off(client)

    def _discard(self, client: zhmcclient.Client) -> None:
        """Forget a client whose HMC session is gone; the next checkout logs on anew."""
        with self._lock:
            if client in self._all:
                self._all.remove(client)
        LOG.warning('The HMC session expired; a new one will be logged on')

    def probe(self) -> bool:
        """Ask the HMC for its API version (no logon needed); True if it answered."""
        try:
            with self.client(timeout=self._config.connect_timeout, logon=False) as client:
                dialect = Dialect.of(client.query_api_version())
            with self._dialect_lock:
                self._dialect = dialect
        except (zhmcclient.Error, PoolExhausted) as exc:
            LOG.info('HMC probe failed: %s', type(exc).__name__)
            return False
        return True

    def _give_back(self, client: zhmcclient.Client) -> bool:
        """Put a client back for the next checkout; False once the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            self._idle.put(client)
            return True

    @staticmethod
    def _log_off(client: zhmcclient.Client) -> bool:
        session = client.session
        if session.session_id is None:
            return False
        try:
            session.logoff()
        except zhmcclient.Error as exc:
            LOG.warning('Logoff from the HMC failed: %s', type(exc).__name__)
            return False
        return True

    def log_off_idle(self) -> int:
        """Log off the sessions no operation holds, and the dedicated ones; the pool stays open.

        A standby backend holds no HMC session; the next checkout logs on anew.
        Returns how many were logged off.
        """
        idle = []
        with contextlib.suppress(queue.Empty):
            while True:
                idle.append(self._idle.get_nowait())
        with self._lock:
            dedicated, self._dedicated = self._dedicated, []
        try:
            return sum(self._log_off(client) for client in idle + dedicated)
        finally:
            for client in idle:
                if not self._give_back(client):
                    self._log_off(client)

    def close(self) -> int:
        """Refuse checkouts, log off every session; return how many were logged off.

        Called once operations have ended (or were halted); a session still
        checked out is logged off too, and is not given back.
        """
        with self._lock:
            self._closed = True
            clients = list(self._all) + list(self._dedicated)
        return sum(self._log_off(client) for client in clients)
