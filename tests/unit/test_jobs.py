"""The job waiter: few checks, little time lost after a job ended, never past the deadline."""

from __future__ import annotations

import itertools

import pytest
import zhmcclient

from dpm_backend import jobs
from dpm_backend.jobs import JobTimeout
from dpm_backend.jobs import JobWaiter


class Clock:
    """A clock that only moves when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class FakeJob:
    """A job that ends ``duration`` seconds after it started, checked like zhmcclient's Job."""

    uri = '/api/jobs/1'

    def __init__(self, clock: Clock, duration: float, fails: bool = False, blips=()) -> None:
        self.clock = clock
        self.ends = clock.now + duration
        self.fails = fails
        self.blips = list(blips)
        self.checks: list[float] = []

    def check_for_completion(self):
        self.checks.append(self.clock.now)
        if self.blips and self.blips[0] <= self.clock.now:
            self.blips.pop(0)
            raise zhmcclient.ConnectionError('blip', None)
        if self.clock.now < self.ends:
            return 'running', None
        if self.fails:
            raise zhmcclient.HTTPError({'http-status': 500, 'reason': 0, 'message': 'failed'})
        return 'complete', {'ok': True}


def waiter(clock: Clock) -> JobWaiter:
    return JobWaiter(0.2, 2.0, clock=lambda: clock.now, sleep=clock.sleep)


def run(w: JobWaiter, clock: Clock, duration: float, until: float = 1000.0) -> FakeJob:
    job = FakeJob(clock, duration)
    assert w.wait(job, 'start', clock.now + until) == {'ok': True}
    return job


def test_a_first_job_is_checked_soon_then_less_often():
    clock = Clock()
    job = run(waiter(clock), clock, 30.0)
    gaps = [b - a for a, b in zip(job.checks, job.checks[1:], strict=False)]
    assert job.checks[0] == pytest.approx(0.2)
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))  # growing...
    # ...up to UNLEARNED_PAUSE while no job of the kind was seen: its end is noticed soon.
    assert max(gaps) == pytest.approx(jobs.UNLEARNED_PAUSE)
    assert clock.now - 30.0 <= jobs.UNLEARNED_PAUSE


def test_jobs_like_the_ones_before_end_within_one_interval_of_their_end():
    clock = Clock()
    w = waiter(clock)
    for _ in range(3):
        run(w, clock, 5.0)
    started = clock.now
    job = run(w, clock, 5.0)
    assert clock.now - started - 5.0 <= 0.2 + 1e-9  # at most one short interval lost
    assert len(job.checks) <= 3  # and no checks while it was surely still running


def test_a_longer_job_than_usual_is_still_seen_to_end():
    clock = Clock()
    w = waiter(clock)
    for _ in range(3):
        run(w, clock, 1.0)
    started = clock.now
    run(w, clock, 20.0)
    assert 20.0 <= clock.now - started <= 22.0


def test_the_wait_never_outlasts_the_callers_time():
    clock = Clock()
    job = FakeJob(clock, 60.0)
    with pytest.raises(JobTimeout):
        waiter(clock).wait(job, 'stop', 7.0)
    assert clock.now == pytest.approx(7.0)


def test_a_failed_job_raises_its_http_error():
    clock = Clock()
    with pytest.raises(zhmcclient.HTTPError):
        waiter(clock).wait(FakeJob(clock, 1.0, fails=True), 'start', 100.0)


def test_a_connection_blip_while_checking_does_not_end_the_wait():
    clock = Clock()
    job = FakeJob(clock, 3.0, blips=[0.1, 0.4])
    assert waiter(clock).wait(job, 'start', 100.0) == {'ok': True}


def test_an_hmc_unreachable_for_several_checks_in_a_row_is_reported_at_once():
    clock = Clock()
    job = FakeJob(clock, 60.0, blips=[i * 0.1 for i in range(200)])
    with pytest.raises(zhmcclient.ConnectionError):
        waiter(clock).wait(job, 'start', 500.0)
    assert len(job.checks) == 3 and clock.now < 2.0


def test_a_job_the_hmc_forgot_has_ended_and_leaves_the_verdict_to_the_status():
    class Forgotten(FakeJob):
        def check_for_completion(self):
            raise zhmcclient.HTTPError({'http-status': 404, 'reason': 1, 'message': 'no job'})

    clock = Clock()
    assert waiter(clock).wait(Forgotten(clock, 1.0), 'start', 100.0) is None


def test_every_wait_is_reported_with_its_kind_and_seconds_however_it_ends():
    clock = Clock()
    reported: list[tuple[str, float]] = []
    w = JobWaiter(
        0.2, 2.0, clock=lambda: clock.now, sleep=clock.sleep, on_wait=lambda *a: reported.append(a)
    )
    run(w, clock, 3.0)
    with pytest.raises(JobTimeout):
        w.wait(FakeJob(clock, 60.0), 'stop', clock.now + 7.0)
    with pytest.raises(zhmcclient.HTTPError):
        w.wait(FakeJob(clock, 1.0, fails=True), 'discover-fcp', clock.now + 100.0)
    assert [kind for kind, _ in reported] == ['start', 'stop', 'discover-fcp']
    assert reported[0][1] == pytest.approx(3.0, abs=jobs.UNLEARNED_PAUSE)
    assert reported[1][1] == pytest.approx(7.0)
    assert 1.0 <= reported[2][1] <= 1.0 + jobs.UNLEARNED_PAUSE
