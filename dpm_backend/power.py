"""Starting and stopping a partition as a real HMC allows it.

- Start/Stop Partition are jobs; :class:`~dpm_backend.jobs.JobWaiter` waits
  for them, then one List Partitions (by exact name; its default properties
  include ``status`` on every HMC version) reads where the partition ended.
- ``reservation-error`` is treated as stopped: the HMC refuses Stop there
  (``409, reason 1``, zhmc-ansible-modules issue #474) and IBM's own module
  starts or deletes such a partition directly (zhmc-ansible-modules
  ``module_utils/common.py`` ``ensure_active``/``ensure_stopped``).
- ``paused`` and ``terminated`` must be stopped before a start
  (python-zhmcclient issue #228).
- A start that ends ``paused`` (the boot failed, zhmc-ansible-modules issue
  #103) or in ``reservation-error`` fails at once, naming the status, instead
  of waiting for ``active`` until the deadline.
"""

from __future__ import annotations

import logging

import zhmcclient

from dpm_backend import errors
from dpm_backend import naming
from dpm_backend import states
from dpm_backend.call import Call
from dpm_backend.jobs import JobTimeout

LOG = logging.getLogger(__name__)


def read_status(call: Call, partition: zhmcclient.Partition) -> str:
    """The partition's status now (one List Partitions by its exact name)."""
    name = partition.properties.get('name') or partition.name
    cpc = partition.manager.cpc
    for listed in call.dialect.list_partitions(cpc, naming.partition_list_filter(name, True)):
        if listed.uri == partition.uri:
            status = listed.properties.get('status', '')
            partition.update_properties_local({'status': status})
            return status
    raise zhmcclient.CeasedExistence(partition.uri)


def wait_for_steady(call: Call, partition: zhmcclient.Partition, until: float | None = None) -> str:
    """The partition's status once it is no longer starting or stopping."""
    status = partition.properties.get('status', '')
    if status not in states.TRANSITIONAL:
        return status
    until = call.deadline.end if until is None else until
    action = f'wait for partition {partition.name} to finish {status}'
    for pause in call.jobs.pauses(status):
        left = until - call.jobs.now()
        if left <= 0:
            raise errors.hmc_timeout(action)
        call.jobs.sleep(min(pause, left))
        status = read_status(call, partition)
        if status not in states.TRANSITIONAL:
            return status
    raise AssertionError('unreachable')  # pragma: no cover


def _run(call: Call, partition: zhmcclient.Partition, operation: str, until: float) -> str:
    """Run Start or Stop Partition as a job; the status it left, once steady."""
    action = f'{operation} partition {partition.name}'
    if call.jobs.now() >= until:
        raise errors.hmc_timeout(action)
    # A start is not undone once begun: begin it only while the caller waits
    # and has the time this HMC's starts take (caller told DEADLINE_EXCEEDED,
    # partition up after all, is what this prevents).
    needs = (call.jobs.expected(operation) or 0.0) if operation == 'start' else 0.0
    call.deadline.check(action, needs)
    job = getattr(partition, operation)(wait_for_completion=False)
    try:
        call.jobs.wait(job, operation, until)
    except JobTimeout:
        raise errors.hmc_timeout(action) from None
    except zhmcclient.HTTPError:
        # The job failed; record where it left the partition, then report it.
        read_status(call, partition)
        raise
    read_status(call, partition)
    return wait_for_steady(call, partition, until)


def stop(call: Call, partition: zhmcclient.Partition, until: float | None = None) -> None:
    """Stop the partition (it is running, paused or terminated)."""
    status = _run(call, partition, 'stop', call.deadline.end if until is None else until)
    if status not in states.NOT_STARTED:
        raise errors.partition_not_stopped(partition.name, status)


def start(call: Call, partition: zhmcclient.Partition, until: float | None = None) -> None:
    """Start the partition (it is stopped or in reservation-error)."""
    status = _run(call, partition, 'start', call.deadline.end if until is None else until)
    if status not in states.RUNNING:
        LOG.warning('Partition %s did not start: it is %s', partition.name, status)
        raise errors.partition_not_started(partition.name, status)


def ensure_stopped(call: Call, partition: zhmcclient.Partition) -> None:
    """Stopped (or in reservation-error, which holds nothing); Stop only if needed."""
    if wait_for_steady(call, partition) not in states.NOT_STARTED:
        stop(call, partition)


def ensure_started(call: Call, partition: zhmcclient.Partition) -> None:
    """Running; a paused or terminated partition is stopped first."""
    status = wait_for_steady(call, partition)
    if status in states.RUNNING:
        return
    if status not in states.NOT_STARTED:
        stop(call, partition)
    start(call, partition)
