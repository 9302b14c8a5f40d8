"""The HMC's notifications: live partition snapshots, and job waits that end on time.

The HMC publishes JMS messages over STOMP with TLS (port 61612; HMC WS API
book, chapter "Notifications"; zc ``_notification.py``, ``_constants.py``). The
Logon response names two topics per API session (zc ``Session.object_topic``
and ``job_topic``): object notifications (``status-change``,
``property-change``, ``inventory-change``) for every object the user may
access go to each session's object topic; a ``job-completion`` goes only to
the job topic of the session that started the job. Accepted by every HMC
version this backend supports (notifications predate HMC 2.11).

One ``zhmcclient.NotificationReceiver`` (certificate verified like the Web
Services, logged on with the HMC userid) subscribes to the object topic of
a session of its own and to the job topic of every pooled session. Two threads:

- the *receiver* iterates ``NotificationReceiver.notifications()``; it wakes
  job waiters at once (:class:`Completions`) and queues the rest;
- the *processor* waits until the receiver is connected and subscribed, reads
  every served CPC once (messages sent while disconnected are lost, and those
  received before the read are in it), marks the snapshots live and applies
  every later message in order.

A lost connection (``NotificationConnectionError``: a disconnect, or missed
heart-beats) makes the snapshots age again (reads go to the HMC as without
notifications) until the receiver is back, with a growing pause between tries.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import stomp.exception
import zhmcclient

from dpm_backend import naming
from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.config import HmcConfig
from dpm_backend.hmc import PoolExhausted
from dpm_backend.hmc import SessionPool
from dpm_backend.host import CpcFactsCache
from dpm_backend.host import PartitionSizes
from dpm_backend.jobs import JobWaiter
from dpm_backend.snapshot import Row
from dpm_backend.snapshot import Snapshots

LOG = logging.getLogger(__name__)

# Pauses between connection attempts: from RECONNECT_FIRST doubling to RECONNECT_MAX,
# with up to JITTER of each added, so that the backends of one HMC do not retry in step.
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 30.0
JITTER = 0.2
# After the SUBSCRIBE frames were sent, the broker may take a moment to act on them.
SUBSCRIBE_SETTLE = 0.3
# Seconds the re-read of the served CPCs may take.
REREAD_DEADLINE = 60.0
# Job completions remembered that came before their waiter asked.
EARLY_COMPLETIONS = 256
# Heart-beats both ways every HEARTBEAT seconds: a silent broker is noticed as lost.
HEARTBEAT = 5.0
STOMP_CONFIG = zhmcclient.StompRetryTimeoutConfig(
    connect_timeout=10,
    connect_retries=1,
    heartbeat_send_cycle=HEARTBEAT,
    heartbeat_receive_cycle=HEARTBEAT,
)
PARTITION = 'partition'
CPC = 'cpc'
SIZES = ('ifl-processors', 'initial-memory')
# What a receiver may raise besides zhmcclient's errors (stomp.py, sockets, TLS).
RECEIVER_ERRORS = (zhmcclient.Error, stomp.exception.StompException, OSError, PoolExhausted)


class Completions:
    """Job-completion notifications by job URI, for the job waiter."""

    def __init__(self, topic_live: Callable[[str | None], bool]) -> None:
        self._topic_live = topic_live
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._early: collections.OrderedDict[str, None] = collections.OrderedDict()

    def expect(self, job: zhmcclient.Job) -> threading.Event | None:
        """An event set when the job's completion is notified; None if it would not be."""
        if not self._topic_live(job.session.job_topic):
            return None
        event = threading.Event()
        with self._lock:
            if self._early.pop(job.uri, 'absent') is None:
                event.set()
            self._waiting[job.uri] = event
        return event

    def heard(self, job: zhmcclient.Job) -> bool:
        """Whether the job's completion would be notified now."""
        return self._topic_live(job.session.job_topic)

    def forget(self, job: zhmcclient.Job) -> None:
        with self._lock:
            self._waiting.pop(job.uri, None)

    def complete(self, job_uri: str) -> None:
        with self._lock:
            event = self._waiting.get(job_uri)
            if event is None:
                self._early[job_uri] = None
                while len(self._early) > EARLY_COMPLETIONS:
                    self._early.popitem(last=False)
        if event is not None:
            event.set()

    def halt(self) -> None:
        """End every wait now (the backend stops, or notifications were lost: waits
        check their job once and go on polling)."""
        with self._lock:
            events = list(self._waiting.values())
        for event in events:
            event.set()


@dataclasses.dataclass(frozen=True)
class _Connecting:
    generation: int
    receiver: zhmcclient.NotificationReceiver
    topics: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Message:
    generation: int
    headers: dict[str, str]
    body: Any


@dataclasses.dataclass(frozen=True)
class _Lost:
    generation: int
    error: BaseException


class NotificationStream:
    """The HMC's notifications for the CPCs of one backend's hosts."""

    def __init__(
        self,
        config: HmcConfig,
        pool: SessionPool,
        jobs: JobWaiter,
        snapshots: Snapshots,
        facts: CpcFactsCache,
        sizes: PartitionSizes,
        hosts_by_cpc: dict[str, list[str]],
        on_live: Callable[[bool], None] = lambda live: None,
        on_notification: Callable[[str], None] = lambda kind: None,
        may_connect: Callable[[], bool] = lambda: True,
    ) -> None:
        self._config = config
        self._pool = pool
        self._jobs = jobs
        self._snapshots = snapshots
        self._facts = facts
        self._sizes = sizes
        self._hosts_by_cpc = hosts_by_cpc
        self._on_live = on_live
        self._on_notification = on_notification
        # False while this backend must not reach the HMC (a standby whose stream stops).
        self._may_connect = may_connect
        self.completions = Completions(self.job_topic_live)
        self._queue: queue.SimpleQueue[_Connecting | _Message | _Lost] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._receiver: zhmcclient.NotificationReceiver | None = None
        self._generation = 0
        # Topic -> when its SUBSCRIBE was sent on the current connection.
        self._subscribed: dict[str, float] = {}
        self._client: zhmcclient.Client | None = None
        self._live = False
        self._last_failure = ''
        self.reconnects = 0
        self._threads: list[threading.Thread] = []

    # --- state -----------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """Connected, subscribed, and the served CPCs read since: the snapshots are current."""
        return self._live

    def job_topic_live(self, topic: str | None) -> bool:
        if not topic or not self._live:
            return False
        with self._lock:
            sent = self._subscribed.get(topic)
        return sent is not None and time.monotonic() - sent >= SUBSCRIBE_SETTLE

    def _set_live(self, live: bool, why: str = '', cpcs: set[str] | None = None) -> None:
        if live == self._live:
            return
        self._live = live
        if not live:
            self.completions.halt()  # waits for a notification now poll
        cpcs = (cpcs or set()) if live else set()
        self._snapshots.set_live(cpcs)
        self._facts.set_live(cpcs)
        if live:
            LOG.info(
                'HMC notifications flow for %d CPCs: periodic reads are answered without '
                'HMC requests',
                len(cpcs),
            )
        else:
            LOG.warning(
                'HMC notifications lost (%s); reads go to the HMC until they flow again', why
            )
        self._on_live(live)

    # --- life --------------------------------------------------------------------------

    def start(self) -> None:
        self._pool.add_logon_listener(self._session_logged_on)
        self._jobs.completions = self.completions
        for target, name in ((self._receive, 'hmc-notify-recv'), (self._process, 'hmc-notify')):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 1.0) -> None:
        """Disconnect and end both threads (the receiver's may notice within seconds:
        zhmcclient looks at its close between heart-beats; it makes no request then)."""
        self._stopping.set()
        self._pool.remove_logon_listener(self._session_logged_on)
        self._jobs.completions = None
        self.completions.halt()
        with self._lock:
            receiver = self._receiver
        if receiver is not None:
            _close(receiver)
        # The receiver notices the close only at zhmcclient's next look (seconds
        # later; it makes no request then): not waited for long.
        for thread in self._threads:
            thread.join(timeout if thread.name == 'hmc-notify' else 0.1)
        if self._live:
            self._live = False
            # The snapshots age again (a backend that goes on serving reads the HMC).
            self._snapshots.set_live(set())
            self._facts.set_live(set())
            self._on_live(False)
            LOG.info('HMC notifications closed')

    # --- the receiver thread -------------------------------------------------------------

    def _topics(self) -> tuple[zhmcclient.Session, tuple[str, ...]]:
        """This stream's session (logged on if needed), its object topic and the job topics."""
        if self._client is None:
            self._client = self._pool.dedicated_client()
        session = self._client.session
        if session.session_id is None:
            session.logon()
        return session, (session.object_topic, *self._pool.job_topics())

    def _receive(self) -> None:
        pause = RECONNECT_FIRST
        while not self._stopping.is_set():
            started = time.monotonic()
            generation = self._generation
            receiver = None
            if not self._may_connect():
                self._stopping.wait(RECONNECT_FIRST)
                continue
            try:
                session, topics = self._topics()
                receiver = zhmcclient.NotificationReceiver(
                    list(topics),
                    session.actual_host or self._config.hosts[0],
                    self._config.userid,
                    self._config.password,
                    port=self._config.stomp_port,
                    stomp_rt_config=STOMP_CONFIG,
                    verify_cert=self._config.verify_cert,
                )
                with self._lock:
                    self._generation += 1
                    generation = self._generation
                    self._receiver = receiver
                    self._subscribed = {}
                self._queue.put(_Connecting(generation, receiver, topics))
                for headers, body in receiver.notifications(stop_event=self._stopping):
                    kind = headers.get('notification-type', '')
                    self._on_notification(kind)
                    if kind == 'job-completion':
                        self.completions.complete(headers.get('job-uri', ''))
                    else:
                        self._queue.put(_Message(generation, headers, body))
                return  # stopped
            except RECEIVER_ERRORS as exc:
                if self._stopping.is_set():
                    return
                self._queue.put(_Lost(generation, exc))
            finally:
                if receiver is not None:
                    _close(receiver)
            if time.monotonic() - started > RECONNECT_MAX:
                pause = RECONNECT_FIRST  # it had been working: try again soon
            self.reconnects += 1
            jitter = random.uniform(0, JITTER)  # noqa: S311 (spreads retries; not a secret)
            self._stopping.wait(pause * (1 + jitter))
            pause = min(pause * 2, RECONNECT_MAX)

    def _session_logged_on(self, session: zhmcclient.Session) -> None:
        """A pooled session logged on: hear the completions of the jobs it starts."""
        with self._lock:
            receiver = self._receiver
        if session.job_topic and receiver is not None and receiver.is_connected():
            self._subscribe(receiver, session.job_topic)

    def _subscribe(self, receiver: zhmcclient.NotificationReceiver, topic: str) -> None:
        with self._lock:
            stale = self._receiver is not receiver
            if stale or topic in self._subscribed:
                return
            # Claimed before the SUBSCRIBE is sent: sent once per connection.
            self._subscribed[topic] = float('inf')
        try:
            receiver.subscribe(topic)
        except zhmcclient.NotificationError as exc:
            LOG.info('Subscribing to a job topic failed: %s', type(exc).__name__)
            with self._lock:
                self._subscribed.pop(topic, None)
            return
        with self._lock:
            if self._receiver is receiver:
                self._subscribed[topic] = time.monotonic()

    def _subscribe_missing(self, current: _Connecting) -> None:
        """Job topics of sessions that logged on while the receiver connected."""
        for topic in self._pool.job_topics():
            if topic not in current.topics:
                self._subscribe(current.receiver, topic)

    # --- the processor thread ------------------------------------------------------------

    def _process(self) -> None:
        current: _Connecting | None = None
        reread_at = 0.0
        pause = RECONNECT_FIRST
        while not self._stopping.is_set():
            try:
                item = self._queue.get(timeout=SUBSCRIBE_SETTLE)
            except queue.Empty:
                item = None
            if isinstance(item, _Connecting):
                current, reread_at = item, 0.0
                self._set_live(False, 'reconnecting')
            elif isinstance(item, _Lost):
                if current is not None and item.generation != current.generation:
                    continue
                current = None
                self._lost(item.error)
            elif (
                isinstance(item, _Message)
                and self._live
                and current is not None
                and item.generation == current.generation
            ):
                # Before the read that makes the snapshots live, a message is in that read.
                self._apply(item.headers, item.body)
            if current is None:
                continue
            if self._live and not current.receiver.is_connected():
                # stomp.py marks a connection closed as soon as its reader meets the
                # end; zhmcclient raises only at its next look, up to HEARTBEAT + 1 s
                # later. Messages sent meanwhile are lost: stop trusting the snapshots
                # now. Live again after the receiver thread has connected anew.
                self._set_live(False, 'the STOMP connection closed')
                # zhmcclient's error for it comes later: this said it already.
                self._last_failure = zhmcclient.NotificationConnectionError.__name__
            elif self._live:
                self._check_session(current)
                self._subscribe_missing(current)
            elif time.monotonic() >= reread_at and self._ready(current):
                cpcs = self._reread()
                if cpcs is not None:
                    pause = RECONNECT_FIRST
                    self._last_failure = ''
                    self._set_live(True, cpcs=cpcs)
                else:
                    reread_at = time.monotonic() + pause
                    pause = min(pause * 2, RECONNECT_MAX)

    def _lost(self, error: BaseException) -> None:
        """Say once per kind of failure why notifications do not flow (then at DEBUG)."""
        why = f'{type(error).__name__}: {error}'
        if self._live:
            self._set_live(False, why)
        elif type(error).__name__ != self._last_failure:
            LOG.warning(
                'HMC notifications unavailable (%s); reads go to the HMC; retrying (port %d)',
                why,
                self._config.stomp_port,
            )
        else:
            LOG.debug('HMC notifications still unavailable: %s', why)
        self._last_failure = type(error).__name__

    def _check_session(self, current: _Connecting) -> None:
        """The HMC gave the stream's session a new logon (and object topic): resubscribe."""
        client = self._client
        if client is not None and client.session.object_topic not in current.topics:
            LOG.info('The notification session logged on again; reconnecting to its topic')
            _close(current.receiver)

    def _ready(self, connecting: _Connecting) -> bool:
        """Whether the receiver is connected and subscribed to every topic (settled)."""
        receiver = connecting.receiver
        if not receiver.is_connected():
            return False
        if not all(receiver.is_subscribed(topic) for topic in connecting.topics):
            return False
        now = time.monotonic()
        with self._lock:
            if self._receiver is not receiver:
                return False
            for topic in connecting.topics:
                self._subscribed.setdefault(topic, now)
            oldest = max(self._subscribed[t] for t in connecting.topics)
        return now - oldest >= SUBSCRIBE_SETTLE

    def _reread(self) -> set[str] | None:
        """List the partitions of every served CPC once (the snapshots' new base).

        The CPCs read; None if the HMC could not be read. A CPC the HMC refuses
        (it does not exist: its hosts fail their checks) is left out.
        """
        client = self._client
        assert client is not None
        read = set()
        try:
            call = Call(client, self._pool.dialect(client), self._jobs, Deadline(REREAD_DEADLINE))
            for cpc, hosts in self._hosts_by_cpc.items():
                try:
                    self._snapshots.take(call, cpc, _served_by(hosts))
                except zhmcclient.HTTPError as exc:
                    LOG.warning(
                        'CPC %s left out of the notifications: HTTP %s,%s',
                        cpc,
                        exc.http_status,
                        exc.reason,
                    )
                    continue
                read.add(cpc)
        except (zhmcclient.Error, PoolExhausted) as exc:
            LOG.warning(
                'Reading the CPCs after the notifications connected failed: %s', type(exc).__name__
            )
            return None
        return read

    def _apply(self, headers: dict[str, str], body: Any) -> None:
        kind = headers.get('notification-type')
        cls = headers.get('class')
        uri = headers.get('object-uri')
        if uri is None:
            return  # an element (NIC, HBA, ...): nothing the snapshots hold
        if cls == CPC:
            # Status or a property of a CPC changed: its facts are read again when asked.
            self._facts.forget(uri.rpartition('/')[2])
            return
        if cls != PARTITION:
            return
        if kind == 'inventory-change':
            if headers.get('action') == 'add':
                self._added(headers.get('name', ''))
            else:
                self._removed(uri)
            return
        located = self._snapshots.locate(uri)
        if located is None:
            return  # not on a served CPC, or added after the read: its add said so
        cpc, row = located
        changed = _changed_row(row, kind, (body or {}).get('change-reports', ()))
        if changed is None:
            # Renamed: whose partition it is may have changed; read the CPC again.
            self._snapshots.make_stale(cpc)
            return
        if kind == 'property-change':
            self._sizes.record(changed.uri, changed.ifl_processors, changed.initial_memory)
        self._snapshots.apply(cpc, changed.name, changed)

    def _added(self, name: str) -> None:
        """A partition was created: a served host's name makes its CPC read again."""
        for cpc, hosts in self._hosts_by_cpc.items():
            if _served_by(hosts)(name):
                self._snapshots.make_stale(cpc)

    def _removed(self, uri: str) -> None:
        located = self._snapshots.locate(uri)
        if located is None:
            return
        cpc, row = located
        self._sizes.forget(uri)
        self._snapshots.apply(cpc, row.name, None)


def _changed_row(row: Row, kind: str | None, reports: Any) -> Row | None:
    """The row after a status or property change; None if the partition was renamed."""
    for report in reports:
        if kind == 'status-change' and 'new-status' in report:
            row = dataclasses.replace(row, status=str(report['new-status']))
        elif kind == 'property-change':
            name = report.get('property-name')
            if name == 'name':
                return None
            if name == 'ifl-processors':
                row = dataclasses.replace(row, ifl_processors=int(report['new-value']))
            elif name == 'initial-memory':
                row = dataclasses.replace(row, initial_memory=int(report['new-value']))
    return row


def _served_by(hosts: list[str]) -> Callable[[str], bool]:
    def served(partition_name: str) -> bool:
        return any(naming.instance_uuid_of(host, partition_name) for host in hosts)

    return served


def _close(receiver: zhmcclient.NotificationReceiver) -> None:
    try:
        receiver.close()
    except Exception as exc:  # stomp.py raises what its socket does; closing is best effort
        LOG.debug('Closing the notification receiver: %s', type(exc).__name__)
