"""Start/Stop Partition: asynchronous jobs that end on their own, with selectable outcomes."""

from __future__ import annotations

import time

import pytest
import zhmcclient
from sim.simtest import ACTIVE_PARTITION
from sim.simtest import STOPPED_PARTITION
from sim.simtest import connect
from sim.simtest import partition
from sim.simtest import rejected
from sim.simtest import wait_complete


def status(part: zhmcclient.Partition) -> str:
    part.pull_full_properties()  # one GET: properties= is 400,1 on HMC 2.15
    return part.properties['status']


def test_start_is_a_job_that_ends_active_after_start_seconds(hmc):
    part = partition(connect(hmc), STOPPED_PARTITION)
    begin = time.monotonic()
    job = part.start(wait_for_completion=False)
    assert isinstance(job, zhmcclient.Job)
    assert job.uri.startswith('/api/jobs/')
    assert status(part) == 'starting'
    assert job.query_status() == ('running', None, None, None)
    assert job.check_for_completion() == ('running', None)
    assert wait_complete(job) == ('complete', {})
    assert time.monotonic() - begin >= 0.2
    assert status(part) == 'active'
    # check_for_completion deleted the finished job.
    with pytest.raises(zhmcclient.HTTPError) as gone:
        job.query_status()
    assert (gone.value.http_status, gone.value.reason) == (404, 1)


def test_stop_is_a_job_too(hmc):
    part = partition(connect(hmc), ACTIVE_PARTITION)
    job = part.stop(wait_for_completion=False)
    assert status(part) == 'stopping'
    assert wait_complete(job)[0] == 'complete'
    assert status(part) == 'stopped'
    assert rejected(hmc) == []


def test_a_job_ends_while_nobody_polls(hmc):
    part = partition(connect(hmc), STOPPED_PARTITION)
    job = part.start(wait_for_completion=False)
    time.sleep(0.5)
    # No request since: the simulator's own clock ended the job.
    with hmc.sim.lock:
        assert hmc.sim.hmc.lookup_by_uri(part.uri).properties['status'] == 'active'
    (listed,) = hmc.sim.dump()['jobs']
    assert listed['job-uri'] == job.uri
    assert (listed['status'], listed['job-status-code']) == ('complete', 200)


def test_a_running_job_cannot_be_deleted(hmc):
    part = partition(connect(hmc), STOPPED_PARTITION)
    job = part.start(wait_for_completion=False)
    with pytest.raises(zhmcclient.HTTPError) as running:
        job.delete()
    assert (running.value.http_status, running.value.reason) == (409, 40)
    wait_complete(job)
    with pytest.raises(zhmcclient.HTTPError) as unknown:
        job.delete()
    assert (unknown.value.http_status, unknown.value.reason) == (404, 1)


def test_start_or_stop_during_a_transition_is_409_1(hmc):
    part = partition(connect(hmc), STOPPED_PARTITION)
    part.start(wait_for_completion=False)
    for operation in (part.start, part.stop):
        with pytest.raises(zhmcclient.HTTPError) as busy:
            operation(wait_for_completion=False)
        assert (busy.value.http_status, busy.value.reason) == (409, 1)
    # Nor can it be updated or deleted while starting.
    with pytest.raises(zhmcclient.HTTPError) as update:
        part.update_properties({'description': 'changed'})
    assert (update.value.http_status, update.value.reason) == (409, 1)


def test_start_of_an_active_partition_is_409_1(hmc):
    with pytest.raises(zhmcclient.HTTPError) as refused:
        partition(connect(hmc), ACTIVE_PARTITION).start(wait_for_completion=False)
    assert (refused.value.http_status, refused.value.reason) == (409, 1)
    assert refused.value.message == 'The partition is not in a valid state to perform the operation'


@pytest.mark.parametrize('outcome', ['paused', 'reservation-error'])
def test_a_start_can_end_paused_or_in_reservation_error(hmc, outcome):
    hmc.sim.set_outcome(STOPPED_PARTITION, 'start', outcome)
    part = partition(connect(hmc), STOPPED_PARTITION)
    assert wait_complete(part.start(wait_for_completion=False)) == ('complete', {})
    assert status(part) == outcome


def test_a_start_job_can_fail(hmc):
    hmc.sim.set_outcome(STOPPED_PARTITION, 'start', 'job-error')
    part = partition(connect(hmc), STOPPED_PARTITION)
    job = part.start(wait_for_completion=False)
    assert status(part) == 'starting'
    with pytest.raises(zhmcclient.HTTPError) as failed:
        wait_complete(job)
    assert (failed.value.http_status, failed.value.reason) == (500, 263)
    assert 'failed' in failed.value.message
    assert status(part) == 'stopped'


def test_a_stop_job_can_fail(hmc):
    hmc.sim.set_outcome(ACTIVE_PARTITION, 'stop', 'job-error')
    part = partition(connect(hmc), ACTIVE_PARTITION)
    with pytest.raises(zhmcclient.HTTPError):
        wait_complete(part.stop(wait_for_completion=False))
    assert status(part) == 'active'


def test_stop_of_a_partition_in_reservation_error_is_409_1_and_start_or_delete_work(hmc):
    hmc.sim.set_outcome(STOPPED_PARTITION, 'start', 'reservation-error')
    part = partition(connect(hmc), STOPPED_PARTITION)
    wait_complete(part.start(wait_for_completion=False))
    with pytest.raises(zhmcclient.HTTPError) as refused:
        part.stop(wait_for_completion=False)
    assert (refused.value.http_status, refused.value.reason) == (409, 1)
    hmc.sim.set_outcome(STOPPED_PARTITION, 'start', 'active')
    wait_complete(part.start(wait_for_completion=False))
    assert status(part) == 'active'
    wait_complete(part.stop(wait_for_completion=False))
    hmc.sim.set_outcome(STOPPED_PARTITION, 'start', 'reservation-error')
    wait_complete(part.start(wait_for_completion=False))
    part.delete()


def test_job_durations_change_at_run_time(hmc):
    hmc.sim.configure(start_seconds=0)
    part = partition(connect(hmc), STOPPED_PARTITION)
    job = part.start(wait_for_completion=False)
    assert job.check_for_completion() == ('complete', {})
    assert status(part) == 'active'


def test_an_unknown_outcome_is_refused(hmc):
    with pytest.raises(ValueError, match='no outcome'):
        hmc.sim.set_outcome(STOPPED_PARTITION, 'stop', 'paused')
