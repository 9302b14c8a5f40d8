"""The measuring layer at zhmcclient's session boundary.

``Meter`` is a ``SessionPool`` interceptor: every HMC request of the backend
(GET, POST, DELETE, logon, job and status polling) passes through it. It
counts requests by method and URI class and can add a fixed latency to each
one, plus an extra delay to job-based operations (partition start and stop).
It sits outside the mock's lock, so delayed requests overlap as they would on
a real HMC; it works unchanged in front of a real HMC.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable
from typing import Any

_ID = re.compile(r'^[0-9a-fA-F][0-9a-fA-F-]{7,}$|^\d+$')
_JOB_OPERATIONS = re.compile(r'^/api/partitions/[^/]+/operations/(start|stop)$')

# Request classes that are not work of an operation.
POLLING = 'polling'
SESSION = 'session'


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
    # After a job, zhmcclient waits for the partition status (wait_for_status).
    if method == 'GET' and path.startswith('/api/partitions/') and query == 'properties=status':
        return POLLING
    if path.startswith('/api/sessions') or path == '/api/version':
        return SESSION
    return 'work'


class Meter:
    """Counts HMC requests; optionally delays each one."""

    def __init__(self, latency: float = 0.0, job_delay: float = 0.0) -> None:
        self.latency = latency
        self.job_delay = job_delay
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str]] = []

    def __call__(self, method: str, uri: str, proceed: Callable[[], Any]) -> Any:
        with self._lock:
            self._requests.append((method, uri))
        delay = self.latency
        if method == 'POST' and _JOB_OPERATIONS.match(uri.partition('?')[0]):
            delay += self.job_delay
        if delay:
            time.sleep(delay)
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

    def __init__(self, requests: list[tuple[str, str]]) -> None:
        self.by_class = collections.Counter(uri_class(m, u) for m, u in requests)
        self.by_kind = collections.Counter(kind_of(m, u) for m, u in requests)

    @property
    def work(self) -> int:
        """Requests besides polling and session handling."""
        return self.by_kind['work']

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
            'by_class': dict(sorted(self.by_class.items())),
        }
