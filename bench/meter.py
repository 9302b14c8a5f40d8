"""Counting HMC requests: by kind and URI class, at the HMC and at the session seam.

The bench counts what reached the HMC: the simulator records every request
with its status (``RequestRecord``), including what zhmcclient does on its
own below the backend (logons, a retried GET, a re-logon after an expired
session). ``Meter`` counts the same requests one level up, at the backend's
session seam (a ``SessionPool`` interceptor; it works unchanged in front of a
real HMC, where no simulator records anything). The bench compares the two
for every measured operation: a difference means a request the backend did
not ask for reached the HMC (or the other way round).
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

_ID = re.compile(r'^[0-9a-fA-F][0-9a-fA-F-]{7,}$|^\d+$')

# Request classes that are not work an operation asked for.
POLLING = 'polling'  # job status checks and the deletion of the ended job
SESSION = 'session'  # logon, logoff, API version
WORK = 'work'


def uri_class(method: str, uri: str) -> str:
    """``GET /api/partitions/{id}?properties``: ids replaced, query keys kept."""
    path, _, query = uri.partition('?')
    parts = ['{id}' if _ID.match(part) else part for part in path.split('/')]
    keys = sorted({item.split('=', 1)[0] for item in query.split('&') if item})
    return f'{method} {"/".join(parts)}' + (f'?{",".join(keys)}' if keys else '')


def kind_of(method: str, uri: str) -> str:
    """``polling``, ``session`` or ``work`` (what the operation asked for)."""
    path, _, query = uri.partition('?')
    if path.startswith('/api/jobs/'):
        return POLLING
    # zhmcclient's own wait after a job reads the partition status (wait_for_status).
    if method == 'GET' and path.startswith('/api/partitions/') and query == 'properties=status':
        return POLLING
    if path.startswith('/api/sessions') or path == '/api/version':
        return SESSION
    return WORK


class Meter:
    """Counts the HMC requests passing the backend's session seam."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str]] = []

    def __call__(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        with self._lock:
            self._requests.append((method, uri))
        return proceed()

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._requests)

    def take(self) -> Counts:
        """The requests since the last reset, counted; then reset."""
        with self._lock:
            requests, self._requests = self._requests, []
        return Counts(requests)


class Counts:
    """Requests of one measured span, by kind and URI class."""

    def __init__(self, requests: Iterable[tuple[str, str]], rejected: int = 0) -> None:
        requests = list(requests)
        self.by_class = collections.Counter(uri_class(m, u) for m, u in requests)
        self.by_kind = collections.Counter(kind_of(m, u) for m, u in requests)
        self.rejected = rejected

    @classmethod
    def of_records(cls, records) -> Counts:
        """Counts of simulator RequestRecords; status >= 400 (or 0, dropped) is rejected."""
        records = list(records)
        refused = sum(1 for r in records if r.status >= 400 or r.status == 0)
        return cls(((r.method, r.uri) for r in records), refused)

    @property
    def work(self) -> int:
        """Requests besides polling and session handling."""
        return self.by_kind[WORK]

    @property
    def polling(self) -> int:
        return self.by_kind[POLLING]

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def as_dict(self) -> dict:
        return {
            'work': self.work,
            'polling': self.polling,
            'session': self.by_kind[SESSION],
            'rejected': self.rejected,
            'by_class': dict(sorted(self.by_class.items())),
        }
