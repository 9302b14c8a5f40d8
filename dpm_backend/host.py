"""A Nova host: a subset of one CPC, and the partitions it owns.

Ownership is decided by the partition name alone (``OpenStack-<host>-<uuid>``,
compared exactly, never as a pattern), so a host never sees another host's
partitions or one that OpenStack did not create.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import zhmcclient

from dpm_backend import errors
from dpm_backend import naming
from dpm_backend.call import Call
from dpm_backend.config import HostConfig

STORAGE_MANAGEMENT_FEATURE = 'dpm-storage-management'
# CPC statuses in which DPM partitions can be managed (as the original checked).
OPERATING_CPC_STATUSES = frozenset({'active', 'service-required', 'degraded', 'exceptions'})
CPC_PROPERTIES = (
    'name',
    'dpm-enabled',
    'status',
    'se-version',
    'processor-count-ifl',
    'storage-customer',
    'available-features-list',
)
# A partition's size: read with the partition list where the HMC can (2.16).
SIZE_PROPERTIES = ('ifl-processors', 'initial-memory')


@dataclasses.dataclass(frozen=True)
class CpcFacts:
    """What the backend needs to know about a CPC; slow to change."""

    object_id: str
    name: str
    dpm_enabled: bool
    status: str
    se_version: str
    processor_count_ifl: int
    storage_customer: int
    storage_management: bool
    fetched_at: float


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a host's partitions use of its CPC subset."""

    vcpus: int
    memory_mb: int
    count: int


def hypervisor_version(se_version: str) -> int:
    """``a.b.c`` -> a*1000000 + b*1000 + c (Nova's integer version)."""
    parts = [int(part) for part in se_version.split('.')[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2]


def storage_management_enabled(cpc_properties: dict) -> bool:
    """Whether the CPC's firmware features (as read) include dpm-storage-management.

    A CPC whose HMC reports no ``available-features-list`` is z13-era
    (firmware features exist from HMC/SE 2.14.0, API 2.23: zhmcclient
    ``Cpc.firmware_feature_enabled``); read from what was fetched, so that
    the check never costs another request.
    """
    return any(
        feature.get('name') == STORAGE_MANAGEMENT_FEATURE and feature.get('state')
        for feature in cpc_properties.get('available-features-list') or []
    )


class CpcFactsCache:
    """CPC facts and virtual switch ports per CPC, shared by all hosts.

    Facts are reused for a TTL. A virtual switch's adapter port never changes
    (it is the port of its backing adapter), so ports are kept for good; a
    switch not known yet is looked for once more. Reads are single-flight per
    CPC: calls that miss at once (a TTL just expired) wait for one read
    instead of each sending their own.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._facts: dict[str, CpcFacts] = {}
        # cpc object id -> virtual switch object id -> adapter port
        self._vswitch_ports: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._reading: dict[tuple[str, str], threading.Lock] = {}
        # CPCs whose changes HMC notifications report, since when: facts read since
        # do not age (a change makes them forgotten); older ones age as before.
        self._live: set[str] = set()
        self._live_since = 0.0

    def set_live(self, object_ids: set[str]) -> None:
        """Facts of these CPCs read from now on stay valid until forgotten."""
        self._live = set(object_ids)
        self._live_since = time.monotonic()

    def clear(self) -> None:
        """Forget every CPC's facts (another backend served meanwhile); switch ports stay."""
        with self._lock:
            self._facts.clear()
        self._live = set()

    def forget(self, object_id: str) -> None:
        """A notification reported a change of the CPC: read its facts again when needed."""
        with self._lock:
            self._facts.pop(object_id, None)

    def _single_flight(self, what: str, object_id: str) -> threading.Lock:
        with self._lock:
            return self._reading.setdefault((what, object_id), threading.Lock())

    def get(self, call: Call, object_id: str, fresh: bool = False) -> CpcFacts:
        """The CPC's facts: young ones, or read now (``fresh``: read after this call began)."""
        asked = time.monotonic()
        cached = self._facts.get(object_id)
        if cached and not fresh and self._young(cached):
            return cached
        with self._single_flight('facts', object_id):
            cached = self._facts.get(object_id)
            # Read by the call this one waited for?
            if cached and (cached.fetched_at >= asked or (not fresh and self._young(cached))):
                return cached
            return self._read(call, object_id)

    def _young(self, facts: CpcFacts) -> bool:
        if facts.object_id in self._live and facts.fetched_at >= self._live_since:
            return True
        return time.monotonic() - facts.fetched_at < self._ttl

    def _read(self, call: Call, object_id: str) -> CpcFacts:
        now = time.monotonic()
        cpc = call.client.cpcs.resource_object(object_id)
        call.dialect.complete(cpc, CPC_PROPERTIES)
        props = cpc.properties
        facts = CpcFacts(
            object_id=object_id,
            name=props.get('name', ''),
            dpm_enabled=bool(props.get('dpm-enabled', False)),
            status=props.get('status', ''),
            se_version=props.get('se-version') or '0.0.0',
            processor_count_ifl=int(props.get('processor-count-ifl') or 0),
            storage_customer=int(props.get('storage-customer') or 0),
            storage_management=storage_management_enabled(props),
            fetched_at=now,
        )
        with self._lock:
            self._facts[object_id] = facts
        return facts

    def peek(self, object_id: str) -> CpcFacts | None:
        """The cached facts if still young; no HMC request."""
        cached = self._facts.get(object_id)
        return cached if cached and self._young(cached) else None

    def vswitch_port(self, call: Call, cpc_object_id: str, object_id: str) -> int:
        """The adapter port of a virtual switch of the CPC; KeyError if it has none such.

        HMC 2.16 and later list every switch with its port in one request;
        on older HMCs each switch is read once (one GET).
        """
        known = self._vswitch_ports.get(cpc_object_id, {})
        if object_id in known:
            return known[object_id]
        with self._single_flight('vswitches', cpc_object_id):
            known = self._vswitch_ports.get(cpc_object_id, {})
            if object_id in known:
                return known[object_id]
            return self._read_vswitch_ports(call, cpc_object_id, object_id)

    def _read_vswitch_ports(self, call: Call, cpc_object_id: str, object_id: str) -> int:
        cpc = call.client.cpcs.resource_object(cpc_object_id)
        ports = call.dialect.virtual_switch_ports(cpc, object_id)
        with self._lock:
            self._vswitch_ports.setdefault(cpc_object_id, {}).update(ports)
        return ports[object_id]


# How many deleted partitions PartitionSizes remembers (URIs are never reused).
DELETED_REMEMBERED = 1024


class PartitionSizes:
    """``ifl-processors`` and ``initial-memory`` of partitions, by URI.

    HMCs before 2.16 cannot list partitions with their sizes. This backend
    knows the sizes of the partitions it created and reads any other one of
    its hosts once (one GET); HMC 2.16 lists them with the partitions, which
    refreshes them here. Sizes change only through the active backend of the
    HMC (a partition is created with its flavor's size and resized to another
    flavor, see :mod:`dpm_backend.resize`); a standby forgets them all.
    """

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int]] = {}
        # Partitions this backend deleted lately (a list taken just before
        # may still name them): never read, they are gone.
        self._deleted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def record(self, uri: str, vcpus: int, memory_mb: int) -> None:
        with self._lock:
            self._sizes[uri] = (vcpus, memory_mb)

    def clear(self) -> None:
        """Forget every size: another backend may have resized or deleted partitions."""
        with self._lock:
            self._sizes.clear()
            self._deleted.clear()

    def forget(self, uri: str) -> None:
        """The partition was deleted."""
        with self._lock:
            self._sizes.pop(uri, None)
            self._deleted[uri] = None
            while len(self._deleted) > DELETED_REMEMBERED:
                self._deleted.popitem(last=False)

    def of(self, call: Call, partition: zhmcclient.Partition) -> tuple[int, int]:
        """The partition's size: as listed (2.16), as known, or from one GET.

        CeasedExistence for a partition this backend deleted (no request).
        """
        if not all(name in partition.properties for name in SIZE_PROPERTIES):
            with self._lock:
                known = self._sizes.get(partition.uri)
                deleted = partition.uri in self._deleted
            if known is not None:
                return known
            if deleted:
                raise zhmcclient.CeasedExistence(partition.uri)
            call.dialect.complete(partition, SIZE_PROPERTIES)
        props = partition.properties  # a new dict after a pull
        size = (int(props.get('ifl-processors') or 0), int(props.get('initial-memory') or 0))
        self.record(partition.uri, *size)
        return size


class Host:
    """A CPC subset: its CPC, its limits and its own partitions."""

    def __init__(self, config: HostConfig, cpc_facts: CpcFactsCache, sizes: PartitionSizes) -> None:
        self.config = config
        self.name = config.name
        self._cpc_facts = cpc_facts
        self.sizes = sizes
        # Why the host failed its start-up checks (its calls are refused), or None.
        self.problem: str | None = None
        # Serialises capacity check + create within this host only.
        self.create_lock = threading.Lock()

    def cpc(self, client: zhmcclient.Client) -> zhmcclient.Cpc:
        """The CPC as a zhmcclient object; no HMC request."""
        return client.cpcs.resource_object(self.config.cpc_object_id)

    def facts(self, call: Call, fresh: bool = False) -> CpcFacts:
        try:
            return self._cpc_facts.get(call, self.config.cpc_object_id, fresh)
        except zhmcclient.CeasedExistence:
            raise errors.cpc_not_usable(
                self.name, f'CPC {self.config.cpc_object_id} does not exist on the HMC'
            ) from None

    def check_cpc(self, facts: CpcFacts) -> None:
        """Raise FAILED_PRECONDITION unless the CPC can run this host's partitions."""
        cpc = f'CPC {facts.name} ({facts.object_id})'
        if not facts.dpm_enabled:
            raise errors.cpc_not_usable(self.name, f'{cpc} is not in DPM mode')
        if facts.status not in OPERATING_CPC_STATUSES:
            raise errors.cpc_not_usable(self.name, f'{cpc} has status {facts.status}')
        if self.config.max_processors > facts.processor_count_ifl:
            raise errors.cpc_not_usable(
                self.name,
                f'max_processors {self.config.max_processors} exceeds the '
                f'{facts.processor_count_ifl} IFL processors of {cpc}',
            )
        if self.config.max_memory > facts.storage_customer:
            raise errors.cpc_not_usable(
                self.name,
                f'max_memory {self.config.max_memory} MiB exceeds the '
                f'{facts.storage_customer} MiB customer storage of {cpc}',
            )

    def cached_facts(self) -> CpcFacts | None:
        """The CPC facts if the cache holds young ones; no HMC request."""
        return self._cpc_facts.peek(self.config.cpc_object_id)

    def usable_facts(self, call: Call) -> CpcFacts:
        facts = self.facts(call)
        self.check_cpc(facts)
        return facts

    def partitions(
        self, call: Call, properties: tuple[str, ...] = ()
    ) -> dict[str, zhmcclient.Partition]:
        """This host's partitions by instance uuid; one HMC request.

        ``properties`` come with the list on HMC 2.16 and later only.
        """
        prefix = naming.partition_name_prefix(self.name)
        found = call.dialect.list_partitions(
            self.cpc(call.client), naming.partition_list_filter(prefix, exact=False), properties
        )
        owned = {}
        for partition in found:
            instance_uuid = naming.instance_uuid_of(self.name, partition.name)
            if instance_uuid is not None:
                owned[instance_uuid] = partition
        return owned

    def find_partition(
        self, call: Call, instance_uuid: str, properties: tuple[str, ...] = ()
    ) -> zhmcclient.Partition | None:
        """The instance's partition with its status and ``properties``, or None.

        One List Partitions by exact name (which brings ``properties`` on HMC
        2.16), and on older HMCs one GET of the partition if ``properties``
        are wanted.
        """
        name = naming.partition_name(self.name, instance_uuid)
        for partition in call.dialect.list_partitions(
            self.cpc(call.client), naming.partition_list_filter(name, exact=True), properties
        ):
            if partition.name == name:
                call.dialect.complete(partition, properties)
                return partition
        return None

    def get_partition(
        self, call: Call, instance_uuid: str, properties: tuple[str, ...] = ()
    ) -> zhmcclient.Partition:
        partition = self.find_partition(call, instance_uuid, properties)
        if partition is None:
            raise errors.instance_not_found(self.name, instance_uuid)
        return partition

    def check_capacity(self, used: Usage, vcpus: int, memory_mb: int, more: bool = False) -> None:
        """RESOURCE_EXHAUSTED unless the subset can hold one more partition this size.

        ``more``: the sizes are the growth of a partition counted in ``used``.
        """
        more_ = 'more ' if more else ''
        if used.vcpus + vcpus > self.config.max_processors:
            raise errors.capacity_exceeded(
                self.name,
                f'{vcpus} {more_}processors requested, {used.vcpus} of '
                f'{self.config.max_processors} in use',
            )
        if used.memory_mb + memory_mb > self.config.max_memory:
            raise errors.capacity_exceeded(
                self.name,
                f'{memory_mb} MiB {more_}requested, {used.memory_mb} of '
                f'{self.config.max_memory} MiB in use',
            )

    def vswitch_port(self, call: Call, object_id: str) -> int:
        """The adapter port behind a virtual switch of this host's CPC."""
        try:
            return self._cpc_facts.vswitch_port(call, self.config.cpc_object_id, object_id)
        except KeyError:
            raise errors.hmc_object_not_found(
                f'virtual switch {object_id} on the CPC of host {self.name}'
            ) from None


def usage_of(sizes) -> Usage:
    """What partitions with ``(ifl-processors, initial-memory)`` sizes use together."""
    sizes = list(sizes)
    return Usage(
        vcpus=sum(vcpus for vcpus, _ in sizes),
        memory_mb=sum(memory for _, memory in sizes),
        count=len(sizes),
    )
