"""Job waits that end on the HMC's job-completion notification, with polling as the fallback."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from dpm_backend.jobs import JobWaiter
from dpm_backend.notifications import Completions


class TimedJob:
    """A job that ends ``duration`` seconds from now (real time), checked like zhmcclient's."""

    def __init__(self, duration: float, uri: str = '/api/jobs/7', topic: str = 'jobs-a') -> None:
        self.uri = uri
        self.ends = time.monotonic() + duration
        self.session = SimpleNamespace(job_topic=topic)
        self.checks: list[float] = []

    def check_for_completion(self):
        self.checks.append(time.monotonic())
        if time.monotonic() < self.ends:
            return 'running', None
        return 'complete', {'ok': True}


def waiter(live_topics=('jobs-a',), max_interval: float = 2.0) -> tuple[JobWaiter, Completions]:
    completions = Completions(lambda topic: topic in live_topics)
    w = JobWaiter(0.01, max_interval)
    w.completions = completions
    return w, completions


def notify_at(completions: Completions, job: TimedJob) -> None:
    def publish():
        time.sleep(max(job.ends - time.monotonic(), 0))
        completions.complete(job.uri)

    threading.Thread(target=publish, daemon=True).start()


def test_the_wait_ends_at_the_notification_with_one_check():
    w, completions = waiter()
    job = TimedJob(0.5)
    notify_at(completions, job)
    started = time.monotonic()
    assert w.wait(job, 'start', started + 10) == {'ok': True}
    assert len(job.checks) == 1
    # Woken by the notification, not by a pause (the pauses are 2 s).
    assert job.checks[0] - job.ends < 0.1


def test_a_completion_notified_before_the_wait_began_is_not_missed():
    w, completions = waiter()
    job = TimedJob(0.0)
    completions.complete(job.uri)
    started = time.monotonic()
    assert w.wait(job, 'start', started + 10) == {'ok': True}
    assert len(job.checks) == 1 and time.monotonic() - started < 0.1


def test_a_lost_notification_is_covered_by_a_check_every_max_interval():
    w, _ = waiter(max_interval=0.2)
    job = TimedJob(0.3)
    assert w.wait(job, 'start', time.monotonic() + 10) == {'ok': True}
    assert 1 <= len(job.checks) <= 3


def test_a_job_of_a_topic_not_heard_is_polled_as_without_notifications():
    w, completions = waiter(live_topics=())
    job = TimedJob(0.3, topic='jobs-b')
    assert completions.expect(job) is None
    assert w.wait(job, 'start', time.monotonic() + 10) == {'ok': True}
    # The unlearned schedule: checks from 0.01 s growing to 0.5 s.
    assert len(job.checks) > 2


class Halted(Exception):
    pass


def test_halt_ends_a_wait_for_a_notification_at_once():
    w, _ = waiter(max_interval=30)
    job = TimedJob(60)
    check = job.check_for_completion

    def refused_once_halted():
        # As the session pool refuses every request once the backend halts.
        if w._halted.is_set():
            raise Halted()
        return check()

    job.check_for_completion = refused_once_halted
    threading.Timer(0.2, w.halt).start()
    started = time.monotonic()
    with pytest.raises(Halted):
        w.wait(job, 'start', started + 20)
    assert time.monotonic() - started < 1.0


def test_a_wait_goes_back_to_polling_when_notifications_are_lost():
    live = {'jobs-a'}
    completions = Completions(lambda topic: topic in live)
    w = JobWaiter(0.01, 30)
    w.completions = completions
    job = TimedJob(0.5)

    def lose():
        live.clear()
        completions.halt()  # as the stream does when it loses the connection

    threading.Timer(0.1, lose).start()
    started = time.monotonic()
    assert w.wait(job, 'start', started + 20) == {'ok': True}
    # Polled to its end, not left to the 30 s pause of a notified wait.
    assert time.monotonic() - started < 1.2
    assert len(job.checks) >= 2
