"""The storage-group path (CPCs with DPM storage management: z14 and later).

There are no HBAs there (zhmcclient ``_hba.py``; zhmc-ansible-modules
``zhmc_hba``: "z13 only"). Each instance gets one FCP storage group of its
own, on the host's CPC:

- named as its partition (``OpenStack-<host>-<uuid>``; storage group names
  are HMC-wide), described ``OpenStack CPCSubset=<host>``, ``type fcp``,
  ``shared false``, ``max-partitions 1``, ``connectivity`` from the host's
  ``storage_connectivity``; ownership is by the exact name on the host's CPC,
  as for partitions;
- its WWPNs are the volume connector's: DPM allocates them to the group at
  creation (``unassigned-world-wide-port-names``; once attached, the virtual
  storage resources' ``world-wide-port-name``) — HMC WS API book, Storage
  Group object; STORAGE-GROUPS.md 2.2;
- a Cinder volume is a storage volume of the group named ``OpenStack-<volume
  id>`` (``usage boot`` for the boot volume, ``data`` otherwise), sized as
  Cinder's volume;
- the boot volume is fulfilled with Cinder's target WWPN and LUN through the
  host's first adapter port (Fulfill FCP Storage Volume) *before* FCP
  discovery, and discovery (an HMC job) then confirms it: the volume turns
  ``complete`` only when the SAN shows that LUN to the group's WWPNs.
  Discovering first (the order STORAGE-GROUPS.md 8.2 proposes) lets DPM bind
  the volume to another LUN of the same size before it is pinned (DPM
  matches pending volumes by size), which a later Fulfill can no longer undo
  once the guest was booted from it;
- the group is attached to the partition (DPM creates one virtual storage
  resource per path), the partition boots from the volume
  (``boot-device: storage-volume``, ``boot-storage-volume``: API 2.23, HMC
  2.14.0); destroy stops the partition, detaches and deletes the group.

HMC versions: storage groups from HMC 2.14.0 (API 2.23), Start FCP Storage
Discovery from HMC 2.14.1 (API 2.37) (zhmcclient ``_storage_group.py``).
The HMC user needs the "Configure Storage - System Programmer" and
"Configure Storage - Storage Administrator" tasks besides partition
management (zhmcclient docs of these methods).
"""

from __future__ import annotations

import logging
import types

import grpc
import zhmcclient

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import boot
from dpm_backend import errors
from dpm_backend import naming
from dpm_backend import wwpn
from dpm_backend.call import Call
from dpm_backend.host import Host
from dpm_backend.storage import Released
from dpm_backend.storage.undo import Undo
from dpm_backend.validation import BootVolume
from dpm_backend.validation import SpawnSpec

LOG = logging.getLogger(__name__)

GROUP_TYPE = 'fcp'
COMPLETE = 'complete'
# Seconds of the deadline a new storage group needs: its create, or its delete.
CREATE_RESERVE = 0.5
# Validate LUN Path: target (484) or LUN (485) not reachable (zhmcclient Cpc.validate_lun_path).
UNREACHABLE = {(409, 484), (409, 485)}


def volume_name(volume_id: str) -> str:
    """A storage volume's name: the Cinder volume's id (the boot volume's may be unknown)."""
    return f'{naming.PARTITION_PREFIX}{volume_id or "boot"}'


def _uuid_of(host: Host, partition: zhmcclient.Partition) -> str:
    """The instance uuid of one of the host's partitions (found by its exact name)."""
    instance_uuid = naming.instance_uuid_of(host.name, partition.name)
    assert instance_uuid is not None, partition.name
    return instance_uuid


def find_group(call: Call, host: Host, instance_uuid: str) -> zhmcclient.StorageGroup | None:
    """The instance's storage group on the host's CPC, or None (one List Storage Groups)."""
    name = naming.partition_name(host.name, instance_uuid)
    cpc_uri = host.cpc(call.client).uri
    listed = call.client.consoles.console.storage_groups.list(
        filter_args={'name': naming.partition_list_filter(name, exact=True), 'cpc-uri': cpc_uri}
    )
    for group in listed:
        if group.name == name and group.properties.get('cpc-uri') == cpc_uri:
            return group
    return None


def _create_group(call: Call, properties: dict) -> zhmcclient.StorageGroup:
    """Create Storage Group; a name taken elsewhere on the HMC is named as such.

    Storage group names are HMC-wide: a group of another CPC (or of someone
    else) with this instance's name makes the create fail, and is never
    touched.
    """
    console = call.client.consoles.console
    try:
        return console.storage_groups.create(properties)
    except zhmcclient.HTTPError as exc:
        if exc.http_status != 400:
            raise
        clash = console.storage_groups.list(
            filter_args={'name': naming.partition_list_filter(properties['name'], exact=True)}
        )
        if not clash:
            raise
        raise errors.DPMError(
            grpc.StatusCode.FAILED_PRECONDITION,
            pb.ERROR_REASON_HMC_ERROR,
            f'a storage group named {properties["name"]} already exists on the HMC, on '
            f"{clash[0].properties.get('cpc-uri')}, which is not this host's CPC: "
            'storage group names are HMC-wide; rename or remove that group',
        ) from None


def _ensure_group(
    call: Call, host: Host, instance_uuid: str, undo: Undo
) -> zhmcclient.StorageGroup:
    group = undo.memo.get('group') or find_group(call, host, instance_uuid)
    if group is None:
        name = naming.partition_name(host.name, instance_uuid)
        call.deadline.check('create storage group', needs=CREATE_RESERVE)
        group = _create_group(
            call,
            {
                'name': name,
                'description': naming.partition_description(host.name),
                'cpc-uri': host.cpc(call.client).uri,
                'type': GROUP_TYPE,
                'shared': False,
                'max-partitions': 1,
                'connectivity': host.config.storage_connectivity,
            },
        )
        undo.add(f'deleted storage group {name}', group.delete)
        LOG.info('Created storage group %s', name)
    undo.memo['group'] = group
    return group


def _wwpns_now(group: zhmcclient.StorageGroup) -> list[str]:
    """The group's WWPNs: unassigned ones, and those of its virtual storage resources."""
    group.pull_full_properties()
    found = [
        entry['world-wide-port-name']
        for entry in group.properties.get('unassigned-world-wide-port-names') or []
    ]
    if group.properties.get('virtual-storage-resource-uris'):
        for vsr in group.virtual_storage_resources.list(full_properties=True):
            found.append(vsr.properties['world-wide-port-name'])
    return sorted({w for w in (wwpn.normalise(f) for f in found) if w})


def _wwpns(call: Call, host: Host, group: zhmcclient.StorageGroup) -> list[str]:
    """The group's WWPNs once DPM has allocated all of them (within the deadline)."""
    wanted = group.properties.get('connectivity') or host.config.storage_connectivity
    for _ in call.attempts('storage-group-wwpns'):
        found = _wwpns_now(group)
        if len(found) >= wanted:
            return found
    raise errors.hmc_timeout(f'wait for the WWPNs of storage group {group.name}')


def _volumes(group: zhmcclient.StorageGroup) -> dict[str, zhmcclient.StorageVolume]:
    return {volume.name: volume for volume in group.storage_volumes.list(full_properties=True)}


def _ensure_volume(
    group: zhmcclient.StorageGroup,
    volumes: dict[str, zhmcclient.StorageVolume],
    volume: BootVolume,
    usage: str,
    undo: Undo,
) -> zhmcclient.StorageVolume:
    name = volume_name(volume.volume_id)
    existing = volumes.get(name)
    if existing is not None:
        return existing
    created = group.storage_volumes.create({'name': name, 'size': volume.size_gib, 'usage': usage})
    created.pull_full_properties()
    volumes[name] = created
    undo.add(f'deleted storage volume {name} of {group.name}', created.delete)
    return created


def _require_size(volume: BootVolume, field: str) -> None:
    if volume.size_gib <= 0:
        raise errors.invalid_field(
            f'{field}.size_gib', 'is required on a CPC with storage groups (the volume size)'
        )


def _host_port(host: Host) -> types.SimpleNamespace:
    """The host's first adapter port; zhmcclient's Fulfill needs only its ``uri``."""
    adapter_id, port = host.config.adapter_ports[0]
    return types.SimpleNamespace(uri=naming.storage_port_uri(adapter_id, port))


def _validate_path(call: Call, host: Host, initiator: str, target: str, lun: str) -> None:
    """Validate LUN Path until the SAN shows the LUN to the group, within the deadline.

    Fulfill FCP Storage Volume takes the path on trust; this asks the CPC
    (409 reason 484: target not reachable, 485: LUN not reachable; zhmcclient
    ``Cpc.validate_lun_path``). Zoning and masking made by Cinder moments
    ago may still be settling, so a refusal is asked again until the deadline.
    """
    cpc = host.cpc(call.client)
    why = ''
    for _ in call.attempts('validate-lun-path'):
        try:
            cpc.validate_lun_path(initiator, _host_port(host), target, lun)
            return
        except zhmcclient.HTTPError as exc:
            if (exc.http_status, exc.reason) not in UNREACHABLE:
                raise
            why = exc.message
    raise errors.boot_volume_unusable(
        f'target {target} LUN {lun} is not reachable from WWPN {initiator}: {why} '
        "(map the volume's LUN to the storage group's WWPNs and zone them to the target)"
    )


def _on_path(volume: zhmcclient.StorageVolume, target: str, lun: str) -> bool:
    return any(
        wwpn.normalise(path.get('target-world-wide-port-name')) == target
        and (path.get('logical-unit-number') or '').lower() == lun
        for path in volume.properties.get('paths') or []
    )


def _complete(group: zhmcclient.StorageGroup, volumes: list) -> bool:
    """Whether discovery has nothing left to find (read now).

    The group is fulfilled and has its adapter ports (``candidate-adapter-
    port-uris``: set once discovery found working paths, zhmcclient
    ``StorageGroup.add_candidate_adapter_ports``), and every volume is
    fulfilled.
    """
    group.pull_full_properties()
    for volume in volumes:
        volume.pull_full_properties()
    return (
        group.properties.get('fulfillment-state') == COMPLETE
        and bool(group.properties.get('candidate-adapter-port-uris'))
        and all(v.properties.get('fulfillment-state') == COMPLETE for v in volumes)
    )


def _discover(
    call: Call, group: zhmcclient.StorageGroup, volumes: list, force: bool = False
) -> None:
    """FCP discovery (an HMC job) until the group and the volumes are complete.

    The group is complete once discovery found working paths for its WWPNs
    (its adapter ports are then known); a volume once the SAN shows its LUN.
    Within the deadline; nothing is asked when both are complete already
    (unless ``force``).
    """
    if not force and _complete(group, volumes):
        return
    for _ in call.attempts('discover-fcp-rounds'):
        call.deadline.check(f'FCP discovery of storage group {group.name}')
        job = group.discover_fcp(wait_for_completion=False)
        call.jobs.wait(job, 'discover-fcp', call.deadline.end)
        if _complete(group, volumes):
            return
    pending = ', '.join(
        v.name for v in volumes if v.properties.get('fulfillment-state') != COMPLETE
    )
    raise errors.boot_volume_unusable(
        f'FCP discovery of storage group {group.name} did not find {pending} on the SAN: '
        "map the volume's LUN to the group's WWPNs and zone them to the target"
    )


def _attach(call: Call, group, partition: zhmcclient.Partition, undo: Undo) -> None:
    call.dialect.complete(partition, ('storage-group-uris',))
    if group.uri in (partition.properties.get('storage-group-uris') or []):
        return
    partition.attach_storage_group(group)
    partition.update_properties_local(
        {'storage-group-uris': [*(partition.properties.get('storage-group-uris') or []), group.uri]}
    )
    undo.add(f'detached storage group {group.name}', lambda: partition.detach_storage_group(group))


def _pin(
    call: Call,
    host: Host,
    group: zhmcclient.StorageGroup,
    volumes: dict[str, zhmcclient.StorageVolume],
    initiators: list[str],
    volume: BootVolume,
    usage: str,
    undo: Undo,
) -> tuple[zhmcclient.StorageVolume, str, str, bool]:
    """The volume's storage volume, fulfilled with Cinder's target and LUN; those; and
    whether it was fulfilled now.

    Every volume is pinned, not only the boot volume: DPM matches pending
    volumes to LUNs by size, so two data volumes of one size could swap.
    """
    try:
        target = boot.choose_target_of_any(
            initiators, volume.initiator_target_map, host.config.target_wwpn_ignore_list
        )
    except boot.NoBootPath as exc:
        raise errors.boot_volume_unusable(str(exc)) from None
    lun = boot.lun_property(volume.lun)
    storage_volume = _ensure_volume(group, volumes, volume, usage, undo)
    if _on_path(storage_volume, target, lun):
        return storage_volume, target, lun, False
    _validate_path(call, host, initiators[0], target, lun)
    storage_volume.indicate_fulfillment_fcp(target, lun, _host_port(host))
    return storage_volume, target, lun, True


def _discover_pinned(call: Call, group, pinned: list[tuple]) -> None:
    """Discovery until complete; each volume found on the path it was pinned to.

    A volume fulfilled just now is confirmed by one discovery at least.
    """
    _discover(
        call,
        group,
        [storage_volume for storage_volume, _, _, _ in pinned],
        force=any(now for _, _, _, now in pinned),
    )
    for storage_volume, target, lun, _ in pinned:
        if not _on_path(storage_volume, target, lun):
            raise errors.boot_volume_unusable(
                f'storage volume {storage_volume.name} was found on another path than '
                f'target {target} LUN {lun}'
            )


class StorageGroupPath:
    name = 'storage-groups'

    def check(self, spec: SpawnSpec) -> None:
        """Every volume has its size (storage volumes are defined with it)."""
        for field, volume in (
            ('boot_volume', spec.boot_volume),
            *((f'data_volumes[{i}]', v) for i, v in enumerate(spec.data_volumes)),
        ):
            _require_size(volume, field)

    def prepare(self, call: Call, host: Host, partition, undo: Undo) -> list[str]:
        group = _ensure_group(call, host, _uuid_of(host, partition), undo)
        return _wwpns(call, host, group)

    def connector(self, call: Call, host: Host, partition) -> list[str]:
        instance_uuid = _uuid_of(host, partition)
        group = find_group(call, host, instance_uuid)
        if group is None:
            raise errors.hmc_object_not_found(f'storage group of instance {instance_uuid}')
        return _wwpns(call, host, group)

    def device_numbers(self, call: Call, host: Host, partition, undo: Undo) -> set[int]:
        """Those of the group's virtual storage resources in the partition (when attached)."""
        group = _ensure_group(call, host, _uuid_of(host, partition), undo)
        if not group.properties.get('virtual-storage-resource-uris'):
            return set()
        return {
            int(vsr.properties['device-number'], 16)
            for vsr in group.virtual_storage_resources.list(full_properties=True)
            if vsr.properties.get('partition-uri') == partition.uri
            and vsr.properties.get('device-number')
        }

    def boot(self, call: Call, host: Host, partition, spec: SpawnSpec, undo: Undo) -> dict:
        group = _ensure_group(call, host, spec.instance_uuid, undo)
        initiators = _wwpns(call, host, group)
        volumes = _volumes(group)
        pinned = [
            _pin(call, host, group, volumes, initiators, volume, usage, undo)
            for volume, usage in (
                (spec.boot_volume, 'boot'),
                *((v, 'data') for v in spec.data_volumes),
            )
        ]
        _discover_pinned(call, group, pinned)
        _attach(call, group, partition, undo)
        return {'boot-device': 'storage-volume', 'boot-storage-volume': pinned[0][0].uri}

    def attach_volume(self, call: Call, host: Host, partition, volume: BootVolume) -> None:
        _require_size(volume, 'volume')
        instance_uuid = _uuid_of(host, partition)
        group = find_group(call, host, instance_uuid)
        if group is None:
            raise errors.hmc_object_not_found(f'storage group of instance {instance_uuid}')
        undo = Undo()
        try:
            initiators = _wwpns(call, host, group)
            pinned = _pin(call, host, group, _volumes(group), initiators, volume, 'data', undo)
            _discover_pinned(call, group, [pinned])
        except errors.DPMError:
            # Not reachable: take the definition back, so a retry starts clean.
            undo.run_steps()
            raise

    def detach_volume(self, call: Call, host: Host, instance_uuid: str, volume_id: str) -> bool:
        group = find_group(call, host, instance_uuid)
        if group is None:
            return False
        # The list's default properties include the name: no GET per volume.
        name = volume_name(volume_id)
        volume = next((v for v in group.storage_volumes.list() if v.name == name), None)
        if volume is None:
            return False
        volume.delete()
        LOG.info('Deleted storage volume %s of %s', volume.name, group.name)
        return True

    def release(
        self, call: Call, host: Host, instance_uuid: str, partition, read_wwpns: bool
    ) -> Released:
        """Detach the group from the stopped partition (Delete Partition refuses otherwise).

        Returns the group it found, for remove() (one List Storage Groups),
        and, if asked, its WWPNs, read before the detach (whether DPM keeps
        them with the group after a detach is not documented); also when
        the partition is gone already but the group is not.
        """
        group = find_group(call, host, instance_uuid)
        if group is None:
            return Released()
        wwpns = _wwpns_now(group) if read_wwpns else []
        if partition is not None:
            call.dialect.complete(partition, ('storage-group-uris',))
            if group.uri in (partition.properties.get('storage-group-uris') or []):
                partition.detach_storage_group(group)
        return Released(group, wwpns)

    def remove(self, call: Call, host: Host, instance_uuid: str, found=None) -> bool:
        group = found if found is not None else find_group(call, host, instance_uuid)
        if group is None:
            return False
        group.delete()
        LOG.info('Deleted storage group %s', group.name)
        return True


PATH = StorageGroupPath()
