"""What a real HMC does, on every version here, that zhmcclient's mock does not.

Each fact names its source (``zc`` = python-zhmcclient 1.26.0, ``ans`` =
zhmc-ansible-modules at 852c3f7); where no source gave the exact answer, the
choice is marked UNVERIFIED with the reason for it.
"""

from __future__ import annotations

# --- Start / Stop Partition -------------------------------------------------

# Start is accepted from 'stopped' and from 'reservation-error': IBM's module
# starts such a partition directly (ans plugins/module_utils/common.py
# start_partition ~534). 'paused' and 'terminated' must be stopped first
# (python-zhmcclient #228, ans #642).
START_FROM = frozenset({'stopped', 'reservation-error'})
# Stop is accepted from the statuses IBM's module stops (ans common.py
# stop_partition ~406). Stop of 'reservation-error' is refused with 409,1 (ans
# issue #474, quoted below).
STOP_FROM = frozenset({'active', 'degraded', 'paused', 'terminated'})
# Delete Partition: 'stopped', and 'reservation-error', which IBM's module deletes
# without a stop (ans zhmc_partition.py ensure_absent ~2160 after stop_partition
# returns on it, the fix of ans issue #474). zc's mock accepts 'stopped' only.
DELETE_FROM = frozenset({'stopped', 'reservation-error'})
# The HMC's answer to any of these in another status, e.g. a partition that is
# 'starting' or 'stopping': 409, reason 1 with this text (ans issues #474, #29).
INVALID_STATE_REASON = 1
INVALID_STATE_MESSAGE = 'The partition is not in a valid state to perform the operation'
# Status while the job runs.
TRANSITIONAL = {'start': 'starting', 'stop': 'stopping'}

# How a job may end, per operation; the first is the default. The status a
# start can end in: 'active'; 'paused' when the boot fails (ans common.py ~545,
# ans issue #103); 'reservation-error' (ans common.py PART_STARTING_END_STATUSES
# ~92). 'job-error': the job itself fails (see JOB_ERROR_*).
OUTCOMES = {
    'start': ('active', 'paused', 'reservation-error', 'job-error'),
    'stop': ('stopped', 'job-error'),
}
JOB_ERROR = 'job-error'
# A job that completes in error: zhmcclient raises HTTPError from its
# job-status-code, job-reason-code and job-results['message'] (zc _session.py
# Job.check_for_completion). The codes of a failed Start/Stop Partition job are
# UNVERIFIED; the simulator uses 500,263 as zc's mock does for a failed Activate /
# Deactivate of an LPAR (mock/_urihandler.py LparActivateHandler), the classic-mode
# counterpart. The partition is left in the status it had before the request.
JOB_ERROR_STATUS = 500
JOB_ERROR_REASON = 263
# A successful Start/Stop job: zhmcclient returns job-results, documented as "an
# empty dict" (zc _partition.py Partition.start).
JOB_OK_STATUS = 200

# --- Jobs (Query Job Status, Delete Completed Job Status) --------------------

# Deleting a job that has not ended: 409, reason 40; an unknown job: 404, reason
# 1 (zc _session.py Job.delete docstring).
JOB_NOT_ENDED_REASON = 40
UNKNOWN_REASON = 1

# --- Sessions -----------------------------------------------------------------

# Logon refused (wrong userid or password): 403, reason 0; zhmcclient raises
# ServerAuthError for any 403 other than reasons 1, 4 and 5 (zc _session.py
# Session.post ~1439-1458). The exact reason a real HMC gives is UNVERIFIED.
LOGON_REFUSED_REASON = 0
# No X-API-Session header: 403, reason 4; a session id the HMC does not know
# (expired, logged off): 403, reason 5. zhmcclient logs on again after either
# (zc _session.py Session.get ~1157-1176).
NO_SESSION_REASON = 4
BAD_SESSION_REASON = 5

# --- HBAs on CPCs with DPM storage management ----------------------------------

# "HBA objects no longer exist" with dpm-storage-management (zc design note
# dpm-storage-model.rst; zc _hba.py). The HMC's status for Create HBA there is
# UNVERIFIED (shared STORAGE-GROUPS.md section 1). The simulator answers 409 with
# reason 5, the code zc's mock gives an operation the CPC's mode does not allow
# (CpcNotInDpmError): a conflict with the CPC's configuration that no retry
# resolves (zhmcclient retries only 409 reasons 1 and 2 when asked to).
STORAGE_MANAGEMENT_FEATURE = 'dpm-storage-management'
HBA_REFUSED_STATUS = 409
HBA_REFUSED_REASON = 5

# --- Read-only properties --------------------------------------------------------

# Properties Update Partition Properties refuses: those ans zhmc_partition.py
# ZHMC_PARTITION_PROPERTIES marks as not updatable (the "read-only properties"
# block ~1074-1153, plus 'type' (create-only) and 'crypto-configuration' (changed
# through the crypto operations)), which follows the IBM data model.
PARTITION_READ_ONLY = frozenset({
    'object-uri', 'object-id', 'parent', 'class', 'type', 'status',
    'has-unacceptable-status', 'is-locked', 'os-name', 'os-type', 'os-version',
    'degraded-adapters', 'current-ifl-processing-weight', 'current-cp-processing-weight',
    'reserved-memory', 'auto-start', 'secure-execution', 'boot-iso-image-name',
    'threads-per-processor', 'virtual-function-uris', 'nic-uris', 'hba-uris',
    'storage-group-uris', 'tape-link-uris', 'partition-link-uris',
    'available-features-list', 'crypto-configuration',
})  # fmt: skip
# Properties Update NIC Properties refuses: the "read-only properties" of ans
# zhmc_nic.py ZHMC_NIC_PROPERTIES (~376-383) and 'type' (create-only, ~343).
NIC_READ_ONLY = frozenset({
    'element-uri', 'element-id', 'parent', 'class', 'type', 'partition-link-uri',
})  # fmt: skip
# The answer: 400, reason 6, as zc's mock gives for a property that cannot be
# written (mock/_urihandler.py check_writable). That this is the HMC's reason code
# is UNVERIFIED (the common request-body codes are in the HMC WS API book).
READ_ONLY_REASON = 6
# Update Partition Properties waits for 'starting'/'stopping' to end in IBM's
# module ("This is required for updating properties": ans common.py
# wait_for_transition_completion): the HMC refuses it then, 409,1.
UPDATE_NOT_IN = frozenset({'starting', 'stopping'})

# --- Request bodies ---------------------------------------------------------------

# A body that is not JSON. The HMC's reason code is UNVERIFIED; the simulator's
# choice is 400, reason 9.
BAD_BODY_REASON = 9
