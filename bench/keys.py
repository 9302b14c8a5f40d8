"""Keys of the per-operation results: ``n{nics}_m{vhbas}``, one way in and one way out.

Each result entry also carries its ``nics`` and ``vhbas`` as numbers; readers
use those, or :func:`parse` for a bare key. Never slice a key by position:
``n12_m4`` and ``n1_m10`` are keys too.
"""

from __future__ import annotations

import re

_KEY = re.compile(r'n(?P<nics>\d+)_m(?P<vhbas>\d+)')


def key(nics: int, vhbas: int) -> str:
    if nics < 0 or vhbas < 0:
        raise ValueError(f'negative count: nics={nics}, vhbas={vhbas}')
    return f'n{nics}_m{vhbas}'


def parse(text: str) -> tuple[int, int]:
    """``'n12_m4'`` -> ``(12, 4)``; ValueError for anything else."""
    match = _KEY.fullmatch(text)
    if match is None:
        raise ValueError(f'not an n{{nics}}_m{{vhbas}} key: {text!r}')
    return int(match['nics']), int(match['vhbas'])


def label(nics: int, vhbas: int) -> str:
    """The table's column title."""
    return f'n={nics} m={vhbas}'
