"""The kernel command line that tells the guest tools how to set up each NIC.

DPM cannot set or report a NIC's MAC address. The backend therefore writes one
token per NIC into the partition's ``boot-os-specific-parameters``; the guest
tools (guest_tools/) read it from /proc/cmdline, configure the qeth device on
the right adapter port and set the MAC.
"""

from __future__ import annotations

import dataclasses

# HMC limit of boot-os-specific-parameters.
MAX_LENGTH = 256
# A token is "DDDD,P,MMMMMMMMMMMM;" (20 characters) plus a separating space:
# 12 NICs fit into 256 characters, 13 do not (dpm_api.v1.contract.MAX_NICS).
SEPARATOR = ' '


@dataclasses.dataclass(frozen=True)
class NicToken:
    """What the guest needs to know about one NIC."""

    device_number: str  # HMC 'device-number', 4 hex digits
    adapter_port: int  # the virtual switch's adapter port, 0-3
    mac: str  # aa:bb:cc:dd:ee:ff


def token(nic: NicToken) -> str:
    """``<devno>,<port>,<mac without colons>;`` for one NIC."""
    return f'{nic.device_number},{nic.adapter_port},{nic.mac.replace(":", "").lower()};'


def value(nics: list[NicToken]) -> str:
    """The whole boot-os-specific-parameters value for these NICs, in order."""
    return SEPARATOR.join(token(nic) for nic in nics)


def fits(text: str) -> bool:
    """Whether the whole value fits the HMC property (not just one token)."""
    return len(text) <= MAX_LENGTH
