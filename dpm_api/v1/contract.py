"""Values of the DPMHost v1 contract that dpm_host.proto can state only in comments.

Hand-written, unlike the ``*_pb2*`` modules beside it: ``make check-generated``
compares only what grpc_tools.protoc writes, so this module is never taken for
a stale stub, and tests/unit/test_contract.py checks that the proto's comments
state these same values. Both halves import it from here (one wheel ships
dpm_api with dpm_backend and dpm_frontend): the backend refuses a request that
breaks it, the frontend refuses the server before anything is sent.
"""

from __future__ import annotations

import re

# Nic.vif_type: the only VIF type a DPM partition can attach (networking-dpm's).
DPM_VSWITCH = 'dpm_vswitch'

# SpawnRequest.nics: at most this many. Each NIC is one token in the partition's
# kernel command line (boot-os-specific-parameters, 256 characters): 12 fit, 13 do not.
MAX_NICS = 12

# An HMC object id (Nic.vswitch_object_id; also the CPC and adapter ids of the
# backend's configuration): a UUID in lower case. Unanchored: use fullmatch.
OBJECT_ID_PATTERN = r'[a-f0-9]{8}-(?:[a-f0-9]{4}-){3}[a-f0-9]{12}'
OBJECT_ID = re.compile(OBJECT_ID_PATTERN)

# Call metadata naming the caller's request (OpenStack's X-OpenStack-Request-ID
# header): Nova's request id, ``req-`` and a lower-case UUID, nothing else. The
# backend logs it on every line of the call (it makes one up when none is
# sent) and returns it in the trailing metadata of every reply and in the
# ErrorInfo metadata "request_id" of every error. Unanchored: use fullmatch.
REQUEST_ID_METADATA_KEY = 'x-openstack-request-id'
REQUEST_ID_PATTERN = f'req-{OBJECT_ID_PATTERN}'
REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
