"""HMC partition status -> Nova power state, as carried by the DPMHost API.

Every status of the HMC API's partition object has an entry: an unknown one
is logged and reported as CRASHED, never silently as "no state".

``status-check`` ("status unknown: communication issue between SE and CPC")
and ``communications-not-active`` ("the HMC is not communicating with the
SE") say nothing about the guest (IBM Docs, partition data model). Nova stops
an ACTIVE instance its driver reports as CRASHED or SHUTDOWN (nova
``compute/manager.py`` ``_sync_instance_power_state``) and only logs one with
no state, so both are reported without a state: a passing SE communication
loss must not stop a healthy guest. The original nova-dpm mapped
``status-check`` the same way. ``reservation-error`` means the partition's
resources could not be reserved and nothing runs: it is reported as shut down.
"""

from __future__ import annotations

import logging

from dpm_api.v1 import dpm_host_pb2 as pb

LOG = logging.getLogger(__name__)

ACTIVE = 'active'
STOPPED = 'stopped'
TERMINATED = 'terminated'
PAUSED = 'paused'
STARTING = 'starting'
STOPPING = 'stopping'
DEGRADED = 'degraded'
RESERVATION_ERROR = 'reservation-error'
STATUS_CHECK = 'status-check'
COMMUNICATIONS_NOT_ACTIVE = 'communications-not-active'

POWER_STATES: dict[str, pb.PowerState] = {
    ACTIVE: pb.POWER_STATE_RUNNING,
    DEGRADED: pb.POWER_STATE_RUNNING,
    STOPPED: pb.POWER_STATE_SHUTDOWN,
    TERMINATED: pb.POWER_STATE_SHUTDOWN,
    # An in-guest "shutdown -P" leaves a partition paused.
    PAUSED: pb.POWER_STATE_SHUTDOWN,
    # Nothing was reserved, nothing runs.
    RESERVATION_ERROR: pb.POWER_STATE_SHUTDOWN,
    # Transitional: no honest steady state can be given yet.
    STARTING: pb.POWER_STATE_UNSPECIFIED,
    STOPPING: pb.POWER_STATE_UNSPECIFIED,
    # The SE or HMC lost touch: the guest's state is unknown, not crashed.
    STATUS_CHECK: pb.POWER_STATE_UNSPECIFIED,
    COMMUNICATIONS_NOT_ACTIVE: pb.POWER_STATE_UNSPECIFIED,
}

# Statuses in which nothing runs and Start works directly (Stop is never sent:
# the HMC refuses it for reservation-error).
NOT_STARTED = frozenset({STOPPED, RESERVATION_ERROR})
# Statuses that must be stopped before a start (paused cannot be started).
STOP_BEFORE_START = frozenset({PAUSED, TERMINATED})
TRANSITIONAL = frozenset({STARTING, STOPPING})
RUNNING = frozenset({ACTIVE, DEGRADED})
# The HMC cannot tell: the SE or the CPC is out of touch.
UNKNOWN = frozenset({STATUS_CHECK, COMMUNICATIONS_NOT_ACTIVE})


def power_state(status: str) -> pb.PowerState:
    """The DPMHost PowerState for an HMC partition status."""
    try:
        state = POWER_STATES[status]
    except KeyError:
        LOG.warning('Unknown partition status %r reported as crashed', status)
        return pb.POWER_STATE_CRASHED
    if status == DEGRADED:
        LOG.warning('Partition status is degraded; reporting it as running')
    elif status in UNKNOWN:
        LOG.warning('Partition status is %s; its power state is unknown', status)
    return state
