"""Asynchronous HMC jobs: their records, and a clock that ends them on time.

A real HMC runs Start/Stop Partition and Start FCP Storage Discovery as jobs
that end whether or not anyone asks (zc mock/_urihandler.py runs them inside the
request instead, and asserts ``wait_for_completion``). A job here is a record with a due time; the
:class:`JobClock` thread calls back when the earliest one is due, and the
Simulator also ends due jobs before every request, so results never depend on
the thread's timing.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

JOBS_URI = '/api/jobs/'


@dataclasses.dataclass
class Job:
    """One job: what it does, when it ends, and how it ended."""

    job_id: str
    operation: str  # 'start', 'stop' or 'discover'
    target_uri: str  # the partition, or the storage group of a discovery
    outcome: str  # what the job will do (rules.OUTCOMES)
    prior_status: str  # the partition's status before the request ('' for a discovery)
    due: float  # monotonic time the job ends
    session_id: str = ''  # the API session that started it: its job topic hears the end
    status: str = 'running'
    status_code: int | None = None
    reason_code: int | None = None
    results: dict[str, Any] | None = None

    @property
    def uri(self) -> str:
        return JOBS_URI + self.job_id

    def complete(self, status_code: int, reason_code: int | None, results: dict | None) -> None:
        self.status = 'complete'
        self.status_code = status_code
        self.reason_code = reason_code
        self.results = results

    def query_status(self) -> dict[str, Any]:
        """The body of Query Job Status, as zc _session.py Job.query_status reads it."""
        body: dict[str, Any] = {'status': self.status}
        if self.status == 'complete':
            body['job-status-code'] = self.status_code
            body['job-reason-code'] = self.reason_code
            body['job-results'] = self.results
        return body

    def dump(self) -> dict[str, Any]:
        return {
            'job-uri': self.uri,
            'operation': self.operation,
            'target-uri': self.target_uri,
            'outcome': self.outcome,
            **self.query_status(),
        }


class JobBook:
    """The jobs the HMC knows, by id. Not thread-safe: used under the Simulator's lock."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def add(
        self,
        operation: str,
        target_uri: str,
        outcome: str,
        prior: str,
        due: float,
        session_id: str = '',
    ) -> Job:
        job = Job(uuid.uuid4().hex, operation, target_uri, outcome, prior, due, session_id)
        self._jobs[job.job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        del self._jobs[job_id]

    def due(self, now: float) -> list[Job]:
        """Running jobs whose time has come, earliest first."""
        ready = [job for job in self._jobs.values() if job.status == 'running' and job.due <= now]
        return sorted(ready, key=lambda job: job.due)

    def clear(self) -> None:
        self._jobs.clear()

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))


class JobClock:
    """One daemon thread that calls ``on_due`` at each scheduled time (or soon after)."""

    def __init__(self, on_due: Callable[[], None]) -> None:
        self._on_due = on_due
        self._times: list[float] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def schedule(self, at: float) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._times, at)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='hmc-sim-jobs', daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._times or self._times[0] > time.monotonic()):
                    timeout = self._times[0] - time.monotonic() if self._times else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                now = time.monotonic()
                while self._times and self._times[0] <= now:
                    heapq.heappop(self._times)
            # Outside the condition: on_due takes the Simulator's lock.
            self._on_due()
