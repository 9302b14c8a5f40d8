"""Choice of the FC boot target and the partition's boot properties."""

from __future__ import annotations

import dataclasses

from dpm_backend import wwpn


@dataclasses.dataclass(frozen=True)
class BootTarget:
    """Where the partition boots from."""

    hba_element_uri: str
    target_wwpn: str
    lun: int


class NoBootPath(Exception):
    """The boot vHBA cannot reach the boot volume."""


def choose_target(
    boot_hba_wwpn: str,
    initiator_target_map: dict[str, list[str]],
    ignore: frozenset[str],
) -> str:
    """The target WWPN to boot from, through the boot vHBA.

    The boot vHBA is the one on the first configured adapter port; its WWPN
    must be an initiator of the volume's map. Its targets minus the ignore
    list are tried in the map's order; the first one wins. WWPNs are compared
    normalised (case, ``0x``), which the original did not do.
    """
    boot = wwpn.normalise(boot_hba_wwpn)
    for initiator, targets in initiator_target_map.items():
        if wwpn.normalise(initiator) != boot:
            continue
        for target in targets:
            normalised = wwpn.normalise(target)
            if normalised and normalised not in ignore:
                return normalised
        raise NoBootPath(f'every target of initiator {boot} is in target_wwpn_ignore_list')
    raise NoBootPath(f'the boot vHBA {boot} is not an initiator of the boot volume')


def choose_target_of_any(
    initiators: list[str],
    initiator_target_map: dict[str, list[str]],
    ignore: frozenset[str],
) -> str:
    """The target WWPN to boot from through any of ``initiators`` (a storage group's WWPNs).

    The map's first initiator among them decides, its targets minus the
    ignore list in the map's order, as for the boot vHBA.
    """
    own = {wwpn.normalise(initiator) for initiator in initiators}
    for initiator in initiator_target_map:
        if wwpn.normalise(initiator) in own:
            return choose_target(initiator, initiator_target_map, ignore)
    raise NoBootPath(
        f'no WWPN of the storage group ({", ".join(sorted(w for w in own if w))}) '
        'is an initiator of the volume'
    )


def lun_property(lun: int) -> str:
    """``boot-logical-unit-number``: the 8-byte FCP LUN of Cinder's SCSI LUN, 16 hex digits.

    Formed as os-brick's s390x FC connector forms it, so the partition boots
    the LUN that Linux on Z attaches for the same volume (os-brick
    ``initiator/connectors/fibre_channel_s390x.py`` ``_get_lun_string``): a
    LUN up to 0xffff goes into the first two bytes (LUN 1 ->
    ``0001000000000000``), a larger one into the first four. The original
    nova-dpm wrote ``str(target_lun)``, which agrees only for LUN 0.
    """
    if lun <= 0xFFFF:
        return f'{lun:04x}000000000000'
    return f'{lun:08x}00000000'


def partition_properties(target: BootTarget) -> dict[str, str]:
    """Partition properties for booting from an FC volume through a vHBA."""
    return {
        'boot-device': 'storage-adapter',
        'boot-storage-device': target.hba_element_uri,
        'boot-world-wide-port-name': target.target_wwpn,
        'boot-logical-unit-number': lun_property(target.lun),
    }
