"""The state of a FakedHmc as an HMC definition dict that zhmcclient can load again.

The format is zhmcclient's (``Client.to_hmc_dict()``, schema in zc
mock/_session.py FAKED_HMC_DEFINITION_SCHEMA). Two things make a naive dump
unloadable, and are handled here:

- zhmcclient's loader *appends* a child's URI to some list properties of its
  parent when it adds the child (ports -> the adapter's ``*-port-uris``, NICs /
  HBAs / virtual functions -> the partition's ``*-uris``, zc mock/_hmc.py); the
  dump leaves those lists out, or they would list every child twice;
- a NIC names its virtual switch, which must exist when the NIC is added: virtual
  switches come before partitions.
"""

from __future__ import annotations

import copy
from typing import Any

# Child collections per faked class, in an order the loader can replay; each
# name is both the FakedXxx attribute and the definition key.
CHILDREN: dict[str, tuple[str, ...]] = {
    'FakedConsole': (
        'users', 'user_roles', 'user_patterns', 'password_rules', 'tasks',
        'ldap_server_definitions', 'unmanaged_cpcs', 'storage_groups',
    ),
    'FakedCpc': (
        'adapters', 'virtual_switches', 'capacity_groups', 'partitions', 'lpars',
        'reset_activation_profiles', 'image_activation_profiles',
        'load_activation_profiles',
    ),
    'FakedAdapter': ('ports',),
    'FakedPartition': ('nics', 'hbas', 'virtual_functions'),
    'FakedStorageGroup': ('storage_volumes', 'virtual_storage_resources'),
}  # fmt: skip

# Properties the loader rebuilds from the children (see the module docstring).
REBUILT: dict[str, frozenset[str]] = {
    'FakedAdapter': frozenset({'network-port-uris', 'storage-port-uris'}),
    'FakedPartition': frozenset({'nic-uris', 'hba-uris', 'virtual-function-uris'}),
    'FakedStorageGroup': frozenset({'storage-volume-uris', 'virtual-storage-resource-uris'}),
}


def dump_resource(resource: Any) -> dict[str, Any]:
    """One faked resource with its children, as a definition entry."""
    kind = type(resource).__name__
    rebuilt = REBUILT.get(kind, frozenset())
    entry: dict[str, Any] = {
        'properties': {
            name: copy.deepcopy(value)
            for name, value in resource.properties.items()
            if name not in rebuilt
        }
    }
    for key in CHILDREN.get(kind, ()):
        manager = getattr(resource, key, None)
        children = manager.list() if manager is not None else []
        if children:
            entry[key] = [dump_resource(child) for child in children]
    return entry


def dump_hmc(hmc: Any, host: str, api_version: str) -> dict[str, Any]:
    """The whole FakedHmc in the format of ``FakedSession.from_hmc_dict``."""
    definition: dict[str, Any] = {
        'host': host,
        'api_version': api_version,
        'consoles': [dump_resource(console) for console in hmc.consoles.list()],
    }
    cpcs = [dump_resource(cpc) for cpc in hmc.cpcs.list()]
    if cpcs:
        definition['cpcs'] = cpcs
    return {'hmc_definition': definition}
