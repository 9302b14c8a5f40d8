"""Waiting for asynchronous HMC jobs (Start and Stop Partition) without wasting time.

An HMC answers Start/Stop Partition with ``202`` and a job URI; the operation
is done when the job is (``GET /api/jobs/{id}``). zhmcclient's own
``Job.wait_for_completion`` sleeps 10 s between checks (zc ``_session.py``,
raised from 1 s in python-zhmcclient PR #1033 "to release stress on the
HMC"), so a 1 s start took 10 s. This waiter starts the job with
``wait_for_completion=False`` and checks it on its own schedule
(zc ``examples/async_operation_polling.py``):

- it learns how long each kind of job takes on this HMC (the median of the
  last few) and sleeps until the next one is due, then checks every
  ``interval`` until it is done, then less and less often up to
  ``max_interval``: few checks, and little time lost after the job ended;
- a job of a kind it has not seen yet is checked after ``interval``, then
  with pauses growing to ``UNLEARNED_PAUSE``;
- it never sleeps past the time the caller can give (``until``).

``Job.check_for_completion`` deletes a finished job and raises ``HTTPError``
for a job that failed. A job the HMC no longer knows (``404, reason 1``:
deleted after a reply that was lost, or forgotten by a restarted HMC) has
ended: the partition's status tells how. A check that cannot reach the HMC
is repeated a few times (the job goes on meanwhile), then reported.
"""

from __future__ import annotations

import collections
import logging
import statistics
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import zhmcclient

if TYPE_CHECKING:
    from dpm_backend.notifications import Completions

LOG = logging.getLogger(__name__)

# Durations remembered per kind of job.
HISTORY = 5
# Each pause after the expected end is this much longer than the one before.
BACKOFF = 1.5
# The longest pause while no job of a kind has been seen yet: the first start
# after the backend starts ends at most this long before it is noticed.
UNLEARNED_PAUSE = 0.5
# Checks in a row that may fail to reach the HMC before the wait gives up.
UNREACHABLE_CHECKS = 3
# HTTP status and reason of a job the HMC does not know (zc Job.query_status).
JOB_GONE = (404, 1)


class JobTimeout(Exception):
    """The job was still running when the caller's time ran out."""


class JobWaiter:
    """Waits for HMC jobs on a schedule learnt from the jobs before them."""

    def __init__(
        self,
        interval: float,
        max_interval: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        on_wait: Callable[[str, float], object] | None = None,
    ) -> None:
        self.interval = interval
        # Told the kind and seconds of every wait, however it ended.
        self._on_wait = on_wait
        self.max_interval = max(max_interval, interval)
        self._halted = threading.Event()
        # The clock and sleep of every wait (tests replace them); halt() ends
        # every sleep at once.
        self.now = clock
        self.sleep = sleep or self._halted.wait
        self._lock = threading.Lock()
        self._durations: dict[str, collections.deque[float]] = {}
        # Job-completion notifications (notifications.Completions) while they flow.
        self.completions: Completions | None = None

    def halt(self) -> None:
        """End every pause now and skip those to come: the backend is stopping.

        The check that follows a pause is refused below the session
        (``SessionPool.halt``), so every wait ends at once.
        """
        self._halted.set()
        completions = self.completions
        if completions is not None:
            completions.halt()

    def expected(self, kind: str) -> float | None:
        """Seconds a job of this kind usually takes here, or None if none was seen."""
        with self._lock:
            seen = self._durations.get(kind)
            return statistics.median(seen) if seen else None

    def _record(self, kind: str, seconds: float) -> None:
        with self._lock:
            self._durations.setdefault(kind, collections.deque(maxlen=HISTORY)).append(seconds)

    def pauses(self, kind: str):
        """The pauses between checks: until the expected end, then growing."""
        expected = self.expected(kind)
        elapsed = 0.0
        if expected is not None and expected > self.interval:
            first = expected - self.interval / 2
            yield first
            elapsed = first
            # Around the expected end, check at the short interval.
            while elapsed < expected + 2 * self.interval:
                yield self.interval
                elapsed += self.interval
        # Until this HMC's jobs of this kind have been seen, the end may come
        # at any time: never check less often than every UNLEARNED_PAUSE.
        longest = (
            self.max_interval if expected is not None else min(UNLEARNED_PAUSE, self.max_interval)
        )
        pause = self.interval
        while True:
            yield pause
            pause = min(pause * BACKOFF, longest)

    def _notified_pauses(self, job: zhmcclient.Job, kind: str):
        """Every max_interval while the job's topic is heard; once it is not, as without."""
        while True:
            completions = self.completions
            if completions is None or not completions.heard(job):
                yield from self.pauses(kind)
                return
            yield self.max_interval

    def wait(self, job: zhmcclient.Job, kind: str, until: float) -> dict | None:
        """The job's result once it ended (None if the HMC forgot it); HTTPError if it failed.

        ``until`` is a time of ``clock``; past it, JobTimeout (the job goes on
        on the HMC: a retry of the operation finds its outcome).
        """
        started = self.now()
        completions = self.completions
        notified = completions.expect(job) if completions is not None else None
        try:
            return self._wait(job, kind, until, started, notified)
        finally:
            if notified is not None and completions is not None:
                completions.forget(job)
            if self._on_wait is not None:
                self._on_wait(kind, self.now() - started)

    def _wait(
        self,
        job: zhmcclient.Job,
        kind: str,
        until: float,
        started: float,
        notified: threading.Event | None,
    ) -> dict | None:
        last_pause = 0.0
        unreachable = 0
        # With a job-completion notification to come, the job is checked when it
        # comes; the checks every max_interval only cover a lost one.
        pauses = self.pauses(kind) if notified is None else self._notified_pauses(job, kind)
        for pause in pauses:
            now = self.now()
            if now >= until:
                raise JobTimeout(f'{kind} job {job.uri} still running')
            wait = max(min(pause, until - now), 0)
            if notified is None:
                self.sleep(wait)
                last_pause = pause
            elif self._halted.is_set() or notified.wait(wait):
                # Told the moment it ended (or halted): check now, once.
                notified.clear()
                last_pause = 0.0
            else:
                last_pause = pause
            try:
                status, result = job.check_for_completion()
            except zhmcclient.ConnectionError as exc:
                unreachable += 1
                LOG.info('Checking %s job %s: %s', kind, job.uri, type(exc).__name__)
                if unreachable >= UNREACHABLE_CHECKS:
                    raise
                continue
            except zhmcclient.HTTPError as exc:
                if (exc.http_status, exc.reason) == JOB_GONE:
                    LOG.info('The HMC no longer knows %s job %s', kind, job.uri)
                    return None
                raise
            unreachable = 0
            if status == 'complete':
                # The job ended somewhere within the last pause: count its middle.
                self._record(kind, max(self.now() - started - last_pause / 2, 0.0))
                return result
        raise AssertionError('unreachable')  # pragma: no cover
