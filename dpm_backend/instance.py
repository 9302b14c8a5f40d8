"""The partition lifecycle of one instance: prepare, spawn, destroy, power.

Every operation first finds the partition by its exact name and moves it
toward the requested state, so a retried call converges instead of failing.
What a failed prepare or spawn created is removed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterable
from collections.abc import Iterator

import zhmcclient

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import cmdline
from dpm_backend import elements
from dpm_backend import errors
from dpm_backend import fencing
from dpm_backend import naming
from dpm_backend import power
from dpm_backend import resize
from dpm_backend import states
from dpm_backend import storage
from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.host import SIZE_PROPERTIES
from dpm_backend.host import Host
from dpm_backend.host import usage_of
from dpm_backend.storage.undo import Undo
from dpm_backend.validation import BootVolume
from dpm_backend.validation import Flavor
from dpm_backend.validation import SpawnSpec

LOG = logging.getLogger(__name__)

NIC_PROPERTIES = ('name', 'device-number')
HBA_PROPERTIES = ('name', 'wwpn', 'device-number')
CMDLINE_PROPERTY = 'boot-os-specific-parameters'
# Read with the partition lookup of prepare, spawn and the connector (with the
# list on HMC 2.16, by one GET before), so its NICs and vHBAs are known
# without a request each.
DEVICE_LIST_PROPERTIES = ('hba-uris', 'nic-uris')
# NIC device numbers are chosen here (Create NIC accepts one, IBM Docs "Create
# NIC"), so that the command line needs no GET per NIC. A qeth NIC takes three
# consecutive device numbers (the guest groups devno..devno+2); the search
# starts at this one.
FIRST_NIC_DEVICE_NUMBER = 0x1000
QETH_DEVICE_NUMBERS = 3
# Seconds of the deadline a new partition needs: its create and vHBAs, or their undo.
CREATE_RESERVE = 0.5


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
    def power_state(self) -> pb.PowerState:
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


def info_of(call: Call, host: Host, instance_uuid: str, partition: zhmcclient.Partition) -> Info:
    """Info from what is held locally (sizes: see PartitionSizes); no request on HMC 2.16."""
    vcpus, memory_mb = host.sizes.of(call, partition)
    return Info(
        instance_uuid=instance_uuid,
        partition_name=partition.properties.get('name', ''),
        partition_object_id=partition.uri.rsplit('/', 1)[-1],
        status=partition.properties.get('status', ''),
        vcpus=vcpus,
        memory_mb=memory_mb,
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


def _ensure_partition(
    call: Call, host: Host, instance_uuid: str, flavor: Flavor
) -> tuple[zhmcclient.Partition, bool, storage.StoragePath]:
    """The instance's partition, created (within the host's limits) if missing.

    One list of the host's partitions, read fresh, finds it and measures the
    host's usage for the capacity check (sizes: see PartitionSizes). An
    existing one of other sizes is resized to the flavor (see resize).
    """
    path = storage.for_cpc(host.usable_facts(call))
    with host.create_lock:
        owned = host.partitions(call, (*SIZE_PROPERTIES, *DEVICE_LIST_PROPERTIES))
        partition = owned.get(instance_uuid)
        if partition is not None:
            call.dialect.complete(partition, DEVICE_LIST_PROPERTIES)
            resize.converge(call, host, partition, owned, flavor)
            return partition, False, path
        used = usage_of(host.sizes.of(call, p) for p in owned.values())
        host.check_capacity(used, flavor.vcpus, flavor.memory_mb)
        # With the time to create it and, should the call fail, delete it.
        call.deadline.check('create partition', needs=CREATE_RESERVE)
        properties = _partition_properties(host, instance_uuid, flavor)
        partition = host.cpc(call.client).partitions.create(properties)
    host.sizes.record(partition.uri, flavor.vcpus, flavor.memory_mb)
    # A new partition is stopped and has no devices; record it instead of asking the HMC.
    partition.update_properties_local(
        {
            'name': properties['name'],
            'status': states.STOPPED,
            'ifl-processors': flavor.vcpus,
            'initial-memory': flavor.memory_mb,
            'hba-uris': [],
            'nic-uris': [],
            'storage-group-uris': [],
        }
    )
    LOG.info('Created partition %s', properties['name'])
    return partition, True, path


def _delete_partition(call: Call, host: Host, partition: zhmcclient.Partition) -> None:
    power.ensure_stopped(call, partition)
    partition.delete()
    host.sizes.forget(partition.uri)


def _undo(
    call: Call,
    host: Host,
    partition: zhmcclient.Partition,
    created: bool,
    undo: Undo,
) -> None:
    """Remove what a failed call created; the partition is stopped first.

    The status is read again: a start whose reply was lost may have run. A
    partition that cannot be stopped keeps its NICs, so that one which did
    come up is never left running without them. The storage path's steps
    (a storage group detached, volumes or the group deleted) come before the
    partition's delete, which the HMC refuses while a group is attached.
    """
    name = partition.properties.get('name', partition.uri)
    if not created and not undo.nics and not undo.steps:
        return
    power.read_status(call, partition)
    power.ensure_stopped(call, partition)
    if not created and undo.nics:
        for nic in undo.nics:
            nic.delete()
        LOG.warning('Rolled back: deleted %d NICs of %s', len(undo.nics), name)
    undo.run_steps()
    if created:
        _delete_partition(call, host, partition)
        LOG.warning('Rolled back: deleted partition %s', name)


@contextlib.contextmanager
def _rollback_on_error(call: Call, host: Host, partition: zhmcclient.Partition, created: bool):
    """Undo what a failed call created: its NICs, and the partition if it was new.

    A rollback that fails (the HMC is still failing, the deadline passed) is
    logged; what it leaves is what a retry of the call reuses, and what
    destroy removes.
    """
    undo = Undo()
    try:
        yield undo
    except BaseException:
        try:
            _undo(call, host, partition, created, undo)
        except (zhmcclient.Error, errors.DPMError) as exc:
            LOG.error(
                'Rollback of partition %s failed: %s',
                partition.properties.get('name', partition.uri),
                exc,
            )
        raise


def prepare(call: Call, host: Host, instance_uuid: str, flavor: Flavor) -> tuple[Info, list[str]]:
    """The stopped partition with its initiators (vHBAs or storage group), and their WWPNs."""
    partition, created, path = _ensure_partition(call, host, instance_uuid, flavor)
    with _rollback_on_error(call, host, partition, created) as undo:
        wwpns = path.prepare(call, host, partition, undo)
    return info_of(call, host, instance_uuid, partition), wwpns


def volume_connector(call: Call, host: Host, instance_uuid: str) -> list[str]:
    path = storage.for_cpc(host.facts(call))
    partition = host.get_partition(call, instance_uuid, DEVICE_LIST_PROPERTIES)
    return path.connector(call, host, partition)


def _vswitch_ports(call: Call, host: Host, spec: SpawnSpec) -> dict[str, int]:
    """The adapter port behind each virtual switch the NICs use (kept per CPC)."""
    return {
        nic.vswitch_object_id: host.vswitch_port(call, nic.vswitch_object_id) for nic in spec.nics
    }


def _plain_decimal(number: int) -> bool:
    """Whether the 4 hex digits of a device number have no letters."""
    return format(number, '04x').isdigit()


def _free_device_numbers(used: set[int], count: int) -> list[str]:
    """``count`` qeth device numbers whose three subchannels are all free.

    Only numbers written without hex letters are chosen (1000, 1003, ...,
    1010): the kernel command line carries the first one, and the original
    nova-dpm guest tools compare it case-sensitively with the lower-case
    sysfs bus id (``0.0.100c``), so a number with letters would match
    nothing on images built with them.
    """
    chosen: list[str] = []
    number = FIRST_NIC_DEVICE_NUMBER
    while len(chosen) < count:
        span = set(range(number, number + QETH_DEVICE_NUMBERS))
        if span & used or not all(_plain_decimal(n) for n in span):
            number += 1
            continue
        chosen.append(f'{number:04x}')
        used |= span
        number += QETH_DEVICE_NUMBERS
    return chosen


def _ensure_nics(
    call: Call,
    host: Host,
    partition: zhmcclient.Partition,
    spec: SpawnSpec,
    vswitch_ports: dict[str, int],
    used: set[int],
    created: list[zhmcclient.Nic],
) -> list[cmdline.NicToken]:
    """Create the missing NICs; return their command-line tokens in request order.

    ``used``: the device numbers the storage path's devices take.
    """
    existing = {nic.name: nic for nic in elements.read(call, partition.nics, 'nic-uris')}
    used = set(used)
    for nic in existing.values():
        first = int(nic.properties['device-number'], 16)
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
                device_number=nic.properties['device-number'].lower(),
                adapter_port=vswitch_ports[nic_spec.vswitch_object_id],
                mac=nic_spec.mac,
            )
        )
    return tokens


def spawn(
    call: Call, host: Host, spec: SpawnSpec, other_hosts: Iterable[Host] = ()
) -> tuple[Info, str]:
    """Configure and start the partition; return it and the command line written.

    With ``spec.stop_other_hosts_partitions`` the instance's partitions of
    ``other_hosts`` are stopped first (see fencing): if one cannot be, this
    host's partition is neither changed nor started.
    """
    storage.for_cpc(host.usable_facts(call)).check(spec)
    if spec.stop_other_hosts_partitions:
        fencing.stop_other_hosts_partitions(call, host, other_hosts, spec.instance_uuid)
    partition, created, path = _ensure_partition(call, host, spec.instance_uuid, spec.flavor)
    status = power.wait_for_steady(call, partition)
    if status in states.RUNNING:
        # A retry after the partition came up: it is configured already.
        call.dialect.complete(partition, (CMDLINE_PROPERTY,))
        info = info_of(call, host, spec.instance_uuid, partition)
        return info, partition.properties.get(CMDLINE_PROPERTY) or ''
    with _rollback_on_error(call, host, partition, created) as undo:
        if status not in states.NOT_STARTED:
            power.stop(call, partition)
        used = path.device_numbers(call, host, partition, undo)
        ports = _vswitch_ports(call, host, spec)
        tokens = _ensure_nics(call, host, partition, spec, ports, used, undo.nics)
        value = cmdline.value(tokens)
        if not cmdline.fits(value):
            raise errors.cmdline_too_long(len(value), cmdline.MAX_LENGTH)
        properties = path.boot(call, host, partition, spec, undo)
        properties[CMDLINE_PROPERTY] = value
        partition.update_properties(properties)
        if not spec.leave_stopped:
            power.start(call, partition)
    LOG.info(
        '%s partition %s',
        'Configured' if spec.leave_stopped else 'Started',
        partition.properties.get('name'),
    )
    return info_of(call, host, spec.instance_uuid, partition), value


def destroy(
    call: Call, host: Host, instance_uuid: str, read_wwpns: bool = True
) -> tuple[bool, list[str]]:
    """Stop and delete the partition (NICs and vHBAs go with it) and its storage group.

    Returns whether anything was left to delete, and (if ``read_wwpns``) the
    WWPNs of the initiators it deleted, read before they go: Nova asks for
    the volume connector after destroy, and a caller that never asked for
    it before (an instance the original nova-dpm created) has them from
    here only. The storage group is looked for even when the partition is
    gone: a destroy that failed between the two deletes converges on its retry.
    """
    path = storage.for_cpc(host.facts(call))
    partition = host.find_partition(call, instance_uuid)
    if partition is not None:
        power.ensure_stopped(call, partition)
    released = path.release(call, host, instance_uuid, partition, read_wwpns)
    if partition is not None:
        _delete_partition(call, host, partition)
        LOG.info('Deleted partition %s', partition.properties.get('name'))
    removed = path.remove(call, host, instance_uuid, released.found)
    return partition is not None or removed, released.wwpns


def attach_volume(call: Call, host: Host, instance_uuid: str, volume: BootVolume) -> None:
    path = storage.for_cpc(host.usable_facts(call))
    partition = host.get_partition(call, instance_uuid)
    path.attach_volume(call, host, partition, volume)


def detach_volume(call: Call, host: Host, instance_uuid: str, volume_id: str) -> bool:
    path = storage.for_cpc(host.facts(call))
    return path.detach_volume(call, host, instance_uuid, volume_id)


def power_off(call: Call, host: Host, instance_uuid: str) -> Info:
    partition = host.get_partition(call, instance_uuid)
    power.ensure_stopped(call, partition)
    return info_of(call, host, instance_uuid, partition)


def power_on(call: Call, host: Host, instance_uuid: str) -> Info:
    partition = host.get_partition(call, instance_uuid)
    power.ensure_started(call, partition)
    return info_of(call, host, instance_uuid, partition)


def reboot(call: Call, host: Host, instance_uuid: str) -> Info:
    partition = host.get_partition(call, instance_uuid)
    power.ensure_stopped(call, partition)
    power.start(call, partition)
    return info_of(call, host, instance_uuid, partition)


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
