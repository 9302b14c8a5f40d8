"""The simulated SAN behind a CPC's FCP adapters: which target ports and LUNs exist.

DPM does not create LUNs: a storage administrator (for OpenStack: Cinder, with
the FC zone manager) masks LUNs to a storage group's WWPNs, and DPM discovers
them (shared/STORAGE-GROUPS.md sections 2.3, 2.4). The simulator's SAN is a
list of LUNs, each on a target WWPN, optionally with its size in GiB, the host
WWPNs it is masked to (none given: every host) and a volume UUID.

An *open* fabric (the default) also has every LUN on every target, reachable
from every host WWPN: a backend then works without any setup. A *closed* one
has only the LUNs listed. As a dict (the admin interface's JSON)::

    {"open": false,
     "luns": [{"target-world-wide-port-name": "5005076810260382",
               "logical-unit-number": "0001000000000000",
               "size": 10,
               "host-world-wide-port-names": ["c05076f000000001"],
               "uuid": "600507681081001d4800000000000083"}]}

WWPNs and LUNs are 16 hexadecimal digits (any case; kept in lower case, the
HMC's form).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

HEX16 = re.compile(r'[0-9a-fA-F]{16}')
LUN_KEYS = frozenset({
    'target-world-wide-port-name', 'logical-unit-number', 'size',
    'host-world-wide-port-names', 'uuid',
})  # fmt: skip


def hex16(value: Any, what: str) -> str:
    if not isinstance(value, str) or not HEX16.fullmatch(value):
        raise ValueError(f'{what} must be 16 hexadecimal digits, not {value!r}')
    return value.lower()


@dataclasses.dataclass(frozen=True)
class Lun:
    """One LUN of the SAN."""

    target: str
    lun: str
    size: float | None = None
    hosts: frozenset[str] | None = None  # None: masked to every host WWPN
    uuid: str | None = None

    def visible_to(self, wwpns: Iterable[str]) -> bool:
        return self.hosts is None or not self.hosts.isdisjoint(wwpns)

    def fits(self, size: float | None) -> bool:
        """Whether a volume defined with ``size`` GiB matches this LUN (no size: any)."""
        return self.size is None or size is None or abs(self.size - float(size)) < 1e-6

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Lun:
        unknown = set(spec) - LUN_KEYS
        if unknown:
            raise ValueError(f'unknown LUN keys {sorted(unknown)} (known: {sorted(LUN_KEYS)})')
        size = spec.get('size')
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int | float) or size <= 0
        ):
            raise ValueError(f'size must be a number of GiB > 0, not {size!r}')
        hosts = spec.get('host-world-wide-port-names')
        if hosts is not None:
            if isinstance(hosts, str) or not isinstance(hosts, Iterable):
                raise ValueError('host-world-wide-port-names must be a list of WWPNs')
            hosts = frozenset(hex16(host, 'a host WWPN') for host in hosts)
        uuid = spec.get('uuid')
        if uuid is not None and not isinstance(uuid, str):
            raise ValueError(f'uuid must be a string, not {uuid!r}')
        return cls(
            hex16(spec.get('target-world-wide-port-name'), 'target-world-wide-port-name'),
            hex16(spec.get('logical-unit-number'), 'logical-unit-number'),
            None if size is None else float(size),
            hosts,
            uuid,
        )

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            'target-world-wide-port-name': self.target,
            'logical-unit-number': self.lun,
        }
        if self.size is not None:
            entry['size'] = self.size
        if self.hosts is not None:
            entry['host-world-wide-port-names'] = sorted(self.hosts)
        if self.uuid is not None:
            entry['uuid'] = self.uuid
        return entry


@dataclasses.dataclass(frozen=True)
class Fabric:
    """The SAN: open (every LUN exists) or only the LUNs listed."""

    open: bool = True
    luns: tuple[Lun, ...] = ()

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Fabric:
        unknown = set(spec) - {'open', 'luns'}
        if unknown:
            raise ValueError(f'unknown fabric keys {sorted(unknown)} (known: open, luns)')
        is_open = spec.get('open', True)
        if not isinstance(is_open, bool):
            raise ValueError(f'open must be true or false, not {is_open!r}')
        luns = spec.get('luns', ())
        if isinstance(luns, str | Mapping) or not isinstance(luns, Iterable):
            raise ValueError('luns must be a list')
        return cls(is_open, tuple(Lun.from_dict(entry) for entry in luns))

    def to_dict(self) -> dict[str, Any]:
        return {'open': self.open, 'luns': [lun.to_dict() for lun in self.luns]}

    def with_lun(self, lun: Lun) -> Fabric:
        """This fabric plus one LUN (one on the same target and LUN number is replaced)."""
        kept = tuple(x for x in self.luns if (x.target, x.lun) != (lun.target, lun.lun))
        return dataclasses.replace(self, luns=(*kept, lun))

    def visible(self, wwpns: Iterable[str]) -> list[Lun]:
        """The listed LUNs masked to any of these host WWPNs."""
        wwpns = set(wwpns)
        return [lun for lun in self.luns if lun.visible_to(wwpns)]

    def find(self, target: str, lun: str, wwpns: Iterable[str]) -> Lun | None:
        for entry in self.visible(wwpns):
            if (entry.target, entry.lun) == (target, lun):
                return entry
        return None

    def validates(self, wwpn: str) -> bool:
        """Whether DPM finds a working path for this host WWPN (some LUN is masked to it)."""
        return self.open or bool(self.visible([wwpn]))

    def reaches(self, wwpns: Iterable[str], target: str, lun: str) -> tuple[bool, bool]:
        """(target reachable, LUN reachable) from any of these host WWPNs."""
        if self.open:
            return True, True
        visible = self.visible(wwpns)
        return (
            any(entry.target == target for entry in visible),
            any((entry.target, entry.lun) == (target, lun) for entry in visible),
        )
