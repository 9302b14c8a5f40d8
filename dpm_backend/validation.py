"""Checks of DPMHost requests, before any HMC request is made.

Each function turns a proto message into a plain, checked value or raises a
DPMError naming the field. Nothing here talks to the HMC.
"""

from __future__ import annotations

import dataclasses
import re

import grpc

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import cmdline
from dpm_backend import errors
from dpm_backend import naming
from dpm_backend import wwpn

MAC = re.compile(r'[0-9a-f]{2}(?::[0-9a-f]{2}){5}')
# Bounds well beyond any CPC, so that absurd values never reach the HMC.
MAX_VCPUS = 512
MAX_MEMORY_MB = 64 * 1024 * 1024


def _shown(value: str) -> str:
    """A bounded, printable rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


@dataclasses.dataclass(frozen=True)
class Flavor:
    vcpus: int
    memory_mb: int


@dataclasses.dataclass(frozen=True)
class NicSpec:
    port_id: str
    mac: str
    vswitch_object_id: str


@dataclasses.dataclass(frozen=True)
class BootVolume:
    lun: int
    initiator_target_map: dict[str, list[str]]
    # Cinder's volume id ('' when the caller did not say) and size in GiB (0: unknown).
    volume_id: str = ''
    size_gib: int = 0


@dataclasses.dataclass(frozen=True)
class SpawnSpec:
    instance_uuid: str
    flavor: Flavor
    nics: tuple[NicSpec, ...]
    boot_volume: BootVolume
    leave_stopped: bool = False
    data_volumes: tuple[BootVolume, ...] = ()
    stop_other_hosts_partitions: bool = False


def instance_uuid(value: str, field: str = 'instance_uuid') -> str:
    if not naming.is_canonical_uuid(value):
        raise errors.invalid_field(field, f'{_shown(value)} is not a lower-case hyphenated UUID')
    return value


def flavor(message: pb.Flavor, present: bool, field: str = 'flavor') -> Flavor:
    if not present:
        raise errors.invalid_field(field, 'is required')
    if not 1 <= message.vcpus <= MAX_VCPUS:
        raise errors.invalid_field(f'{field}.vcpus', f'must be 1 to {MAX_VCPUS}')
    if not 1 <= message.memory_mb <= MAX_MEMORY_MB:
        raise errors.invalid_field(f'{field}.memory_mb', f'must be 1 to {MAX_MEMORY_MB}')
    return Flavor(vcpus=message.vcpus, memory_mb=message.memory_mb)


def mac(value: str, field: str) -> str:
    normalised = value.lower()
    if not MAC.fullmatch(normalised):
        raise errors.invalid_field(field, f'{_shown(value)} is not a MAC aa:bb:cc:dd:ee:ff')
    first = int(normalised[:2], 16)
    if first & 0x01:
        raise errors.invalid_field(field, f'{value} is a multicast MAC')
    if not first & 0x02:
        # The guest tools only set locally administered MACs.
        raise errors.invalid_field(field, f'{value} is not a locally administered MAC')
    return normalised


def nic(message: pb.Nic, field: str) -> NicSpec:
    if message.vif_type != contract.DPM_VSWITCH:
        raise errors.DPMError(
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.ERROR_REASON_VIF_UNSUPPORTED,
            f'{field}.vif_type: {_shown(message.vif_type)} is not supported; '
            f'only {contract.DPM_VSWITCH} VIFs can be attached',
            field=f'{field}.vif_type',
        )
    if message.HasField('vlan'):
        raise errors.DPMError(
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.ERROR_REASON_VIF_UNSUPPORTED,
            f'{field}.vlan: VLAN {message.vlan} requested; DPM virtual switches '
            'carry flat networks only',
            field=f'{field}.vlan',
        )
    if not naming.is_canonical_uuid(message.port_id):
        raise errors.invalid_field(
            f'{field}.port_id', f'{_shown(message.port_id)} is not a Neutron port id'
        )
    if not contract.OBJECT_ID.fullmatch(message.vswitch_object_id):
        raise errors.invalid_field(
            f'{field}.vswitch_object_id',
            f'{_shown(message.vswitch_object_id)} is not an HMC object id',
        )
    return NicSpec(
        port_id=message.port_id,
        mac=mac(message.mac, f'{field}.mac'),
        vswitch_object_id=message.vswitch_object_id,
    )


def nics(messages) -> tuple[NicSpec, ...]:
    if len(messages) > contract.MAX_NICS:
        raise errors.DPMError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            pb.ERROR_REASON_TOO_MANY_NICS,
            f'nics: {len(messages)} NICs requested; the kernel command line '
            f'({cmdline.MAX_LENGTH} characters) describes at most {contract.MAX_NICS}',
            field='nics',
        )
    specs = tuple(nic(message, f'nics[{index}]') for index, message in enumerate(messages))
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.port_id in seen:
            raise errors.invalid_field(f'nics[{index}].port_id', 'is listed twice')
        seen.add(spec.port_id)
    return specs


MAX_LUN = 0xFFFFFFFF


def _wwpn(value: str, field: str) -> str:
    normalised = wwpn.normalise(value)
    if normalised is None:
        raise errors.invalid_field(field, f'{_shown(value)} is not a WWPN of 16 hex digits')
    return normalised


def boot_volume(message: pb.FcBootVolume, present: bool, field: str = 'boot_volume') -> BootVolume:
    if not present and field == 'boot_volume':
        raise errors.DPMError(
            grpc.StatusCode.INVALID_ARGUMENT,
            pb.ERROR_REASON_IMAGE_BOOT_UNSUPPORTED,
            'boot_volume: DPM partitions cannot boot from an image; boot from an FC '
            'volume (block device mapping with boot_index 0)',
            field='boot_volume',
        )
    if not present:
        raise errors.invalid_field(field, 'is required')
    if message.volume_id:
        volume_id(message.volume_id, f'{field}.volume_id')
    map_field = f'{field}.initiator_target_map'
    field = map_field
    if not message.initiator_target_map:
        raise errors.invalid_field(field, 'is empty')
    mapping: dict[str, list[str]] = {}
    for index, entry in enumerate(message.initiator_target_map):
        initiator = _wwpn(entry.initiator_wwpn, f'{field}[{index}].initiator_wwpn')
        if not entry.target_wwpns:
            raise errors.invalid_field(f'{field}[{index}].target_wwpns', 'is empty')
        mapping[initiator] = [
            _wwpn(target, f'{field}[{index}].target_wwpns[{position}]')
            for position, target in enumerate(entry.target_wwpns)
        ]
    if message.target_lun > MAX_LUN:
        # Beyond four bytes os-brick's s390x form has no room (boot.lun_property).
        raise errors.invalid_field(
            map_field.replace('initiator_target_map', 'target_lun'),
            f'{message.target_lun} is larger than {MAX_LUN:#x}',
        )
    return BootVolume(
        lun=message.target_lun,
        initiator_target_map=mapping,
        volume_id=message.volume_id,
        size_gib=message.size_gib,
    )


def data_volumes(messages) -> tuple[BootVolume, ...]:
    volumes = tuple(
        boot_volume(message, True, f'data_volumes[{index}]')
        for index, message in enumerate(messages)
    )
    for index, volume in enumerate(volumes):
        if not volume.volume_id:
            raise errors.invalid_field(f'data_volumes[{index}].volume_id', 'is required')
    ids = [volume.volume_id for volume in volumes]
    if len(set(ids)) != len(ids):
        raise errors.invalid_field('data_volumes', 'names a volume twice')
    return volumes


def attach_volume(request: pb.AttachVolumeRequest) -> BootVolume:
    volume = boot_volume(request.volume, request.HasField('volume'), 'volume')
    if not volume.volume_id:
        raise errors.invalid_field('volume.volume_id', 'is required')
    return volume


# A Cinder volume id (a UUID in practice) names a storage volume: OpenStack-<id>,
# at most 64 characters, of the characters HMC names take safely.
VOLUME_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,53}')


def volume_id(value: str, field: str = 'volume_id') -> str:
    if not VOLUME_ID.fullmatch(value):
        raise errors.invalid_field(
            field, f'{_shown(value)} is not a volume id (1 to 54 letters, digits, ".", "_", "-")'
        )
    return value


def spawn(request: pb.SpawnRequest) -> SpawnSpec:
    return SpawnSpec(
        instance_uuid=instance_uuid(request.instance_uuid),
        flavor=flavor(request.flavor, request.HasField('flavor')),
        nics=nics(request.nics),
        boot_volume=boot_volume(request.boot_volume, request.HasField('boot_volume')),
        leave_stopped=request.leave_stopped,
        data_volumes=data_volumes(request.data_volumes),
        stop_other_hosts_partitions=request.stop_other_hosts_partitions,
    )
