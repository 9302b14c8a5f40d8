"""The WatchInstances feed: each host's instance states, numbered changes, bounded watchers.

Every change of a CPC's partition snapshot (a List Partitions, or a
notification applied to a live snapshot, see :mod:`dpm_backend.snapshot`)
reaches :meth:`InstanceFeed.rows_changed`. The feed keeps, per host, the power
state and status of each of the host's own partitions (names compared exactly,
so another host's or a foreign partition never shows), numbers every change,
and hands it to that host's watchers.

A watcher's buffer is bounded: the feed never waits for a slow client. One
whose buffer is full is cut off (it reconnects and gets the current state
again, so it misses nothing); the backend's work goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import uuid
from collections.abc import Mapping

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import states
from dpm_backend.snapshot import Snapshot

LOG = logging.getLogger(__name__)

# Changes a watcher may have unread before it is cut off.
WATCH_BUFFER = 1000
# Streams a host may have at once (nova-compute holds one; dpm-backend-ctl and a
# restarted compute briefly another). Each holds a server thread.
WATCHERS_PER_HOST = 4


@dataclasses.dataclass(frozen=True)
class InstanceState:
    """One instance as a stream tells it; ``status`` None: the partition was removed."""

    instance_uuid: str
    status: str | None

    @property
    def power_state(self) -> pb.PowerState:
        if self.status is None:
            return pb.POWER_STATE_UNSPECIFIED
        # The table, not states.power_state(): that one logs, and the feed sees
        # every status of every change.
        return states.POWER_STATES.get(self.status, pb.POWER_STATE_CRASHED)

    def to_pb(self) -> pb.InstanceState:
        if self.status is None:
            return pb.InstanceState(instance_uuid=self.instance_uuid, removed=True)
        return pb.InstanceState(
            instance_uuid=self.instance_uuid,
            power_state=self.power_state,
            partition_status=self.status,
        )


@dataclasses.dataclass(frozen=True)
class Change:
    sequence: int
    state: InstanceState


class Watcher:
    """One stream's view of a host: the state it started from and the changes since."""

    def __init__(self, host: str, sequence: int, current: list[InstanceState], size: int):
        self.host = host
        self.sequence = sequence
        self.current = current
        self._changes: queue.Queue[Change] = queue.Queue(maxsize=size)
        self._ended = threading.Event()
        # Why the stream must end: 'too slow', 'standby' or 'closing'.
        self.reason = ''

    def offer(self, change: Change) -> bool:
        """Queue a change; False (and the watcher ended) if its buffer is full."""
        try:
            self._changes.put_nowait(change)
        except queue.Full:
            self.end('too slow')
            return False
        return True

    def end(self, reason: str) -> None:
        if not self._ended.is_set():
            self.reason = reason
            self._ended.set()

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def next(self, timeout: float) -> Change | None:
        """The next change, or None if none came within ``timeout`` or the watcher ended."""
        if self._ended.is_set():
            return None
        try:
            return self._changes.get(timeout=timeout)
        except queue.Empty:
            return None


class TooManyWatchers(Exception):
    pass


class InstanceFeed:
    """Per-host instance states from the CPC snapshots, and the watchers of each host."""

    def __init__(
        self,
        host_cpcs: Mapping[str, str],
        buffer: int = WATCH_BUFFER,
    ) -> None:
        # host -> cpc object id
        self._host_cpcs = dict(host_cpcs)
        self.buffer = buffer
        self.epoch = uuid.uuid4().hex
        self._lock = threading.Lock()
        # host -> instance uuid -> status; a host absent: no snapshot seen yet
        self._states: dict[str, dict[str, str]] = {}
        self._sequence: dict[str, int] = dict.fromkeys(self._host_cpcs, 0)
        self._watchers: dict[str, set[Watcher]] = {host: set() for host in self._host_cpcs}
        self._closed = False
        self.cut_off = 0  # watchers ended for being too slow
        # Whether HMC notifications keep the snapshots current (told to clients).
        self.notifications = False

    def rows_changed(self, cpc_object_id: str, snapshot: Snapshot) -> None:
        """A CPC's snapshot changed: number and hand out what changed for its hosts."""
        for host, cpc in self._host_cpcs.items():
            if cpc != cpc_object_id:
                continue
            now = _owned_statuses(snapshot, host)
            with self._lock:
                before = self._states.get(host)
                self._states[host] = now
                if before is None:
                    continue  # the first state of the host: nothing changed yet
                changed = [
                    InstanceState(uuid_, status)
                    for uuid_, status in now.items()
                    if before.get(uuid_) != status
                ]
                changed += [InstanceState(uuid_, None) for uuid_ in before if uuid_ not in now]
                for state in changed:
                    self._sequence[host] += 1
                    change = Change(self._sequence[host], state)
                    for watcher in list(self._watchers[host]):
                        if not watcher.offer(change):
                            self._watchers[host].discard(watcher)
                            self.cut_off += 1
                            LOG.warning(
                                'A WatchInstances client of host %r fell %d changes behind; '
                                'its stream ends (it reconnects for the current state)',
                                host,
                                self.buffer,
                            )

    def watch(self, host: str) -> Watcher | None:
        """A new watcher of the host from its current state; None while no state is known."""
        with self._lock:
            if self._closed:
                raise TooManyWatchers('closing')
            current = self._states.get(host)
            if current is None:
                return None
            if len(self._watchers[host]) >= WATCHERS_PER_HOST:
                raise TooManyWatchers(
                    f'host {host!r} already has {WATCHERS_PER_HOST} WatchInstances streams'
                )
            watcher = Watcher(
                host,
                self._sequence[host],
                [InstanceState(u, s) for u, s in sorted(current.items())],
                self.buffer,
            )
            self._watchers[host].add(watcher)
            return watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers[watcher.host].discard(watcher)

    def watching(self) -> int:
        with self._lock:
            return sum(len(w) for w in self._watchers.values())

    def reset(self, reason: str) -> None:
        """End every stream with ``reason`` and forget every state: what the backend knew
        may be stale by the time it serves again (another backend served meanwhile).

        Streams opened later start from the next snapshot, under a new epoch.
        """
        with self._lock:
            watchers = [w for ws in self._watchers.values() for w in ws]
            for ws in self._watchers.values():
                ws.clear()
            self._states.clear()
            self.epoch = uuid.uuid4().hex
        for watcher in watchers:
            watcher.end(reason)

    def close(self) -> None:
        """End every stream (the backend stops)."""
        with self._lock:
            self._closed = True
            watchers = [w for ws in self._watchers.values() for w in ws]
            for ws in self._watchers.values():
                ws.clear()
        for watcher in watchers:
            watcher.end('closing')


def _owned_statuses(snapshot: Snapshot, host: str) -> dict[str, str]:
    return {uuid_: row.status for uuid_, row in snapshot.owned(host).items()}
