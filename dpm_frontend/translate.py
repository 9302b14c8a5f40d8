"""Nova objects -> DPMHost requests, and DPMHost replies -> Nova values.

Pure functions: no backend call, no configuration (a value they cannot map is
logged). What DPM cannot do is refused here with an exception Nova does not
reschedule.
"""

from __future__ import annotations

from nova.compute import power_state
from oslo_log import log as logging

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from nova import exception

LOG = logging.getLogger(__name__)

FIBRE_CHANNEL = 'fibre_channel'
# Prefix of the instance.system_metadata keys holding the initiator WWPNs
# (vHBAs or storage group) of the instance's partition on one Nova host
# (WWPNS_KEY + ':' + host): Nova asks for the volume connector after destroy,
# when the HMC no longer knows them. Stored by prepare, the first connector,
# or, for an instance without them (created by the original nova-dpm), by
# destroy. One key per host: during a move the source's and the destination's
# partitions have initiators of their own.
WWPNS_KEY = 'dpm_wwpns'

POWER_STATES = {
    pb.POWER_STATE_RUNNING: power_state.RUNNING,
    pb.POWER_STATE_SHUTDOWN: power_state.SHUTDOWN,
    pb.POWER_STATE_CRASHED: power_state.CRASHED,
    pb.POWER_STATE_UNSPECIFIED: power_state.NOSTATE,
}


def flavor(instance) -> pb.Flavor:
    return pb.Flavor(vcpus=instance.flavor.vcpus, memory_mb=instance.flavor.memory_mb)


def refuse_image_boot(instance) -> None:
    """DPM partitions boot from FC volumes; an image-backed server cannot run."""
    if instance.image_ref:
        raise exception.InstanceUnacceptable(
            instance_id=instance.uuid,
            reason='DPM partitions can only boot from a fibre channel volume: create '
            'the server from a volume (block device mapping with boot_index 0)',
        )


def check_vifs(instance, network_info) -> None:
    """Refuse VIFs DPM cannot attach, before anything is built for them."""
    vifs = list(network_info or [])
    if len(vifs) > contract.MAX_NICS:
        raise exception.InstanceUnacceptable(
            instance_id=instance.uuid,
            reason=f'{len(vifs)} ports requested; a DPM partition gets at most {contract.MAX_NICS}',
        )
    for vif in vifs:
        if vif['type'] != contract.DPM_VSWITCH:
            raise exception.InstanceUnacceptable(
                instance_id=instance.uuid,
                reason=f'port {vif["id"]} has VIF type {vif["type"]!r}; only '
                f'{contract.DPM_VSWITCH} (networking-dpm) ports can be attached',
            )
        details = vif.get('details') or {}
        if details.get('vlan') is not None:
            raise exception.InstanceUnacceptable(
                instance_id=instance.uuid,
                reason=f'port {vif["id"]} is on VLAN {details["vlan"]}; DPM virtual '
                'switches carry flat networks only',
            )
        if not details.get('object_id'):
            raise exception.InstanceUnacceptable(
                instance_id=instance.uuid,
                reason=f'port {vif["id"]} names no virtual switch (VIF details object_id)',
            )


def nics(network_info) -> list[pb.Nic]:
    result = []
    for vif in network_info or []:
        details = vif.get('details') or {}
        nic = pb.Nic(
            port_id=vif['id'],
            mac=vif['address'] or '',
            vif_type=vif['type'] or '',
            vswitch_object_id=str(details.get('object_id', '')),
        )
        if details.get('vlan') is not None:
            nic.vlan = int(details['vlan'])
        result.append(nic)
    return result


def _mappings(block_device_info) -> list:
    return list((block_device_info or {}).get('block_device_mapping') or [])


def _bdm_value(bdm, name: str):
    """A field of Nova's DriverVolumeBlockDevice (proxied as an attribute) or of a dict."""
    value = getattr(bdm, name, None)
    if value is None and isinstance(bdm, dict):
        value = bdm.get(name)
    return value


def root_volume_connection(block_device_info) -> dict | None:
    """connection_info of the boot volume (boot_index 0), or None."""
    for bdm in _mappings(block_device_info):
        if bdm.get('boot_index') == 0:
            return bdm.get('connection_info')
    return None


def volume_id_of(connection_info: dict) -> str:
    """Cinder's volume id: Nova puts it in ``serial``; some drivers in ``data``."""
    data = connection_info.get('data') or {}
    return str(connection_info.get('serial') or data.get('volume_id') or '')


def fc_volume(
    connection: dict,
    connector_wwpns: list[str],
    size_gib: int | None,
    what: str,
    volume_id: str | None = None,
) -> pb.FcBootVolume:
    """An FC volume as DPMHost takes it, from Cinder's connection_info."""
    if connection.get('driver_volume_type') != FIBRE_CHANNEL:
        raise exception.InvalidInput(
            reason=f'the {what} is attached through '
            f'{connection.get("driver_volume_type")!r}; DPM supports fibre_channel only '
            '(no FICON/ECKD or NVMe volumes)'
        )
    data = connection.get('data') or {}
    mapping = data.get('initiator_target_map')
    if not mapping:
        # Drivers without a map expose every target to every initiator.
        targets = data.get('target_wwn') or []
        targets = [targets] if isinstance(targets, str) else list(targets)
        mapping = {wwpn: targets for wwpn in connector_wwpns}
    lun = data.get('target_lun', 0)
    if isinstance(lun, list):
        lun = lun[0] if lun else 0
    return pb.FcBootVolume(
        target_lun=int(lun),
        initiator_target_map=[
            pb.InitiatorTargets(initiator_wwpn=initiator, target_wwpns=list(targets))
            for initiator, targets in mapping.items()
        ],
        volume_id=volume_id_of(connection) or volume_id or '',
        size_gib=int(size_gib or 0),
    )


def boot_volume(block_device_info, connector_wwpns: list[str]) -> pb.FcBootVolume | None:
    """The FC boot volume of the instance, or None for an image boot."""
    for bdm in _mappings(block_device_info):
        if bdm.get('boot_index') == 0 and bdm.get('connection_info'):
            return fc_volume(
                bdm['connection_info'],
                connector_wwpns,
                _bdm_value(bdm, 'volume_size'),
                'boot volume',
                _bdm_value(bdm, 'volume_id'),
            )
    return None


def data_volumes(block_device_info, connector_wwpns: list[str]) -> list[pb.FcBootVolume]:
    """The other FC volumes of the block device mapping, attached at spawn."""
    return [
        fc_volume(bdm['connection_info'], connector_wwpns, _bdm_value(bdm, 'volume_size'), 'volume')
        for bdm in _mappings(block_device_info)
        if bdm.get('boot_index') != 0 and bdm.get('connection_info')
    ]


def connector(instance_uuid: str, wwpns: list[str]) -> dict:
    """The volume connector Cinder's FC drivers read (the original's format)."""
    return {'wwpns': list(wwpns), 'host': instance_uuid}


def wwpns_key(host: str) -> str:
    """The system_metadata key of the instance's WWPNs on Nova host ``host``."""
    return f'{WWPNS_KEY}:{host}'


def stored_wwpns(instance, host: str) -> list[str] | None:
    """The WWPNs of the instance's partition on ``host``, as stored; None if none are."""
    value = (instance.system_metadata or {}).get(wwpns_key(host))
    return value.split(',') if value else None


def power_state_of(info: pb.InstanceInfo) -> int:
    """Nova's power state of ``info``; NOSTATE, logged, for a value not in POWER_STATES."""
    state = POWER_STATES.get(info.power_state)
    if state is None:
        LOG.warning(
            'Unknown DPMHost power state %(value)d (partition status %(status)r); '
            'reporting NOSTATE',
            {'value': info.power_state, 'status': info.partition_status},
            instance_uuid=info.instance_uuid or None,
        )
        return power_state.NOSTATE
    return state
