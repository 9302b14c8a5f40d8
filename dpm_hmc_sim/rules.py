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
# Every status of a partition (HMC WS API book, Partition object, 'status'; the
# same list as dpm_backend.states): what guest_status may set, as a guest or an
# operator outside the Web Services API would.
PARTITION_STATUSES = (
    'communications-not-active',
    'status-check',
    'stopped',
    'terminated',
    'starting',
    'active',
    'stopping',
    'degraded',
    'reservation-error',
    'paused',
)
# Status while the job runs.
TRANSITIONAL = {'start': 'starting', 'stop': 'stopping'}
# A start whose partition boots from a storage volume that the simulated SAN
# does not expose to the partition's WWPNs ends 'paused': a Linux partition whose
# boot fails ends there (ans common.py ~545, ans issue #103).
BOOT_FAILED = 'paused'

# How a job may end, per operation; the first is the default. The status a
# start can end in: 'active'; 'paused' when the boot fails (ans common.py ~545,
# ans issue #103); 'reservation-error' (ans common.py PART_STARTING_END_STATUSES
# ~92). 'job-error': the job itself fails (see JOB_ERROR_*).
OUTCOMES = {
    'start': ('active', 'paused', 'reservation-error', 'job-error'),
    'stop': ('stopped', 'job-error'),
    # Start FCP Storage Discovery (keyed by the storage group's name): it
    # completes, or the job fails (500,263 as below, UNVERIFIED).
    'discover': ('complete', 'job-error'),
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
# Properties Update Partition Properties changes only while the partition runs
# nothing. IBM's module marks each property's "update_while_active" (ans
# zhmc_partition.py ZHMC_PARTITION_PROPERTIES ~965-979): 'ifl-processors' and
# 'initial-memory' may change on an active partition, 'maximum-memory' may not
# (the module stops the partition before changing it: ans zhmc_partition.py
# ~1982-1987, module_utils/common.py process_normal_property). A change of
# these in another status than STOPPED_ONLY_FROM (the statuses the module's
# stop leaves, as for Delete Partition) is refused with 409,1 like the other
# operations on a partition in the wrong status; that reason code is
# UNVERIFIED. The same value as before is not a change and is accepted.
STOPPED_ONLY_PROPERTIES = frozenset({'maximum-memory'})
STOPPED_ONLY_FROM = DELETE_FROM

# --- Request bodies ---------------------------------------------------------------

# A body that is not JSON. The HMC's reason code is UNVERIFIED; the simulator's
# choice is 400, reason 9.
BAD_BODY_REASON = 9

# --- Storage groups (DPM storage management, z14 and later) ---------------------
#
# Sources beyond zc/ans: ``ibm`` = IBM Docs pages of the HMC WS API book (only
# their opening parts were readable, see shared/STORAGE-GROUPS.md for the
# addresses); ``go`` = golang-zhmcclient pkg/zhmcclient (model.go, sgroup.go,
# lpar.go). Most HTTP reason codes of these operations were not readable in any
# source: each is marked UNVERIFIED with the reason for the choice. A backend
# should branch on the HTTP status and treat the reason as a detail.

# First API version with storage groups and the partition properties
# boot-storage-volume / boot-load-parameters: "added in API version 2.23 (HMC
# 2.14.0)" (ans zhmc_partition.py ~869, ~935). That the storage-group URIs
# themselves arrived with the same version is inferred (the boot property
# designates a storage volume), UNVERIFIED.
STORAGE_GROUPS_SINCE = (2, 23)
# Start FCP Storage Discovery and Get Connection Report: "HMC Version >= 2.14.1
# with HMC API version >= 2.37" (zc _storage_group.py discover_fcp,
# get_connection_report).
FCP_DISCOVERY_SINCE = (2, 37)
# An operation this API version does not have: 404, reason 1, as for any URI the
# HMC does not know (zc mock InvalidResourceError). UNVERIFIED for an HMC whose
# API version predates the operation.
UNKNOWN_URI_REASON = 1
# A URI in the request body that designates no object (storage-group-uri,
# boot-storage-volume, adapter-port-uri): 404, reason 2, the code zc's mock gives
# for a body URI that does not exist (mock/_urihandler.py, Add User Role to User).
BODY_URI_NOT_FOUND_REASON = 2

# The CPC lacks the dpm-storage-management feature (a z13, or a CPC in classic
# mode): 409, reason 5, as for Create HBA above. IBM Docs says 409 for a partition
# without the "dpm-fcp-tape-management" feature (ibm Detach Tape Link from
# Partition); the reason is UNVERIFIED.
STORAGE_FEATURE_MISSING_REASON = 5

# Request-body validation (400). Missing required field: reason 5, and a field
# the operation does not take or may not change: reason 6 (zc mock
# check_required_fields / check_writable; READ_ONLY_REASON above). A value that
# is not valid (wrong type, not in the enumeration, malformed WWPN or LUN): reason
# 8, the code IBM's module gives for a name that already exists (ans
# zhmc_adapter.py ~650, imitating the HMC) and zc's mock for an invalid enum value
# (Change Crypto Type). The HMC book distinguishes more codes; UNVERIFIED.
MISSING_FIELD_REASON = 5
UNKNOWN_FIELD_REASON = 6
INVALID_VALUE_REASON = 8
# Storage group names are unique on the HMC (SGs are console-wide: zc
# _storage_group.py module docstring); a duplicate name on Create or Modify:
# 400, reason 8 (IBM's module answers a duplicate adapter name so, ans
# zhmc_adapter.py ~650). That storage groups use the same code is UNVERIFIED.
NAME_NOT_UNIQUE_REASON = 8

STORAGE_GROUP_TYPES = frozenset({'fcp', 'fc', 'nvme'})  # ibm Storage Group object
STORAGE_VOLUME_USAGES = frozenset({'boot', 'data'})  # go model.go StorageVolumeUsage
# Fields of Create Storage Group (ans zhmc_storage_group.py
# ZHMC_STORAGE_GROUP_PROPERTIES ~620-650 "create" column; the e-mail fields and
# storage-volumes are request-only). template-uri is left out: the simulator has
# no storage templates to create from.
SG_CREATE_FIELDS = frozenset({
    'name', 'description', 'cpc-uri', 'type', 'shared', 'connectivity', 'max-partitions',
    'direct-connection-count', 'virtual-machine-count', 'storage-volumes',
    'email-to-addresses', 'email-cc-addresses', 'email-insert',
})  # fmt: skip
# Fields of Modify Storage Group Properties (same table, "update" column).
SG_MODIFY_FIELDS = frozenset({
    'name', 'description', 'shared', 'connectivity', 'max-partitions',
    'direct-connection-count', 'virtual-machine-count', 'storage-volumes',
    'email-to-addresses', 'email-cc-addresses', 'email-insert',
})  # fmt: skip
EMAIL_FIELDS = frozenset({'email-to-addresses', 'email-cc-addresses', 'email-insert'})
# Writable fields of a storage-volume request (ans zhmc_storage_volume.py
# ~319-350; zc _storage_volume.py: create/modify/delete go through Modify Storage
# Group Properties with 'operation' and, for modify/delete, 'element-uri').
SV_WRITABLE_FIELDS = frozenset({'name', 'description', 'size', 'usage'})
SV_OPERATIONS = frozenset({'create', 'modify', 'delete'})

# Defaults of Create Storage Group: 'shared' defaults to true (ibm Storage Group
# object; zc tests/end2end/test_storage_group.py checks it on a real HMC) but
# "must be false ... when the value of the max-partitions property is 1" (ibm),
# so with max-partitions 1 and no 'shared' the simulator stores false rather
# than refusing a request that never said true. fulfillment-state starts
# 'pending' (same end2end test). The defaults of connectivity and max-partitions
# are not in any readable source: 2 paths (the least that is redundant) and, for
# a shared group, 2 partitions. UNVERIFIED.
DEFAULT_CONNECTIVITY = 2
DEFAULT_SHARED_MAX_PARTITIONS = 2

# WWPNs: DPM allocates them to the storage group, shown before any attachment
# as 'unassigned-world-wide-port-names', an array of {world-wide-port-name,
# status} (go model.go WWPN, WWPNStatus; ans zhmc_storage_group.py sample ~554).
# That they exist as soon as Create returns, and that there are connectivity x
# max-partitions of them, is UNVERIFIED (shared/STORAGE-GROUPS.md R1): the
# simulator allocates them synchronously, so a connector is available at once.
# The real sample's vHBA WWPN is c05076d24d80016e (IBM's NPIV prefix c05076);
# simulated ones count up from a per-HMC counter, lower case,
# unique on the HMC, the same sequence after every reset (c05076f0 + 8 hex digits).
WWPN_PREFIX = 'c05076f0'
WWPN_VALIDATED = 'validated'
WWPN_NOT_VALIDATED = 'not-validated'

# Fulfillment states (ibm Storage Group object; go model.go StorageGroupState).
FULFILLMENT_COMPLETE = 'complete'
FULFILLMENT_PENDING = 'pending'

# Delete Storage Group, and Delete Partition, while a storage group is attached:
# IBM's module detaches every partition before deleting a storage group (ans
# zhmc_storage_group.py ~962-976), i.e. the HMC refuses the delete otherwise,
# while its partition module deletes a partition without detaching (ans
# zhmc_partition.py ensure_absent ~2159), which suggests the HMC detaches then.
# The simulator refuses both (the stricter reading: a backend that detaches
# first works on either HMC): 409, reason 100, the code IBM Docs gives for
# deleting a partition link that active partitions are still attached to (ibm
# Delete Partition Link). UNVERIFIED for storage groups.
IN_USE_REASON = 100
# Attach/Detach conflicts: the group is already attached to the partition (zc
# _partition.py attach_storage_group: "must not currently be attached"), is not
# attached (detach_storage_group: "must currently be attached"), belongs to
# another CPC, is not shared and attached elsewhere, or has max-partitions
# attachments. 409 (go lpar.go lists 400, 404, 409), reason 101: UNVERIFIED.
ATTACHMENT_REASON = 101
# Detach Storage Group: IBM's modules disagree whether an active partition may
# be detached (ans zhmc_storage_group.py ~972: 409 only while 'starting' or
# 'stopping'; zhmc_storage_group_attachment.py: "the module will fail" when
# active). The stricter reading: detach only from a partition that runs nothing
# (the statuses Delete Partition accepts), else 409,1 as for the other partition
# operations. Attach is accepted in any non-transitional status: IBM Docs
# describes VSRs created for active partitions (ibm Attach Storage Group).
DETACH_FROM = DELETE_FROM
ATTACH_NOT_IN = UPDATE_NOT_IN
# Boot from a storage volume: boot-device 'storage-volume' and boot-storage-volume
# (ans zhmc_partition.py ~869, ~192-198: only on a z14 or later). The simulator
# also refuses what IBM's sources leave open (shared/STORAGE-GROUPS.md section 3):
# a boot-storage-volume whose storage group is not attached to the partition
# (Update Partition Properties), and a Start whose boot volume is unset, not in
# an attached group, or not fulfilled. 409, reason 102: UNVERIFIED.
BOOT_VOLUME_REASON = 102
# Fulfill FCP Storage Volume with a WWPN/LUN other than the ones the volume was
# fulfilled with before: "Once a FICON storage volume has been fulfilled, the
# storage control unit and unit that has been assigned to it cannot be changed"
# (ibm Fulfill FICON Storage Volume); the FCP counterpart is assumed. 409, reason
# 103: UNVERIFIED. A volume that discovery matched (not fulfilled by this
# operation) may be fulfilled with another path: the operation is authoritative.
FULFILLED_REASON = 103
# The FCP-only operations on a storage group of another type: 404 (ibm Accept
# Mismatched Storage Volumes: 404 if the group's type is not "fcp" or "nvme");
# reason 1 UNVERIFIED.
NOT_FCP_REASON = 1
# Start FCP Storage Discovery while one runs for the group, without
# force-restart: 409, reason 2, "Target object is busy performing another
# operation" (zc _session.py Session.post, the 409 reasons it may retry). IBM
# Docs reads as if a new discovery started then too (ibm Start FCP Storage
# Discovery); the simulator takes the stricter answer. With force-restart the
# running job ends at once with 409,2 in its job status and a new one starts.
BUSY_REASON = 2
# A successful discovery job: job-status-code 200 and job-results null ("contains
# null when this operation is successful" is IBM's wording for the asynchronous
# Delete Partition Link; for discovery UNVERIFIED).
DISCOVERY_OK_STATUS = 200
# Fulfill FCP Storage Volume and Validate LUN Path take WWPNs and LUNs as
# exactly 16 lower-case hexadecimal digits ("The operation requires exactly 16
# characters in lower case", zc _storage_volume.py indicate_fulfillment_fcp,
# _cpc.py validate_lun_path).
HEX16 = r'[0-9a-f]{16}'
# Validate LUN Path: 484 = target WWPN cannot be reached, 485 = target reached,
# LUN not (zc _cpc.py validate_lun_path). The HTTP status is not stated: 409,
# UNVERIFIED.
TARGET_UNREACHABLE_REASON = 484
LUN_UNREACHABLE_REASON = 485
# Virtual storage resource device numbers: "4-digit lower case hexadecimal ...
# unique across ... the partition ... Default value: Auto-generated" (ibm Virtual
# Storage Resource element object). A real one reads '0015' (ans
# zhmc_storage_group.py sample); the simulator allocates from 0x0010 upwards,
# below the 0x8000 range zc's mock gives NICs and HBAs.
VSR_DEVNO_FIRST = 0x0010
# VSR names: the real sample names them 'vhba_' + group name + index (ans
# zhmc_storage_group.py sample: vhba_CPCA_SG_MGMT12 in group CPCA_SG_MGMT1).
VSR_NAME_PREFIX = 'vhba_'
# Update Virtual Storage Resource Properties: name, description, device-number,
# adapter-port-uri are writable (ibm Virtual Storage Resource element object).
VSR_WRITABLE = frozenset({'name', 'description', 'device-number', 'adapter-port-uri'})
