"""Names and descriptions of the HMC objects OpenStack creates.

These strings are a contract: networking-dpm's agent parses NIC descriptions,
operators and the guest tools read the rest, and ownership of a partition is
decided by its name alone. Keep them byte-identical to the original nova-dpm.
"""

from __future__ import annotations

import re

PARTITION_PREFIX = 'OpenStack-'
OPENSTACK_PORT_PREFIX = 'OpenStack_Port_'
# HMC object names are at most 64 characters; the instance uuid takes 36.
MAX_PARTITION_NAME_LENGTH = 64
MAX_HOST_LENGTH = MAX_PARTITION_NAME_LENGTH - len(PARTITION_PREFIX) - 1 - 36
_HOST_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*')
_CANONICAL_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')

VIRTUAL_SWITCH_URI = '/api/virtual-switches/{object_id}'
ADAPTER_URI = '/api/adapters/{object_id}'
STORAGE_PORT_URI = '/api/adapters/{object_id}/storage-ports/{port}'


def host_name_error(host: str) -> str | None:
    """Why ``host`` cannot name a CPC subset, or None if it can."""
    if not 0 < len(host) <= MAX_HOST_LENGTH:
        return f'must be 1 to {MAX_HOST_LENGTH} characters (HMC names are at most 64)'
    if not _HOST_NAME.fullmatch(host):
        return 'may hold only letters, digits, ".", "_" and "-", starting with a letter or digit'
    return None


def is_canonical_uuid(value: str) -> bool:
    """True for a lower-case, hyphenated UUID as Nova and Neutron write them."""
    return bool(_CANONICAL_UUID.fullmatch(value))


def partition_name_prefix(host: str) -> str:
    return f'{PARTITION_PREFIX}{host}-'


def partition_name(host: str, instance_uuid: str) -> str:
    return f'{partition_name_prefix(host)}{instance_uuid}'


def instance_uuid_of(host: str, name: str) -> str | None:
    """The instance uuid if ``name`` is exactly a partition of ``host``, else None.

    Exact: ``OpenStack-cpc1-<uuid>`` belongs to ``cpc1`` but
    ``OpenStack-cpc1-a-<uuid>`` does not, nor does any other name.
    """
    prefix = partition_name_prefix(host)
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    return rest if is_canonical_uuid(rest) else None


def partition_description(host: str) -> str:
    return f'OpenStack CPCSubset={host}'


def nic_name(port_id: str) -> str:
    return f'{OPENSTACK_PORT_PREFIX}{port_id}'


def nic_description(host: str, mac: str) -> str:
    return f'OpenStack mac={mac}, CPCSubset={host}'


def hba_name(adapter_object_id: str, port: int) -> str:
    return f'{OPENSTACK_PORT_PREFIX}{adapter_object_id}_{port}'


def hba_description(host: str) -> str:
    """The vHBA description, byte-identical to the original's ``"OpenStack CPCSubset= " + host``.

    Unlike the partition's, it has a space after ``=`` (nova-dpm ``vm.py``).
    Nothing reads it back: vHBAs are found by name within their partition.
    """
    return f'OpenStack CPCSubset= {host}'


def virtual_switch_uri(object_id: str) -> str:
    return VIRTUAL_SWITCH_URI.format(object_id=object_id)


def storage_port_uri(adapter_object_id: str, port: int) -> str:
    return STORAGE_PORT_URI.format(object_id=adapter_object_id, port=port)


def partition_list_filter(name_or_prefix: str, exact: bool) -> str:
    """An HMC ``name`` filter matching the literal text (or text + anything).

    The HMC matches a name filter as a regular expression against the whole
    name (case-insensitively), so the text is escaped; callers still compare
    names exactly.
    """
    return re.escape(name_or_prefix) + ('' if exact else '.*')
