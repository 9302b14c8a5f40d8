"""Short-lived partition snapshots, one per CPC, shared by every host on it.

Nova asks each host, on a schedule, for its resources, its instance list and
the power state of every instance. Answering each of those with its own HMC
request costs O(instances) requests per host per cycle, and O(hosts) for
hosts sharing a CPC. A snapshot is one ``List Partitions of a CPC`` request
with the few properties those reads need (status and sizes); it serves every
host of that CPC for ``SNAPSHOT_TTL`` seconds. HMCs before 2.16 list
partitions with their status but without sizes (see
:mod:`dpm_backend.dialect`); the sizes of the hosts' own partitions come from
:class:`~dpm_backend.host.PartitionSizes` (read once per partition), so a
cycle still costs one request.

While every HMC session of the pool is busy, a snapshot up to
``SNAPSHOT_MAX_AGE`` seconds old answers, so that Nova's reads do not queue
behind long start and stop jobs.

While the HMC's notifications flow (:mod:`dpm_backend.notifications`), a CPC's
snapshot is *live*: read once after the stream (re)connected, then kept
current from status, property and inventory changes, and used at any age, so
that Nova's periodic reads cost no HMC request. A notification that cannot be
applied (a partition of a served host added or renamed: its row is not known)
makes the CPC's snapshot stale until the next read. Every change of a CPC's
rows is told to ``on_rows`` (the WatchInstances feed).

What this backend changes makes the snapshot stale for exactly what changed:
an operation on an instance marks its partition and its host when it ends
(in success and failure alike), and a snapshot taken before that mark is not
used for that partition (get_info) or host (list, usage) again. Operations
that change state never read a snapshot: they read the partition fresh.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import zhmcclient

from dpm_backend import naming
from dpm_backend.call import Call
from dpm_backend.host import PartitionSizes

# Seconds a snapshot is reused. Nova's periodic tasks run a minute or more
# apart, so each cycle reads the HMC once; the hosts of one CPC, whose cycles
# run at about the same time, share that read.
SNAPSHOT_TTL = 5.0
# While every HMC session is busy (long start/stop jobs), reads do not queue
# behind them: an older snapshot, up to this many seconds, answers instead.
SNAPSHOT_MAX_AGE = 60.0
# Returned by List Partitions besides name and URI (sizes: HMC 2.16 additional-properties).
SNAPSHOT_PROPERTIES = ('status', 'ifl-processors', 'initial-memory')


@dataclasses.dataclass(frozen=True)
class Row:
    """One partition of a snapshot."""

    name: str
    uri: str
    status: str
    ifl_processors: int
    initial_memory: int


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Every partition of one CPC, by name, as one List Partitions answered."""

    rows: dict[str, Row]
    # Marks up to this sequence number had happened before the list was asked for.
    seen_marks: int
    taken_at: float

    def owned(self, host: str) -> dict[str, Row]:
        """The host's partitions by instance uuid (names compared exactly)."""
        owned = {}
        for name, row in self.rows.items():
            instance_uuid = naming.instance_uuid_of(host, name)
            if instance_uuid is not None:
                owned[instance_uuid] = row
        return owned


RowsListener = Callable[[str, Snapshot], None]


class Snapshots:
    """The current snapshot of each CPC, and what this backend changed since."""

    def __init__(
        self,
        sizes: PartitionSizes,
        ttl: float = SNAPSHOT_TTL,
        on_rows: RowsListener | None = None,
    ) -> None:
        self._sizes = sizes
        self._ttl = ttl
        self._on_rows = on_rows
        self._lock = threading.Lock()
        self._by_cpc: dict[str, Snapshot] = {}
        self._marks = 0
        # (cpc object id, host or partition name) -> sequence number of its last mark
        self._marked: dict[tuple[str, str], int] = {}
        # CPCs whose snapshot notifications keep current, and those of them that
        # a notification made stale (cpc -> number of that notification).
        self._live: set[str] = set()
        self._stale: dict[str, int] = {}
        # Notifications applied so far, and what the last one per row left
        # ((cpc, partition name) -> (number, row or None when removed)): a
        # list answered while they arrived is corrected with them.
        self._applied = 0
        self._touched: dict[tuple[str, str], tuple[int, Row | None]] = {}

    def clear(self) -> None:
        with self._lock:
            self._by_cpc.clear()

    # --- live snapshots (kept current by HMC notifications) --------------------------

    def set_live(self, cpc_object_ids: set[str]) -> None:
        """Only these CPCs' snapshots are kept current by notifications from now on."""
        with self._lock:
            self._live = set(cpc_object_ids)
            self._stale = {cpc: n for cpc, n in self._stale.items() if cpc in self._live}

    def is_live(self, cpc_object_id: str) -> bool:
        with self._lock:
            return cpc_object_id in self._live and cpc_object_id not in self._stale

    def locate(self, uri: str) -> tuple[str, Row] | None:
        """The CPC and row of a partition a live snapshot lists, by URI."""
        with self._lock:
            for cpc in self._live:
                snapshot = self._by_cpc.get(cpc)
                if snapshot is None:
                    continue
                for row in snapshot.rows.values():
                    if row.uri == uri:
                        return cpc, row
        return None

    def apply(self, cpc_object_id: str, name: str, row: Row | None) -> None:
        """A notification changed (``row``) or removed (None) a partition of a live CPC."""
        with self._lock:
            snapshot = self._by_cpc.get(cpc_object_id)
            if snapshot is None or cpc_object_id not in self._live:
                return
            self._applied += 1
            self._touched[(cpc_object_id, name)] = (self._applied, row)
            rows = dict(snapshot.rows)
            if row is None:
                rows.pop(name, None)
            else:
                rows[name] = row
            # Copy on write: readers iterate the rows they were given.
            snapshot = dataclasses.replace(snapshot, rows=rows)
            self._by_cpc[cpc_object_id] = snapshot
            self._changed(cpc_object_id, snapshot)

    def make_stale(self, cpc_object_id: str) -> None:
        """A notification told of a change the snapshot cannot take: read the CPC again."""
        with self._lock:
            self._applied += 1
            self._stale[cpc_object_id] = self._applied

    def _changed(self, cpc_object_id: str, snapshot: Snapshot) -> None:
        """Tell the listener, under the lock: it sees the snapshots in the order they were kept."""
        if self._on_rows is not None:
            self._on_rows(cpc_object_id, snapshot)

    def mark(self, cpc_object_id: str, host: str, instance_uuid: str) -> None:
        """This backend changed (or tried to change) the instance's partition."""
        with self._lock:
            self._marks += 1
            self._marked[(cpc_object_id, host)] = self._marks
            self._marked[(cpc_object_id, naming.partition_name(host, instance_uuid))] = self._marks

    def cached(
        self, cpc_object_id: str, *keys: str, max_age: float | None = None
    ) -> Snapshot | None:
        """The CPC's snapshot if it is young and newer than every mark of ``keys``.

        Young: taken less than the TTL (or ``max_age``) seconds ago.
        """
        max_age = self._ttl if max_age is None else max_age
        with self._lock:
            snapshot = self._by_cpc.get(cpc_object_id)
            if snapshot is None:
                return None
            live = cpc_object_id in self._live and cpc_object_id not in self._stale
            if not live and time.monotonic() - snapshot.taken_at >= max_age:
                return None
            for key in keys:
                if self._marked.get((cpc_object_id, key), 0) > snapshot.seen_marks:
                    return None
            return snapshot

    def take(self, call: Call, cpc_object_id: str, sized: Callable[[str], bool]) -> Snapshot:
        """List the CPC's partitions (one HMC request) and keep the result.

        Rows whose name ``sized`` accepts (the served hosts' partitions) carry
        their sizes; the others carry 0.
        """
        with self._lock:
            seen_marks = self._marks
            applied = self._applied
        started = time.monotonic()
        cpc = call.client.cpcs.resource_object(cpc_object_id)
        partitions = call.dialect.list_partitions(cpc, properties=SNAPSHOT_PROPERTIES)
        rows = {}
        for partition in partitions:
            try:
                vcpus, memory_mb = (
                    self._sizes.of(call, partition) if sized(partition.name) else (0, 0)
                )
            except zhmcclient.CeasedExistence:
                # Deleted between the list and the read of its size (a
                # destroy running meanwhile; zhmcclient's form of the GET's
                # 404): it is not there any more.
                continue
            rows[partition.name] = Row(
                name=partition.name,
                uri=partition.uri,
                status=partition.properties.get('status', ''),
                ifl_processors=vcpus,
                initial_memory=memory_mb,
            )
        with self._lock:
            # Notifications applied while the list was asked for may be newer
            # than what it says; those applied before are in it.
            for (cpc, name), (number, row) in list(self._touched.items()):
                if cpc != cpc_object_id:
                    continue
                if number <= applied:
                    del self._touched[(cpc, name)]
                elif row is None:
                    rows.pop(name, None)
                else:
                    rows[name] = row
            snapshot = Snapshot(rows=rows, seen_marks=seen_marks, taken_at=started)
            if self._stale.get(cpc_object_id, applied + 1) <= applied:
                del self._stale[cpc_object_id]
            current = self._by_cpc.get(cpc_object_id)
            if current is None or current.seen_marks <= seen_marks:
                self._by_cpc[cpc_object_id] = snapshot
            # Marks older than every use of this CPC's snapshot are reflected in it.
            for key in [k for k, seq in self._marked.items() if k[0] == cpc_object_id]:
                if self._marked[key] <= self._by_cpc[cpc_object_id].seen_marks:
                    del self._marked[key]
            self._changed(cpc_object_id, self._by_cpc[cpc_object_id])
        return snapshot
