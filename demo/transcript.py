"""What the demo prints of each driver call: in full, or one line per call.

The backend logs every HMC request (``[hmc] log_requests``) as ``HMC <method>
<uri> -> <outcome> (<n> ms)``. Against the simulator each takes a few
milliseconds, so request times are left out; a call's own time is shown where
it is long enough to mean something (HMC jobs: Start/Stop Partition, FCP
discovery). Object ids are shortened to their last characters and query
strings URL-decoded, so that a request fits on a line.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

# 'HMC GET /api/cpcs/<id>/partitions -> ok (2 ms)', as dpm_backend.hmc.log_request writes it.
REQUEST_LINE = re.compile(
    r'HMC (?P<method>[A-Z]+) (?P<uri>\S+) -> (?P<outcome>.+?)(?: \(\d+ ms\))?'
)
# UUIDs (their dashes backslash-escaped inside name filters) and 32-digit job ids.
OBJECT_ID = re.compile(r'\b[0-9a-f]{8}(?:\\?-[0-9a-f]{4}){3}\\?-[0-9a-f]{12}\b|\b[0-9a-f]{32}\b')
ID_TAIL = 8
# A call's time is shown from this many seconds on; shorter ones are gRPC and simulator noise.
SHOWN_SECONDS = 0.1


@dataclasses.dataclass(frozen=True)
class Request:
    """One HMC request the backend logged."""

    method: str
    uri: str
    outcome: str

    @classmethod
    def parse(cls, line: str) -> Request | None:
        match = REQUEST_LINE.fullmatch(line)
        if match is None:
            return None
        return cls(match['method'], match['uri'], match['outcome'])

    def __str__(self) -> str:
        return f'{self.method} {short_uri(self.uri)} -> {self.outcome}'

    @property
    def collections(self) -> tuple[str, ...]:
        """The URI's collections (``/api/cpcs/<id>/partitions``: cpcs, partitions)."""
        segments = self.uri.partition('?')[0].removeprefix('/api/').split('/')
        if segments[0] == 'services':  # /api/services/aggregation/submit: no object
            return ('services',)
        if 'operations' in segments:
            segments = segments[: segments.index('operations')]
        return tuple(segments[::2])


def short_uri(uri: str) -> str:
    """``uri`` with its query URL-decoded and each object id cut to its last characters."""
    path, mark, query = uri.partition('?')
    return OBJECT_ID.sub(lambda m: '…' + m[0][-ID_TAIL:], path + mark + unquote(query))


@dataclasses.dataclass(frozen=True)
class Call:
    """One driver call and the HMC requests it caused."""

    name: str
    requests: list[Request]


class Transcript:
    """Prints driver calls either in full (``full=True``) or one line each.

    ``requests`` collects the HMC requests logged since it was last called.
    """

    def __init__(self, requests: Callable[[], list[Request]], *, full: bool) -> None:
        self._requests = requests
        self.full = full
        self.calls: list[Call] = []
        self._notes: list[str] | None = None  # a list while a call runs

    def call(
        self,
        name: str,
        run: Callable[[], Any],
        *,
        what: str = '',
        show: Callable[[Any], Any] | None = None,
        brief: Callable[[Any], str] | None = None,
    ) -> Any:
        """Run one driver call and print it.

        In full: ``name (what)``, the result as ``show`` makes it, and each HMC
        request. One line: the name, the number of HMC requests, the time, and
        ``brief`` of the result.
        """
        self._notes = []
        started = time.monotonic()
        try:
            result = run()
        finally:
            seconds = time.monotonic() - started
            notes, self._notes = self._notes or [], None
        requests = self._requests()
        shown = brief(result) if brief else None
        self.calls.append(Call(name, requests))
        if self.full:
            print((f'\n== {name} ({what})' if what else f'\n== {name}') + _seconds(seconds))
            for text in notes:
                print(f'   {text}')
            if show is not None:
                print(f'   -> {show(result)}')
            elif shown is not None:
                print(f'   -> {shown}')
            for request in requests:
                print(f'   | {request}')
        else:
            count = f'{len(requests):3d} HMC request{"" if len(requests) == 1 else "s"}'
            line = f'   {name:<28}{count:<18}{_seconds(seconds).strip():<8}'
            print((line + (f'-> {shown}' if shown is not None else '')).rstrip())
        return result

    def note(self, text: str) -> None:
        """A remark printed in full only, after the heading of the call that made it."""
        if self._notes is not None:
            self._notes.append(text)
        elif self.full:
            print(f'   {text}')

    def heading(self, text: str) -> None:
        """A heading printed in full only (a new server, a data volume)."""
        if self.full:
            print(f'\n-- {text}')

    def requests(self) -> list[Request]:
        return [request for call in self.calls for request in call.requests]

    def totals(self, host: str) -> str:
        """One line: calls, HMC requests, those not answered ok, the collections touched."""
        requests = self.requests()
        failed = sum(1 for request in requests if request.outcome != 'ok')
        touched = list(dict.fromkeys(c for r in requests for c in r.collections))
        return (
            f'{host}: {len(self.calls)} calls, {len(requests)} HMC requests '
            f'({f"{failed} not ok" if failed else "all ok"}) on {", ".join(touched)}'
        )


def explain_cmdline(value: str) -> str:
    """One line on what the tokens of a kernel command line (dpm_backend/cmdline.py) say."""
    nics = []
    for token in value.replace(' ', '').split(';'):
        fields = token.split(',')
        if len(fields) == 3 and len(fields[2]) == 12:
            mac = ':'.join(fields[2][i : i + 2] for i in range(0, 12, 2))
            nics.append(f'{fields[0]} on port {fields[1]} with MAC {mac}')
    return (
        "one '<device number>,<adapter port>,<MAC>;' per NIC, from which the guest tools set "
        f'up qeth device {" and ".join(nics)} (DPM cannot set a MAC)'
    )


def _seconds(seconds: float) -> str:
    return f'   {seconds:.1f} s' if seconds >= SHOWN_SECONDS else ''
