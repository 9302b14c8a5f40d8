"""A Nova host: a subset of one CPC, and the partitions it owns.

Ownership is decided by the partition name alone (``OpenStack-<host>-<uuid>``,
compared exactly, never as a pattern), so a host never sees another host's
partitions or one that OpenStack did not create.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import zhmcclient

from dpm_backend import errors
from dpm_backend import naming
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
# Read with the partition list in the same request (HMC 2.16 additional-properties).
SIZE_PROPERTIES = ('ifl-processors', 'initial-memory')
# The adapter port a virtual switch connects (for the kernel command line).
VSWITCH_PROPERTIES = ('port',)


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


class CpcFactsCache:
    """CPC facts and virtual switch ports per CPC, shared by all hosts, reused for a TTL."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._facts: dict[str, CpcFacts] = {}
        # cpc object id -> (fetched at, virtual switch object id -> adapter port)
        self._vswitches: dict[str, tuple[float, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def get(self, client: zhmcclient.Client, object_id: str, fresh: bool = False) -> CpcFacts:
        now = time.monotonic()
        cached = self._facts.get(object_id)
        if cached and not fresh and now - cached.fetched_at < self._ttl:
            return cached
        cpc = client.cpcs.resource_object(object_id)
        cpc.pull_properties(list(CPC_PROPERTIES))
        facts = CpcFacts(
            object_id=object_id,
            name=cpc.prop('name', ''),
            dpm_enabled=bool(cpc.prop('dpm-enabled', False)),
            status=cpc.prop('status', ''),
            se_version=cpc.prop('se-version', '0.0.0'),
            processor_count_ifl=int(cpc.prop('processor-count-ifl', 0)),
            storage_customer=int(cpc.prop('storage-customer', 0)),
            # A CPC whose HMC reports no firmware features is z13-era.
            storage_management=cpc.firmware_feature_enabled(STORAGE_MANAGEMENT_FEATURE),
            fetched_at=now,
        )
        with self._lock:
            self._facts[object_id] = facts
        return facts

    def peek(self, object_id: str) -> CpcFacts | None:
        """The cached facts if still young; no HMC request."""
        cached = self._facts.get(object_id)
        if cached and time.monotonic() - cached.fetched_at < self._ttl:
            return cached
        return None

    def vswitch_port(self, client: zhmcclient.Client, cpc_object_id: str, object_id: str) -> int:
        """The adapter port of a virtual switch of the CPC; KeyError if it has none such.

        All virtual switches of the CPC are listed in one request and reused
        for the TTL; a switch not in the list is looked for once more.
        """
        now = time.monotonic()
        fetched_at, ports = self._vswitches.get(cpc_object_id, (0.0, {}))
        if object_id in ports and now - fetched_at < self._ttl:
            return ports[object_id]
        cpc = client.cpcs.resource_object(cpc_object_id)
        listed = cpc.virtual_switches.list(additional_properties=list(VSWITCH_PROPERTIES))
        ports = {
            vswitch.uri.rsplit('/', 1)[-1]: int(vswitch.properties.get('port', 0) or 0)
            for vswitch in listed
        }
        with self._lock:
            self._vswitches[cpc_object_id] = (now, ports)
        return ports[object_id]


class Host:
    """A CPC subset: its CPC, its limits and its own partitions."""

    def __init__(self, config: HostConfig, cpc_facts: CpcFactsCache) -> None:
        self.config = config
        self.name = config.name
        self._cpc_facts = cpc_facts
        # Serialises capacity check + create within this host only.
        self.create_lock = threading.Lock()

    def cpc(self, client: zhmcclient.Client) -> zhmcclient.Cpc:
        """The CPC as a zhmcclient object; no HMC request."""
        return client.cpcs.resource_object(self.config.cpc_object_id)

    def facts(self, client: zhmcclient.Client, fresh: bool = False) -> CpcFacts:
        try:
            return self._cpc_facts.get(client, self.config.cpc_object_id, fresh)
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

    def require_vhba_path(self, facts: CpcFacts) -> None:
        if facts.storage_management:
            raise errors.storage_path_unsupported(self.name, facts.name, STORAGE_MANAGEMENT_FEATURE)

    def cached_facts(self) -> CpcFacts | None:
        """The CPC facts if the cache holds young ones; no HMC request."""
        return self._cpc_facts.peek(self.config.cpc_object_id)

    def usable_facts(self, client: zhmcclient.Client) -> CpcFacts:
        facts = self.facts(client)
        self.check_cpc(facts)
        return facts

    def partitions(
        self, client: zhmcclient.Client, properties: tuple[str, ...] = ()
    ) -> dict[str, zhmcclient.Partition]:
        """This host's partitions by instance uuid, with ``properties``; one HMC request."""
        prefix = naming.partition_name_prefix(self.name)
        found = self.cpc(client).partitions.list(
            filter_args={'name': naming.partition_list_filter(prefix, exact=False)},
            additional_properties=list(properties) or None,
        )
        owned = {}
        for partition in found:
            instance_uuid = naming.instance_uuid_of(self.name, partition.name)
            if instance_uuid is not None:
                owned[instance_uuid] = partition
        return owned

    def find_partition(
        self,
        client: zhmcclient.Client,
        instance_uuid: str,
        properties: tuple[str, ...] = SIZE_PROPERTIES,
    ) -> zhmcclient.Partition | None:
        """The instance's partition (with status and ``properties``), or None; one HMC request."""
        name = naming.partition_name(self.name, instance_uuid)
        for partition in self.cpc(client).partitions.list(
            filter_args={'name': naming.partition_list_filter(name, exact=True)},
            additional_properties=list(properties),
        ):
            if partition.name == name:
                return partition
        return None

    def get_partition(
        self,
        client: zhmcclient.Client,
        instance_uuid: str,
        properties: tuple[str, ...] = SIZE_PROPERTIES,
    ) -> zhmcclient.Partition:
        partition = self.find_partition(client, instance_uuid, properties)
        if partition is None:
            raise errors.instance_not_found(self.name, instance_uuid)
        return partition

    def check_capacity(self, used: Usage, vcpus: int, memory_mb: int) -> None:
        """RESOURCE_EXHAUSTED unless the subset can hold one more partition this size."""
        if used.vcpus + vcpus > self.config.max_processors:
            raise errors.capacity_exceeded(
                self.name,
                f'{vcpus} processors requested, {used.vcpus} of '
                f'{self.config.max_processors} in use',
            )
        if used.memory_mb + memory_mb > self.config.max_memory:
            raise errors.capacity_exceeded(
                self.name,
                f'{memory_mb} MiB requested, {used.memory_mb} of '
                f'{self.config.max_memory} MiB in use',
            )

    def vswitch_port(self, client: zhmcclient.Client, object_id: str) -> int:
        """The adapter port behind a virtual switch of this host's CPC."""
        try:
            return self._cpc_facts.vswitch_port(client, self.config.cpc_object_id, object_id)
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
