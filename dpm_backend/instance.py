"""The partition lifecycle of one instance: prepare, spawn, destroy, power.

Every operation first finds the partition by its exact name and moves it
toward the requested state, so a retried call converges instead of failing.
What a failed prepare or spawn created is removed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator

import zhmcclient

from dpm_backend import boot
from dpm_backend import cmdline
from dpm_backend import errors
from dpm_backend import naming
from dpm_backend import states
from dpm_backend.host import SIZE_PROPERTIES
from dpm_backend.host import Host
from dpm_backend.host import usage_of
from dpm_backend.validation import Flavor
from dpm_backend.validation import SpawnSpec

LOG = logging.getLogger(__name__)

NIC_PROPERTIES = ('name', 'device-number')
HBA_PROPERTIES = ('name', 'wwpn', 'device-number')
CMDLINE_PROPERTY = 'boot-os-specific-parameters'
# Read with the partition lookup of prepare, spawn and the connector, so its
# NICs and vHBAs are known without another request.
DEVICE_LIST_PROPERTIES = (*SIZE_PROPERTIES, 'hba-uris', 'nic-uris')
# NIC device numbers are chosen here (Create NIC accepts one), so that the
# command line needs no GET per NIC. A qeth NIC takes three consecutive device
# numbers (the guest groups devno..devno+2); the search starts at this one.
FIRST_NIC_DEVICE_NUMBER = 0x1000
QETH_DEVICE_NUMBERS = 3


class Deadline:
    """The time left for an operation; HMC waits never outlast the caller."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def timeout(self, action: str) -> int:
        """Whole seconds left for an HMC wait (zhmcclient treats 0 as none)."""
        left = self.remaining()
        if left <= 0:
            raise errors.hmc_timeout(action)
        return max(1, math.floor(left))


@dataclasses.dataclass(frozen=True)
class Info:
    """An instance's partition as DPMHost reports it."""

    instance_uuid: str
    partition_name: str
    partition_object_id: str
    status: str
    vcpus: int
    memory_mb: int

    @property
    def power_state(self) -> int:
        return states.power_state(self.status)


def info_of_row(instance_uuid: str, row) -> Info:
    """Info from a partition snapshot row; no HMC request."""
    return Info(
        instance_uuid=instance_uuid,
        partition_name=row.name,
        partition_object_id=row.uri.rsplit('/', 1)[-1],
        status=row.status,
        vcpus=row.ifl_processors,
        memory_mb=row.initial_memory,
    )


def info_of(instance_uuid: str, partition: zhmcclient.Partition) -> Info:
    """Info from properties already held locally; no HMC request."""
    props = partition.properties
    return Info(
        instance_uuid=instance_uuid,
        partition_name=props.get('name', ''),
        partition_object_id=partition.uri.rsplit('/', 1)[-1],
        status=props.get('status', ''),
        vcpus=int(props.get('ifl-processors', 0) or 0),
        memory_mb=int(props.get('initial-memory', 0) or 0),
    )


class InstanceLocks:
    """One lock per instance, so concurrent calls for one instance take turns.

    A lock lives only while a call holds or waits for it, so the table does
    not grow with every instance ever seen. Waiting honours the caller's
    deadline: a call stuck behind another one ends with DEADLINE_EXCEEDED
    instead of outliving its caller.
    """

    def __init__(self) -> None:
        # key -> [lock, number of calls holding or waiting for it]
        self._locks: dict[tuple[str, str], list] = {}
        self._guard = threading.Lock()

    def __len__(self) -> int:
        with self._guard:
            return len(self._locks)

    @contextlib.contextmanager
    def hold(
        self, host: str, instance_uuid: str, deadline: Deadline | None = None
    ) -> Iterator[None]:
        key = (host, instance_uuid)
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        lock = entry[0]
        try:
            timeout = -1 if deadline is None else max(deadline.remaining(), 0)
            if not lock.acquire(timeout=timeout):
                raise errors.instance_busy(host, instance_uuid)
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]


def _partition_properties(host: Host, instance_uuid: str, flavor: Flavor) -> dict:
    return {
        'name': naming.partition_name(host.name, instance_uuid),
        'description': naming.partition_description(host.name),
        'ifl-processors': flavor.vcpus,
        'initial-memory': flavor.memory_mb,
        'maximum-memory': flavor.memory_mb,
    }


def _wait_for_steady(partition: zhmcclient.Partition, deadline: Deadline) -> str:
    """Wait until the partition leaves starting/stopping; return its status."""
    status = partition.properties.get('status', '')
    if status in states.TRANSITIONAL:
        steady = sorted(set(states.POWER_STATES) - states.TRANSITIONAL)
        partition.wait_for_status(steady, status_timeout=deadline.timeout('wait for status'))
        status = partition.properties.get('status', '')
    return status


def _stop(partition: zhmcclient.Partition, deadline: Deadline) -> None:
    timeout = deadline.timeout('stop partition')
    partition.stop(wait_for_completion=True, operation_timeout=timeout, status_timeout=timeout)


def _start(partition: zhmcclient.Partition, deadline: Deadline) -> None:
    timeout = deadline.timeout('start partition')
    partition.start(wait_for_completion=True, operation_timeout=timeout, status_timeout=timeout)


def _ensure_stopped(partition: zhmcclient.Partition, deadline: Deadline) -> None:
    status = _wait_for_steady(partition, deadline)
    if status != states.STOPPED:
        _stop(partition, deadline)


def _devices(manager, uri_property: str, properties: tuple[str, ...]) -> list:
    """The partition's NICs or vHBAs with ``properties``: one GET each.

    The partition's list of them was read with the partition itself
    (DEVICE_LIST_PROPERTIES, or recorded when this backend created it).
    """
    partition = manager.partition
    if uri_property not in partition.properties:
        partition.pull_properties([uri_property])
    devices = []
    for uri in partition.properties[uri_property] or []:
        device = manager.resource_object(uri)
        device.pull_properties(list(properties))
        devices.append(device)
    return devices


def _hbas_by_name(partition: zhmcclient.Partition) -> dict[str, zhmcclient.Hba]:
    return {hba.name: hba for hba in _devices(partition.hbas, 'hba-uris', HBA_PROPERTIES)}


def _ensure_hbas(host: Host, partition: zhmcclient.Partition) -> dict[str, zhmcclient.Hba]:
    """Create the vHBAs the host's adapter mappings call for; return all by name."""
    hbas = _hbas_by_name(partition)
    for adapter_id, port in host.config.adapter_ports:
        name = naming.hba_name(adapter_id, port)
        if name in hbas:
            continue
        hba = partition.hbas.create(
            {
                'name': name,
                'description': naming.hba_description(host.name),
                'adapter-port-uri': naming.storage_port_uri(adapter_id, port),
            }
        )
        hba.pull_properties(list(HBA_PROPERTIES))
        hbas[name] = hba
    return hbas


def _wwpns(hbas: dict[str, zhmcclient.Hba]) -> list[str]:
    return sorted(hba.prop('wwpn').lower().removeprefix('0x') for hba in hbas.values())


def _ensure_partition(
    client: zhmcclient.Client, host: Host, instance_uuid: str, flavor: Flavor
) -> tuple[zhmcclient.Partition, bool]:
    """The instance's partition, created (within the host's limits) if missing.

    One list of the host's partitions, read fresh, finds it and measures the
    host's usage for the capacity check.
    """
    facts = host.usable_facts(client)
    host.require_vhba_path(facts)
    with host.create_lock:
        owned = host.partitions(client, DEVICE_LIST_PROPERTIES)
        partition = owned.get(instance_uuid)
        if partition is not None:
            return partition, False
        used = usage_of(
            (int(p.prop('ifl-processors', 0) or 0), int(p.prop('initial-memory', 0) or 0))
            for p in owned.values()
        )
        host.check_capacity(used, flavor.vcpus, flavor.memory_mb)
        properties = _partition_properties(host, instance_uuid, flavor)
        partition = host.cpc(client).partitions.create(properties)
    # A new partition is stopped and has no devices; record it instead of asking the HMC.
    partition.update_properties_local({'status': states.STOPPED, 'hba-uris': [], 'nic-uris': []})
    LOG.info('Created partition %s', properties['name'])
    return partition, True


def _delete_partition(partition: zhmcclient.Partition, deadline: Deadline) -> None:
    _ensure_stopped(partition, deadline)
    partition.delete()


def _undo(
    partition: zhmcclient.Partition,
    created: bool,
    created_nics: list[zhmcclient.Nic],
    deadline: Deadline,
) -> None:
    """Remove what a failed call created; the partition is stopped first.

    The status is read again: a start whose reply was lost may have run. A
    partition that cannot be stopped keeps its NICs, so that one which did
    come up is never left running without them.
    """
    name = partition.properties.get('name', partition.uri)
    if not created and not created_nics:
        return
    partition.pull_properties(['status'])
    if created:
        _delete_partition(partition, deadline)
        LOG.warning('Rolled back: deleted partition %s', name)
        return
    _ensure_stopped(partition, deadline)
    for nic in created_nics:
        nic.delete()
    LOG.warning('Rolled back: deleted %d NICs of %s', len(created_nics), name)


@contextlib.contextmanager
def _rollback_on_error(partition: zhmcclient.Partition, created: bool, deadline: Deadline):
    """Undo what a failed call created: its NICs, and the partition if it was new.

    A rollback that fails (the HMC is still failing, the deadline passed) is
    logged; what it leaves is what a retry of the call reuses, and what
    destroy removes.
    """
    created_nics: list[zhmcclient.Nic] = []
    try:
        yield created_nics
    except BaseException:
        try:
            _undo(partition, created, created_nics, deadline)
        except (zhmcclient.Error, errors.DPMError) as exc:
            LOG.error(
                'Rollback of partition %s failed: %s',
                partition.properties.get('name', partition.uri),
                exc,
            )
        raise


def prepare(
    client: zhmcclient.Client,
    host: Host,
    instance_uuid: str,
    flavor: Flavor,
    deadline: Deadline,
) -> tuple[Info, list[str]]:
    """The stopped partition with its vHBAs, and their WWPNs."""
    partition, created = _ensure_partition(client, host, instance_uuid, flavor)
    with _rollback_on_error(partition, created, deadline):
        hbas = _ensure_hbas(host, partition)
    return info_of(instance_uuid, partition), _wwpns(hbas)


def volume_connector(client: zhmcclient.Client, host: Host, instance_uuid: str) -> list[str]:
    partition = host.get_partition(client, instance_uuid, DEVICE_LIST_PROPERTIES)
    return _wwpns(_hbas_by_name(partition))


def _vswitch_ports(host: Host, client: zhmcclient.Client, spec: SpawnSpec) -> dict[str, int]:
    """The adapter port behind each virtual switch the NICs use (cached per CPC)."""
    return {
        nic.vswitch_object_id: host.vswitch_port(client, nic.vswitch_object_id) for nic in spec.nics
    }


def _free_device_numbers(used: set[int], count: int) -> list[str]:
    """``count`` qeth device numbers whose three subchannels are all free."""
    chosen: list[str] = []
    number = FIRST_NIC_DEVICE_NUMBER
    while len(chosen) < count:
        span = set(range(number, number + QETH_DEVICE_NUMBERS))
        if span & used:
            number += 1
            continue
        chosen.append(f'{number:04X}')
        used |= span
        number += QETH_DEVICE_NUMBERS
    return chosen


def _ensure_nics(
    host: Host,
    partition: zhmcclient.Partition,
    spec: SpawnSpec,
    vswitch_ports: dict[str, int],
    hbas: dict[str, zhmcclient.Hba],
    created: list[zhmcclient.Nic],
) -> list[cmdline.NicToken]:
    """Create the missing NICs; return their command-line tokens in request order."""
    existing = {nic.name: nic for nic in _devices(partition.nics, 'nic-uris', NIC_PROPERTIES)}
    used: set[int] = set()
    for hba in hbas.values():
        if hba.properties.get('device-number'):
            used.add(int(hba.properties['device-number'], 16))
    for nic in existing.values():
        first = int(nic.prop('device-number'), 16)
        used.update(range(first, first + QETH_DEVICE_NUMBERS))
    missing = [n for n in spec.nics if naming.nic_name(n.port_id) not in existing]
    free = iter(_free_device_numbers(used, len(missing)))
    tokens = []
    for nic_spec in spec.nics:
        name = naming.nic_name(nic_spec.port_id)
        nic = existing.get(name)
        if nic is None:
            device_number = next(free)
            nic = partition.nics.create(
                {
                    'name': name,
                    'description': naming.nic_description(host.name, nic_spec.mac),
                    'virtual-switch-uri': naming.virtual_switch_uri(nic_spec.vswitch_object_id),
                    'device-number': device_number,
                }
            )
            nic.update_properties_local({'device-number': device_number})
            created.append(nic)
        tokens.append(
            cmdline.NicToken(
                device_number=nic.prop('device-number'),
                adapter_port=vswitch_ports[nic_spec.vswitch_object_id],
                mac=nic_spec.mac,
            )
        )
    return tokens


def _boot_target(host: Host, hbas: dict[str, zhmcclient.Hba], spec: SpawnSpec) -> boot.BootTarget:
    adapter_id, port = host.config.adapter_ports[0]
    boot_hba = hbas[naming.hba_name(adapter_id, port)]
    try:
        target = boot.choose_target(
            boot_hba.prop('wwpn'),
            spec.boot_volume.initiator_target_map,
            host.config.target_wwpn_ignore_list,
        )
    except boot.NoBootPath as exc:
        raise errors.boot_volume_unusable(str(exc)) from None
    return boot.BootTarget(boot_hba.uri, target, spec.boot_volume.lun)


def spawn(
    client: zhmcclient.Client, host: Host, spec: SpawnSpec, deadline: Deadline
) -> tuple[Info, str]:
    """Configure and start the partition; return it and the command line written."""
    partition, created = _ensure_partition(client, host, spec.instance_uuid, spec.flavor)
    status = _wait_for_steady(partition, deadline)
    if status in states.RUNNING:
        # A retry after the partition came up: it is configured already.
        partition.pull_properties([CMDLINE_PROPERTY])
        return info_of(spec.instance_uuid, partition), partition.prop(CMDLINE_PROPERTY, '')
    with _rollback_on_error(partition, created, deadline) as created_nics:
        if status != states.STOPPED:
            _stop(partition, deadline)
        hbas = _ensure_hbas(host, partition)
        ports = _vswitch_ports(host, client, spec)
        tokens = _ensure_nics(host, partition, spec, ports, hbas, created_nics)
        value = cmdline.value(tokens)
        if not cmdline.fits(value):
            raise errors.cmdline_too_long(len(value), cmdline.MAX_LENGTH)
        properties = boot.partition_properties(_boot_target(host, hbas, spec))
        properties[CMDLINE_PROPERTY] = value
        partition.update_properties(properties)
        if not spec.leave_stopped:
            _start(partition, deadline)
    LOG.info(
        '%s partition %s',
        'Configured' if spec.leave_stopped else 'Started',
        partition.properties.get('name'),
    )
    return info_of(spec.instance_uuid, partition), value


def destroy(client: zhmcclient.Client, host: Host, instance_uuid: str, deadline: Deadline) -> bool:
    """Stop and delete the partition (NICs and vHBAs go with it); False if gone."""
    partition = host.find_partition(client, instance_uuid)
    if partition is None:
        return False
    _delete_partition(partition, deadline)
    LOG.info('Deleted partition %s', partition.properties.get('name'))
    return True


def power_off(
    client: zhmcclient.Client, host: Host, instance_uuid: str, deadline: Deadline
) -> Info:
    partition = host.get_partition(client, instance_uuid)
    _ensure_stopped(partition, deadline)
    return info_of(instance_uuid, partition)


def power_on(client: zhmcclient.Client, host: Host, instance_uuid: str, deadline: Deadline) -> Info:
    partition = host.get_partition(client, instance_uuid)
    status = _wait_for_steady(partition, deadline)
    if status not in states.RUNNING:
        if status != states.STOPPED:
            # A paused partition (in-guest shutdown) cannot be started directly.
            _stop(partition, deadline)
        _start(partition, deadline)
    return info_of(instance_uuid, partition)


def reboot(client: zhmcclient.Client, host: Host, instance_uuid: str, deadline: Deadline) -> Info:
    partition = host.get_partition(client, instance_uuid)
    _ensure_stopped(partition, deadline)
    _start(partition, deadline)
    return info_of(instance_uuid, partition)


def info_in(snapshot, host: Host, instance_uuid: str) -> Info:
    """The instance's Info from a CPC snapshot; INSTANCE_NOT_FOUND if it has none."""
    row = snapshot.rows.get(naming.partition_name(host.name, instance_uuid))
    if row is None:
        raise errors.instance_not_found(host.name, instance_uuid)
    return info_of_row(instance_uuid, row)


def infos_in(snapshot, host: Host) -> list[Info]:
    """The host's instances from a CPC snapshot."""
    return [
        info_of_row(instance_uuid, row)
        for instance_uuid, row in sorted(snapshot.owned(host.name).items())
    ]
