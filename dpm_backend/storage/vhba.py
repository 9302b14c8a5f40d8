"""The vHBA path (CPCs without DPM storage management, i.e. z13).

One vHBA per configured adapter port (``physical_storage_adapter_mappings``),
named and described as the original nova-dpm did; the connector's WWPNs are
theirs; the partition boots through the first one
(``boot-device: storage-adapter``). Data volumes need nothing on the HMC: the
guest scans its vHBAs for the LUNs Cinder maps to their WWPNs.
"""

from __future__ import annotations

import zhmcclient

from dpm_backend import boot
from dpm_backend import elements
from dpm_backend import errors
from dpm_backend import naming
from dpm_backend.call import Call
from dpm_backend.host import Host
from dpm_backend.storage import Released
from dpm_backend.storage.undo import Undo
from dpm_backend.validation import BootVolume
from dpm_backend.validation import SpawnSpec


def _hbas_by_name(call: Call, partition: zhmcclient.Partition) -> dict[str, zhmcclient.Hba]:
    return {hba.name: hba for hba in elements.read(call, partition.hbas, 'hba-uris')}


def _ensure_hbas(
    call: Call, host: Host, partition: zhmcclient.Partition
) -> dict[str, zhmcclient.Hba]:
    """Create the vHBAs the host's adapter mappings call for; return all by name.

    They go with the partition: a failed call that created the partition
    deletes it, one that did not leaves them for its retry.
    """
    hbas = _hbas_by_name(call, partition)
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
        hba.pull_full_properties()
        hbas[name] = hba
    return hbas


def _wwpns(hbas: dict[str, zhmcclient.Hba]) -> list[str]:
    return sorted(hba.properties['wwpn'].lower().removeprefix('0x') for hba in hbas.values())


def _boot_target(host: Host, hbas: dict[str, zhmcclient.Hba], spec: SpawnSpec) -> boot.BootTarget:
    adapter_id, port = host.config.adapter_ports[0]
    boot_hba = hbas[naming.hba_name(adapter_id, port)]
    try:
        target = boot.choose_target(
            boot_hba.properties['wwpn'],
            spec.boot_volume.initiator_target_map,
            host.config.target_wwpn_ignore_list,
        )
    except boot.NoBootPath as exc:
        raise errors.boot_volume_unusable(str(exc)) from None
    return boot.BootTarget(boot_hba.uri, target, spec.boot_volume.lun)


class VhbaPath:
    name = 'vhba'

    def check(self, spec: SpawnSpec) -> None:
        """Nothing beyond the request's own checks."""

    def prepare(self, call: Call, host: Host, partition, undo: Undo) -> list[str]:
        return _wwpns(_ensure_hbas(call, host, partition))

    def connector(self, call: Call, host: Host, partition) -> list[str]:
        return _wwpns(_hbas_by_name(call, partition))

    def device_numbers(self, call: Call, host: Host, partition, undo: Undo) -> set[int]:
        hbas = undo.memo['hbas'] = _ensure_hbas(call, host, partition)
        return {
            int(hba.properties['device-number'], 16)
            for hba in hbas.values()
            if hba.properties.get('device-number')
        }

    def boot(self, call: Call, host: Host, partition, spec: SpawnSpec, undo: Undo) -> dict:
        hbas = undo.memo.get('hbas') or _hbas_by_name(call, partition)
        return boot.partition_properties(_boot_target(host, hbas, spec))

    def attach_volume(self, call: Call, host: Host, partition, volume: BootVolume) -> None:
        """Nothing on the HMC: Cinder maps the LUN to the vHBAs' WWPNs."""

    def detach_volume(self, call: Call, host: Host, instance_uuid: str, volume_id: str) -> bool:
        return False

    def release(
        self, call: Call, host: Host, instance_uuid: str, partition, read_wwpns: bool
    ) -> Released:
        """Nothing to do: the vHBAs are deleted with the partition.

        Their WWPNs, if asked for: every vHBA of the partition, as the
        connector answers them (a vHBA's WWPN is in no list: one GET each,
        after the partition's ``hba-uris``).
        """
        if partition is None or not read_wwpns:
            return Released()
        return Released(wwpns=_wwpns(_hbas_by_name(call, partition)))

    def remove(self, call: Call, host: Host, instance_uuid: str, found=None) -> bool:
        return False


PATH = VhbaPath()
