"""HMC partition status -> Nova power state, as carried by the DPMHost API.

Every status of the HMC API's partition object has an entry: an unknown one
is logged and reported as CRASHED, never silently as "no state".
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

POWER_STATES: dict[str, int] = {
    ACTIVE: pb.POWER_STATE_RUNNING,
    DEGRADED: pb.POWER_STATE_RUNNING,
    STOPPED: pb.POWER_STATE_SHUTDOWN,
    TERMINATED: pb.POWER_STATE_SHUTDOWN,
    # An in-guest "shutdown -P" leaves a partition paused.
    PAUSED: pb.POWER_STATE_SHUTDOWN,
    # Transitional: no honest steady state can be given yet.
    STARTING: pb.POWER_STATE_UNSPECIFIED,
    STOPPING: pb.POWER_STATE_UNSPECIFIED,
    RESERVATION_ERROR: pb.POWER_STATE_CRASHED,
    STATUS_CHECK: pb.POWER_STATE_CRASHED,
    COMMUNICATIONS_NOT_ACTIVE: pb.POWER_STATE_CRASHED,
}

# Statuses from which "Start Partition" works.
STARTABLE = frozenset({STOPPED})
# Statuses that must be stopped before a start (paused cannot be started).
STOP_BEFORE_START = frozenset({PAUSED, TERMINATED})
# Statuses from which "Stop Partition" works and is needed.
STOPPABLE = frozenset({ACTIVE, DEGRADED, PAUSED, TERMINATED, RESERVATION_ERROR})
# Statuses in which the partition does not run.
NOT_RUNNING = frozenset({STOPPED, TERMINATED, PAUSED})
TRANSITIONAL = frozenset({STARTING, STOPPING})
RUNNING = frozenset({ACTIVE, DEGRADED})


def power_state(status: str) -> int:
    """The DPMHost PowerState for an HMC partition status."""
    try:
        state = POWER_STATES[status]
    except KeyError:
        LOG.warning('Unknown partition status %r reported as crashed', status)
        return pb.POWER_STATE_CRASHED
    if status == DEGRADED:
        LOG.warning('Partition status is degraded; reporting it as running')
    return state
