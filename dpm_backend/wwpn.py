"""World-wide port names: one normal form for comparing HMC and Cinder values."""

from __future__ import annotations

import re

_WWPN = re.compile(r'(?:0x)?([0-9a-f]{16})')


def normalise(value: str) -> str | None:
    """Return 16 lower-case hex digits without ``0x``, or None if not a WWPN.

    The HMC reports WWPNs in upper case, Cinder drivers in either case and
    some with ``0x``: compare only normalised values.
    """
    match = _WWPN.fullmatch(value.strip().lower())
    return match.group(1) if match else None
