"""DPM storage management: storage groups, storage volumes, virtual storage resources.

zhmcclient 1.26's mock has the objects (FakedStorageGroup, ...) and handlers for
listing, getting and a Create/Modify/Delete without the HMC's checks; it has no
attach, detach, discovery, fulfillment or WWPNs (shared/STORAGE-GROUPS.md
section 7). The simulator serves every storage-group operation that changes
state itself, here, on the FakedHmc's objects, and leaves the reads to the
mock. The facts and the choices (with their sources) are in rules.py.

What the HMC shows is kept in the objects' properties. What it knows but does
not show is kept in :class:`StorageState`: the LUN each volume was matched to
or fulfilled with (and the host port of a fulfillment), the last connection
report, the running discoveries, the WWPN counter, and the simulated SAN
(fabric.py). Every function runs under the Simulator's lock.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from zhmcclient.mock._urihandler import CpcNotInDpmError
from zhmcclient.mock._urihandler import check_valid_cpc_status

from dpm_hmc_sim import rules
from dpm_hmc_sim.errors import HmcError
from dpm_hmc_sim.errors import not_found
from dpm_hmc_sim.fabric import Fabric
from dpm_hmc_sim.jobs import Job
from dpm_hmc_sim.operations import storage_management_enabled

ApiVersion = tuple[int, int]
HEX16 = re.compile(rules.HEX16)
DEVNO = re.compile(r'[0-9a-f]{4}')
# Discovery without a listed LUN in an open fabric: volumes are matched to LUNs
# of this made-up target (a storage port WWPN of the 50:05:07:68 IBM range).
OPEN_TARGET = '500507680b00ff01'
VOLUME_UUID_PREFIX = '6005076'  # NAA-6, IBM (the real sample's uuid starts so)


@dataclasses.dataclass
class Binding:
    """The LUN a storage volume is fulfilled with: by discovery, or pinned by Fulfill."""

    target: str
    lun: str
    pinned: bool = False
    host_port: str | None = None  # the adapter port Fulfill FCP named for boot

    def dump(self) -> dict[str, Any]:
        return {
            'target-world-wide-port-name': self.target,
            'logical-unit-number': self.lun,
            'fulfilled-by-operation': self.pinned,
            'adapter-port-uri': self.host_port,
        }


class StorageState:
    """What the simulated HMC knows about storage beyond the objects' properties."""

    def __init__(self, fabric: Fabric | None = None) -> None:
        self.fabric = fabric or Fabric()
        self.clear()

    def clear(self) -> None:
        """Forget everything but the fabric (reset)."""
        self.wwpn_counter = 0
        self.volume_counter = 0
        self.bindings: dict[str, Binding] = {}  # storage volume URI -> LUN
        self.reports: dict[str, dict[str, Any]] = {}  # storage group URI -> report
        self.discoveries: dict[str, Job] = {}  # storage group URI -> running job

    def dump(self) -> dict[str, Any]:
        return {
            'fabric': self.fabric.to_dict(),
            'volume-luns': {uri: b.dump() for uri, b in sorted(self.bindings.items())},
            'running-discoveries': sorted(self.discoveries),
        }

    def next_wwpn(self, hmc: Any) -> str:
        """A WWPN no storage group of this HMC has (rules.WWPN_PREFIX)."""
        used = set(all_wwpns(hmc))
        while True:
            self.wwpn_counter += 1
            wwpn = f'{rules.WWPN_PREFIX}{self.wwpn_counter:08x}'
            if wwpn not in used:
                return wwpn

    def next_volume_uuid(self) -> str:
        self.volume_counter += 1
        return f'{VOLUME_UUID_PREFIX}{self.volume_counter:025x}'


# --- lookups and checks -----------------------------------------------------------


def require_api(api: ApiVersion, since: ApiVersion, uri: str) -> None:
    if api < since:
        raise HmcError(
            404, rules.UNKNOWN_URI_REASON, f'No such operation in this HMC API version: {uri}'
        )


def storage_cpc(cpc: Any, method: str, uri: str) -> Any:
    """The CPC, if it is in DPM mode, usable, and has DPM storage management."""
    if not cpc.dpm_enabled:
        raise CpcNotInDpmError(method, uri, cpc)
    check_valid_cpc_status(method, uri, cpc)
    if not storage_management_enabled(cpc):
        raise HmcError(
            409,
            rules.STORAGE_FEATURE_MISSING_REASON,
            f'CPC {cpc.name} does not have the {rules.STORAGE_MANAGEMENT_FEATURE} '
            'firmware feature enabled',
        )
    return cpc


def lookup(hmc: Any, resource_uri: str, uri: str) -> Any:
    try:
        return hmc.lookup_by_uri(resource_uri)
    except KeyError:
        raise not_found(uri) from None


def body_object(hmc: Any, value: Any, field: str, kind: str) -> Any:
    """The object a URI field of the body designates (404,2 if none of that class)."""
    if not isinstance(value, str):
        raise invalid(f'{field} must be a URI string, not {value!r}')
    try:
        found = hmc.lookup_by_uri(value)
    except KeyError:
        found = None
    if found is None or found.properties.get('class') != kind:
        raise HmcError(
            404, rules.BODY_URI_NOT_FOUND_REASON, f'{field} does not designate a {kind}: {value}'
        )
    return found


def invalid(message: str) -> HmcError:
    return HmcError(400, rules.INVALID_VALUE_REASON, message)


def check_body(
    body: Any, allowed: Iterable[str], required: Iterable[str] = (), what: str = 'request body'
) -> dict[str, Any]:
    """The body as a dict: 400,5 for a missing required field, 400,6 for an unknown one."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise invalid(f'The {what} must be a JSON object')
    allowed = frozenset(allowed)
    for name in required:
        if name not in body:
            raise HmcError(
                400, rules.MISSING_FIELD_REASON, f'Missing required field in {what}: {name}'
            )
    for name in body:
        if name not in allowed:
            raise HmcError(
                400, rules.UNKNOWN_FIELD_REASON, f'Field {name!r} is not valid in the {what}'
            )
    return dict(body)


def check_int(body: Mapping[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if name in body and (
        isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
    ):
        raise invalid(f'{name} must be an integer from {low} to {high}, not {value!r}')


def check_bool(body: Mapping[str, Any], name: str) -> None:
    if name in body and not isinstance(body[name], bool):
        raise invalid(f'{name} must be true or false, not {body[name]!r}')


def check_string(body: Mapping[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if name in body and (not isinstance(value, str) or not low <= len(value) <= high):
        raise invalid(f'{name} must be a string of {low} to {high} characters, not {value!r}')


def check_hex16(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not HEX16.fullmatch(value):
        raise invalid(f'{name} must be 16 lower-case hexadecimal digits, not {value!r}')
    return value


def fcp_ports(cpc: Any) -> list[str]:
    """The storage ports of the CPC's online FCP adapters, by adapter ID and port index."""
    adapters = [
        adapter
        for adapter in cpc.adapters.list()
        if adapter.properties.get('type') == 'fcp'
        and adapter.properties.get('state', 'online') == 'online'
    ]
    adapters.sort(key=lambda a: str(a.properties.get('adapter-id', a.name)))
    return [
        port.uri
        for adapter in adapters
        for port in sorted(adapter.ports.list(), key=lambda p: p.properties.get('index', 0))
    ]


def fcp_port(hmc: Any, cpc: Any, value: Any, field: str = 'adapter-port-uri') -> str:
    """A storage port URI of an FCP adapter of this CPC (404,2 / 400,8 otherwise)."""
    port = body_object(hmc, value, field, 'storage-port')
    if port.uri not in fcp_ports(cpc):
        raise invalid(f'{field} is not a port of an online FCP adapter of CPC {cpc.name}')
    return port.uri


def group_cpc(hmc: Any, group: Any) -> Any:
    return hmc.lookup_by_uri(group.properties['cpc-uri'])


def attached_partitions(hmc: Any, group: Any) -> list[Any]:
    try:
        cpc = group_cpc(hmc, group)
    except KeyError:
        return []
    return [
        partition
        for partition in cpc.partitions.list()
        if group.uri in (partition.properties.get('storage-group-uris') or ())
    ]


def all_wwpns(hmc: Any) -> Iterable[str]:
    for group in hmc.consoles.console.storage_groups.list():
        yield from group_wwpns(group)


def group_wwpns(group: Any) -> list[str]:
    """Every WWPN of the group: unassigned ones and those of its VSRs."""
    wwpns = [
        entry['world-wide-port-name']
        for entry in group.properties.get('unassigned-world-wide-port-names') or ()
    ]
    wwpns += [
        vsr.properties['world-wide-port-name']
        for vsr in group.virtual_storage_resources.list()
        if vsr.properties.get('world-wide-port-name')
    ]
    return wwpns


def is_fcp(group: Any) -> bool:
    return group.properties.get('type') == 'fcp'


def require_fcp(group: Any, uri: str) -> None:
    if not is_fcp(group):
        raise HmcError(
            404, rules.NOT_FCP_REASON, f'Storage group {group.name} is not of type fcp: {uri}'
        )


# --- Create / Modify / Delete Storage Group ------------------------------------------


def check_name(hmc: Any, name: Any, own: Any = None) -> None:
    check_string({'name': name}, 'name', 1, 64)
    for group in hmc.consoles.console.storage_groups.list():
        if group.name == name and group is not own:
            raise HmcError(
                400,
                rules.NAME_NOT_UNIQUE_REASON,
                f'A storage group with the name {name!r} already exists on the HMC',
            )


def check_group_fields(body: Mapping[str, Any]) -> None:
    check_string(body, 'description', 0, 1024)
    check_bool(body, 'shared')
    check_int(body, 'connectivity', 1, 64)
    check_int(body, 'max-partitions', 1, 64)
    check_int(body, 'direct-connection-count', 0, 1000)
    check_int(body, 'virtual-machine-count', 0, 1000)


def check_sharing(group_type: str, shared: bool, max_partitions: int | None) -> None:
    """shared must be false for type nvme and for max-partitions 1 (ibm Storage Group object)."""
    if shared and (group_type == 'nvme' or max_partitions == 1):
        raise invalid("shared must be false when type is 'nvme' or max-partitions is 1")


def create_group(hmc: Any, state: StorageState, body: Any, method: str, uri: str) -> dict[str, Any]:
    """Create Storage Group: the group, its WWPNs and its initial volumes."""
    body = check_body(body, rules.SG_CREATE_FIELDS, ('name', 'cpc-uri', 'type'))
    cpc = body_object(hmc, body['cpc-uri'], 'cpc-uri', 'cpc')
    storage_cpc(cpc, method, uri)
    check_name(hmc, body['name'])
    group_type = body['type']
    if group_type not in rules.STORAGE_GROUP_TYPES:
        raise invalid(f'type must be one of {sorted(rules.STORAGE_GROUP_TYPES)}')
    check_group_fields(body)
    max_partitions = body.get('max-partitions')
    shared = body.get('shared', max_partitions != 1 and group_type != 'nvme')
    check_sharing(group_type, shared, max_partitions)
    requests = body.get('storage-volumes') or []
    if not isinstance(requests, list):
        raise invalid('storage-volumes must be an array')
    for request in requests:
        check_volume_create(request, group_type, create_only=True)

    properties = {
        key: value
        for key, value in body.items()
        if key not in rules.EMAIL_FIELDS and key != 'storage-volumes'
    }
    properties.update(
        {
            'object-id': str(uuid.uuid4()),  # a UUID, as on an HMC (zc's mock counts from 1)
            'shared': shared,
            'description': body.get('description', ''),
            'fulfillment-state': rules.FULFILLMENT_PENDING,
            'direct-connection-count': body.get('direct-connection-count', 0),
        }
    )
    if group_type == 'fcp':
        connectivity = body.get('connectivity', rules.DEFAULT_CONNECTIVITY)
        if max_partitions is None:
            max_partitions = rules.DEFAULT_SHARED_MAX_PARTITIONS if shared else 1
        properties.update(
            {
                'connectivity': connectivity,
                'max-partitions': max_partitions,
                'active-connectivity': connectivity,
                'active-max-partitions': max_partitions,
                'candidate-adapter-port-uris': [],
                'unassigned-world-wide-port-names': [],
            }
        )
    group = hmc.consoles.console.storage_groups.add(properties)
    if group_type == 'fcp':
        resize_wwpn_pool(hmc, state, group)
    created = [add_volume(state, group, request).uri for request in requests]
    update_fulfillment(group)
    return {'object-uri': group.uri, 'element-uris': created}


def resize_wwpn_pool(hmc: Any, state: StorageState, group: Any) -> None:
    """connectivity x max-partitions WWPNs (rules.py), new ones not yet validated.

    A smaller pool gives back unassigned WWPNs, newest first; the WWPNs of
    attached partitions' VSRs stay.
    """
    wanted = group.properties['connectivity'] * group.properties['max-partitions']
    pool = group.properties['unassigned-world-wide-port-names']
    in_use = len(group.virtual_storage_resources.list())
    while in_use + len(pool) < wanted:
        pool.append(
            {
                'world-wide-port-name': state.next_wwpn(hmc),
                'status': rules.WWPN_NOT_VALIDATED,
            }
        )
    while pool and in_use + len(pool) > wanted:
        pool.pop()


def modify_group(
    hmc: Any, state: StorageState, group: Any, body: Any, method: str, uri: str
) -> dict[str, Any]:
    """Modify Storage Group Properties, storage-volume requests included (all or nothing)."""
    body = check_body(body, rules.SG_MODIFY_FIELDS)
    storage_cpc(group_cpc(hmc, group), method, uri)
    if 'name' in body:
        check_name(hmc, body['name'], group)
    check_group_fields(body)
    group_type = group.properties.get('type')
    shared = body.get('shared', group.properties.get('shared'))
    max_partitions = body.get('max-partitions', group.properties.get('max-partitions'))
    check_sharing(group_type, shared, max_partitions)
    attached = attached_partitions(hmc, group)
    if not shared and len(attached) > 1:
        raise HmcError(
            409, rules.ATTACHMENT_REASON, 'shared cannot be false: attached to several partitions'
        )
    requests = body.get('storage-volumes') or []
    if not isinstance(requests, list):
        raise invalid('storage-volumes must be an array')
    for request in requests:
        check_volume_request(hmc, group, request, group_type)
    targets = [r['element-uri'] for r in requests if r.get('operation') != 'create']
    if len(targets) != len(set(targets)):
        raise invalid('A storage volume may appear only once in storage-volumes')

    simple = {
        key: value
        for key, value in body.items()
        if key not in rules.EMAIL_FIELDS and key != 'storage-volumes'
    }
    group.properties.update(simple)
    if is_fcp(group) and ({'connectivity', 'max-partitions'} & simple.keys()):
        # "requires fulfillment action ... fulfillment-state ... 'pending'" (ibm Modify
        # Storage Group Properties); discovery makes the active values match again.
        resize_wwpn_pool(hmc, state, group)
    created = []
    for request in requests:
        operation = request['operation']
        if operation == 'create':
            created.append(add_volume(state, group, request).uri)
        elif operation == 'modify':
            modify_volume(hmc, state, group, request)
        else:
            remove_volume(state, group, hmc.lookup_by_uri(request['element-uri']))
    refresh_paths(hmc, state, group)
    update_fulfillment(group)
    return {'element-uris': created}


def delete_group(
    hmc: Any, state: StorageState, group: Any, body: Any, method: str, uri: str
) -> None:
    """Delete Storage Group with its volumes; refused while attached or discovering."""
    check_body(body, rules.EMAIL_FIELDS)
    partitions = attached_partitions(hmc, group)
    if partitions:
        names = ', '.join(sorted(p.name for p in partitions))
        raise HmcError(
            409,
            rules.IN_USE_REASON,
            f'Storage group {group.name} is attached to partitions: {names}',
        )
    if group.uri in state.discoveries:
        raise busy(group)
    for volume in group.storage_volumes.list():
        remove_volume(state, group, volume)
    for vsr in group.virtual_storage_resources.list():
        group.virtual_storage_resources.remove(vsr.oid)
    state.reports.pop(group.uri, None)
    group.manager.remove(group.oid)


def busy(group: Any) -> HmcError:
    return HmcError(
        409, rules.BUSY_REASON, f'Storage group {group.name} is busy: an FCP discovery is running'
    )


# --- storage volumes ------------------------------------------------------------------


def check_volume_create(request: Any, group_type: str, *, create_only: bool = False) -> None:
    if isinstance(request, Mapping) and request.get('operation', 'create') != 'create':
        if create_only:
            raise invalid("Create Storage Group takes storage-volumes with operation 'create'")
        raise invalid(f'operation must be one of {sorted(rules.SV_OPERATIONS)}')
    request = check_body(
        request, {*rules.SV_WRITABLE_FIELDS, 'operation'}, ('operation',), 'storage-volumes item'
    )
    if group_type == 'fcp' and 'size' not in request:
        raise HmcError(
            400, rules.MISSING_FIELD_REASON, 'Missing required field in storage-volumes item: size'
        )
    check_volume_fields(request)


def check_volume_fields(request: Mapping[str, Any]) -> None:
    check_string(request, 'name', 1, 64)
    check_string(request, 'description', 0, 1024)
    size = request.get('size')
    if 'size' in request and (
        isinstance(size, bool) or not isinstance(size, int | float) or size <= 0
    ):
        raise invalid(f'size must be a number of GiB > 0, not {size!r}')
    if 'usage' in request and request['usage'] not in rules.STORAGE_VOLUME_USAGES:
        raise invalid(f'usage must be one of {sorted(rules.STORAGE_VOLUME_USAGES)}')


def check_volume_request(hmc: Any, group: Any, request: Any, group_type: str) -> None:
    operation = request.get('operation') if isinstance(request, Mapping) else None
    if operation not in ('modify', 'delete'):
        check_volume_create(request, group_type)
        return
    allowed = {'operation', 'element-uri'}
    if operation == 'modify':
        allowed |= rules.SV_WRITABLE_FIELDS
    request = check_body(request, allowed, ('element-uri',), 'storage-volumes item')
    volume = body_object(hmc, request['element-uri'], 'element-uri', 'storage-volume')
    if volume.manager.parent is not group:
        raise HmcError(
            404,
            rules.BODY_URI_NOT_FOUND_REASON,
            f'element-uri is not a storage volume of storage group {group.name}',
        )
    if operation == 'modify':
        check_volume_fields(request)
    else:
        users = boot_users(hmc, volume)
        if users:
            raise HmcError(
                409,
                rules.IN_USE_REASON,
                f'Storage volume {volume.name} is the boot volume of partitions: '
                + ', '.join(sorted(users)),
            )


def boot_users(hmc: Any, volume: Any) -> list[str]:
    """The partitions the volume's group is attached to that boot from the volume."""
    return [
        partition.name
        for partition in attached_partitions(hmc, volume.manager.parent)
        if partition.properties.get('boot-storage-volume') == volume.uri
    ]


def add_volume(state: StorageState, group: Any, request: Mapping[str, Any]) -> Any:
    index = len(group.properties.get('storage-volume-uris') or ()) + 1
    properties = {
        'name': request.get('name', f'{group.name}-{index}'),
        'description': request.get('description', ''),
        'usage': request.get('usage', 'data'),
        'fulfillment-state': rules.FULFILLMENT_PENDING,
        'paths': [],
        'uuid': None,
        'active-size': None,
    }
    if 'size' in request:
        properties['size'] = float(request['size'])
    return group.storage_volumes.add(properties)


def modify_volume(hmc: Any, state: StorageState, group: Any, request: Mapping[str, Any]) -> None:
    volume = hmc.lookup_by_uri(request['element-uri'])
    changes = {key: request[key] for key in rules.SV_WRITABLE_FIELDS if key in request}
    if 'size' in changes:
        changes['size'] = float(changes['size'])
        if changes['size'] != volume.properties.get('size'):
            # A size change waits for the storage administrator (ibm Fulfill FICON
            # Storage Volume: "If the size ... modified, the fulfillment-state ...
            # is changed to 'pending'"); the FCP counterpart is assumed.
            changes['fulfillment-state'] = rules.FULFILLMENT_PENDING
    volume.properties.update(changes)


def remove_volume(state: StorageState, group: Any, volume: Any) -> None:
    uris = group.properties.get('storage-volume-uris') or []
    if volume.uri in uris:
        uris.remove(volume.uri)  # zc's FakedStorageVolumeManager.remove leaves it
    state.bindings.pop(volume.uri, None)
    group.storage_volumes.remove(volume.oid)


def update_fulfillment(group: Any) -> None:
    """The group is complete when it has volumes, all complete, and its active paths."""
    volumes = group.storage_volumes.list()
    complete = (
        bool(volumes)
        and all(
            v.properties.get('fulfillment-state') == rules.FULFILLMENT_COMPLETE for v in volumes
        )
        and group.properties.get('active-connectivity') == group.properties.get('connectivity')
        and group.properties.get('active-max-partitions') == group.properties.get('max-partitions')
    )
    group.properties['fulfillment-state'] = (
        rules.FULFILLMENT_COMPLETE if complete else rules.FULFILLMENT_PENDING
    )


def fulfil(
    state: StorageState, volume: Any, binding: Binding, volume_uuid: str | None = None
) -> None:
    state.bindings[volume.uri] = binding
    properties = volume.properties
    properties['fulfillment-state'] = rules.FULFILLMENT_COMPLETE
    properties['active-size'] = properties.get('size')
    if not properties.get('uuid'):
        properties['uuid'] = volume_uuid or state.next_volume_uuid()


def refresh_paths(hmc: Any, state: StorageState, group: Any) -> None:
    """Each fulfilled volume's paths: one per VSR of each attached partition.

    The real sample has device-number, logical-unit-number, partition-uri and
    target-world-wide-port-name per path (ans zhmc_storage_group.py sample). Before
    any attachment the simulator shows one path without partition and device
    number, so the LUN is visible before attaching (UNVERIFIED).
    """
    vsrs = [
        vsr for vsr in group.virtual_storage_resources.list() if vsr.properties.get('partition-uri')
    ]
    for volume in group.storage_volumes.list():
        binding = state.bindings.get(volume.uri)
        if binding is None:
            volume.properties['paths'] = []
            continue
        lun = {
            'target-world-wide-port-name': binding.target,
            'logical-unit-number': binding.lun,
        }
        volume.properties['paths'] = [
            {
                'device-number': vsr.properties.get('device-number'),
                'partition-uri': vsr.properties['partition-uri'],
                **lun,
            }
            for vsr in vsrs
        ] or [{'device-number': None, 'partition-uri': None, **lun}]


# --- Fulfill FCP Storage Volume, Validate LUN Path --------------------------------------


def fulfill_fcp(
    hmc: Any, state: StorageState, volume: Any, body: Any, method: str, uri: str
) -> None:
    """Fulfill FCP Storage Volume: pin the volume to a target WWPN, LUN and host port."""
    group = volume.manager.parent
    require_fcp(group, uri)
    cpc = storage_cpc(group_cpc(hmc, group), method, uri)
    fields = ('world-wide-port-name', 'logical-unit-number', 'adapter-port-uri')
    body = check_body(body, fields, fields)
    target = check_hex16(body, 'world-wide-port-name')
    lun = check_hex16(body, 'logical-unit-number')
    port = fcp_port(hmc, cpc, body['adapter-port-uri'])
    known = state.bindings.get(volume.uri)
    if known is not None and known.pinned and (known.target, known.lun) != (target, lun):
        raise HmcError(
            409,
            rules.FULFILLED_REASON,
            f'Storage volume {volume.name} was fulfilled with WWPN {known.target} '
            f'LUN {known.lun}; that cannot be changed',
        )
    entry = state.fabric.find(target, lun, group_wwpns(group))
    fulfil(state, volume, Binding(target, lun, True, port), entry.uuid if entry else None)
    refresh_paths(hmc, state, group)
    update_fulfillment(group)


def validate_lun_path(hmc: Any, state: StorageState, cpc: Any, body: Any) -> None:
    """Validate LUN Path: 484 target unreachable, 485 LUN unreachable (409)."""
    fields = (
        'host-world-wide-port-name',
        'adapter-port-uri',
        'target-world-wide-port-name',
        'logical-unit-number',
    )
    body = check_body(body, fields, fields)
    host = check_hex16(body, 'host-world-wide-port-name')
    target = check_hex16(body, 'target-world-wide-port-name')
    lun = check_hex16(body, 'logical-unit-number')
    fcp_port(hmc, cpc, body['adapter-port-uri'])
    target_ok, lun_ok = state.fabric.reaches([host], target, lun)
    if not target_ok:
        raise HmcError(
            409, rules.TARGET_UNREACHABLE_REASON, f'Target WWPN {target} cannot be reached'
        )
    if not lun_ok:
        raise HmcError(
            409, rules.LUN_UNREACHABLE_REASON, f'LUN {lun} cannot be reached on target {target}'
        )


# --- Start FCP Storage Discovery ----------------------------------------------------------


def check_discovery(hmc: Any, state: StorageState, group: Any, body: Any, uri: str) -> bool:
    """The request's force-restart; 409,2 while a discovery runs and it is false."""
    require_fcp(group, uri)
    storage_cpc(group_cpc(hmc, group), 'POST', uri)
    body = check_body(body, ('force-restart',))
    check_bool(body, 'force-restart')
    force = body.get('force-restart', False)
    running = state.discoveries.get(group.uri)
    if running is not None and not force:
        raise busy(group)
    return running is not None


def finish_discovery(hmc: Any, state: StorageState, job: Job) -> None:
    """End a discovery job: validate WWPNs, assign ports, match volumes to LUNs."""
    if state.discoveries.get(job.target_uri) is job:
        del state.discoveries[job.target_uri]
    group = hmc.all_resources.get(job.target_uri)
    if job.outcome == rules.JOB_ERROR or group is None:
        name = group.name if group is not None else job.target_uri
        message = f'FCP storage discovery of {name} failed (simulated job error)'
        job.complete(rules.JOB_ERROR_STATUS, rules.JOB_ERROR_REASON, {'message': message})
        return
    discover(hmc, state, group)
    job.complete(rules.DISCOVERY_OK_STATUS, 0, None)


def discover(hmc: Any, state: StorageState, group: Any) -> None:
    fabric = state.fabric
    ports = fcp_ports(group_cpc(hmc, group))
    if not group.properties.get('candidate-adapter-port-uris'):
        # "all adapter ports in the storage group are automatically detected" once a
        # working path is found (zc _storage_group.py add_candidate_adapter_ports).
        group.properties['candidate-adapter-port-uris'] = list(ports)
    for entry in group.properties.get('unassigned-world-wide-port-names') or ():
        entry['status'] = wwpn_status(fabric, entry['world-wide-port-name'])
    assign_ports(group, fabric)
    wwpns = group_wwpns(group)
    bound = {
        (b.target, b.lun)
        for volume in group.storage_volumes.list()
        if (b := state.bindings.get(volume.uri)) is not None
    }
    for volume in group.storage_volumes.list():
        if volume.properties.get('fulfillment-state') != rules.FULFILLMENT_COMPLETE:
            match_volume(state, volume, wwpns, bound)
    group.properties['active-connectivity'] = group.properties.get('connectivity')
    group.properties['active-max-partitions'] = group.properties.get('max-partitions')
    refresh_paths(hmc, state, group)
    update_fulfillment(group)
    state.reports[group.uri] = connection_report(state, group, wwpns)


def wwpn_status(fabric: Fabric, wwpn: str) -> str:
    return rules.WWPN_VALIDATED if fabric.validates(wwpn) else rules.WWPN_NOT_VALIDATED


def assign_ports(group: Any, fabric: Fabric) -> None:
    """A VSR whose WWPN is now validated gets a storage port (ibm Attach Storage Group)."""
    by_partition: dict[str, list[Any]] = {}
    for vsr in group.virtual_storage_resources.list():
        by_partition.setdefault(vsr.properties.get('partition-uri'), []).append(vsr)
    ports = group.properties.get('candidate-adapter-port-uris') or []
    for vsrs in by_partition.values():
        for index, vsr in enumerate(vsrs):
            info = vsr.properties.setdefault('world-wide-port-name-info', {})
            status = wwpn_status(fabric, vsr.properties['world-wide-port-name'])
            info['status'] = status
            info['world-wide-port-name'] = vsr.properties['world-wide-port-name']
            if status == rules.WWPN_VALIDATED and not vsr.properties.get('adapter-port-uri'):
                vsr.properties['adapter-port-uri'] = ports[index % len(ports)] if ports else None


def match_volume(
    state: StorageState, volume: Any, wwpns: list[str], bound: set[tuple[str, str]]
) -> None:
    """Fulfil a pending volume from the SAN: its pinned LUN, a listed LUN of its size, or
    (open fabric only) a made-up LUN on OPEN_TARGET."""
    fabric = state.fabric
    size = volume.properties.get('size')
    binding = state.bindings.get(volume.uri)
    if binding is not None:
        entry = fabric.find(binding.target, binding.lun, wwpns)
        made_up = binding.target == OPEN_TARGET
        if (entry is not None and entry.fits(size)) or (
            fabric.open and (binding.pinned or made_up)
        ):
            fulfil(state, volume, binding, entry.uuid if entry else None)
            return
        if binding.pinned:
            return  # stays pending until the SAN has the LUN it was fulfilled with
        bound.discard((binding.target, binding.lun))
        del state.bindings[volume.uri]
    for entry in fabric.visible(wwpns):
        if (entry.target, entry.lun) not in bound and entry.fits(size):
            bound.add((entry.target, entry.lun))
            fulfil(state, volume, Binding(entry.target, entry.lun), entry.uuid)
            return
    if fabric.open:
        number = 1 + sum(1 for target, _ in bound if target == OPEN_TARGET)
        while (OPEN_TARGET, lun := f'{number:04x}000000000000') in bound:
            number += 1
        bound.add((OPEN_TARGET, lun))
        fulfil(state, volume, Binding(OPEN_TARGET, lun))


def connection_report(state: StorageState, group: Any, wwpns: list[str]) -> dict[str, Any]:
    """A minimal report: one FCP storage subsystem per target WWPN the group's volumes use.

    zhmcclient names only fcp-storage-subsystems[].storage-configurations[].
    volumes-configuration-status and its value 'correct-volumes' (zc
    _storage_group.py get_connection_report); every other field here is the
    simulator's, UNVERIFIED. A configuration is 'correct-volumes' when every
    volume of the group is complete, else 'incomplete-volumes' (made up).
    """
    volumes = group.storage_volumes.list()
    complete = all(
        v.properties.get('fulfillment-state') == rules.FULFILLMENT_COMPLETE for v in volumes
    )
    targets = sorted({b.target for v in volumes if (b := state.bindings.get(v.uri))})
    return {
        'fcp-storage-subsystems': [
            {
                'target-world-wide-port-names': [target],
                'storage-configurations': [
                    {
                        'host-world-wide-port-names': sorted(wwpns),
                        'volumes-configuration-status': (
                            'correct-volumes' if complete else 'incomplete-volumes'
                        ),
                    }
                ],
            }
            for target in targets
        ]
    }


# --- Attach / Detach Storage Group, Get Partitions for a Storage Group -------------------


def attachment_request(hmc: Any, partition: Any, body: Any, method: str, uri: str) -> Any:
    storage_cpc(partition.manager.parent, method, uri)
    body = check_body(body, ('storage-group-uri',), ('storage-group-uri',))
    return body_object(hmc, body['storage-group-uri'], 'storage-group-uri', 'storage-group')


def conflict(message: str) -> HmcError:
    return HmcError(409, rules.ATTACHMENT_REASON, message)


def attach(hmc: Any, state: StorageState, partition: Any, body: Any, method: str, uri: str) -> None:
    """Attach Storage Group to Partition: VSRs from the group's WWPNs (FCP)."""
    group = attachment_request(hmc, partition, body, method, uri)
    if partition.properties.get('status') in rules.ATTACH_NOT_IN:
        raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
    cpc = partition.manager.parent
    if group.properties.get('cpc-uri') != cpc.uri:
        raise conflict(f'Storage group {group.name} is not associated with CPC {cpc.name}')
    uris = partition.properties.setdefault('storage-group-uris', [])
    if group.uri in uris:
        raise conflict(f'Storage group {group.name} is already attached to {partition.name}')
    others = attached_partitions(hmc, group)
    limit = group.properties.get('max-partitions') or 1
    if others and (not group.properties.get('shared') or len(others) >= limit):
        raise conflict(
            f'Storage group {group.name} is attached to {len(others)} partition(s) and '
            f'allows no more (shared {group.properties.get("shared")}, max-partitions {limit})'
        )
    if is_fcp(group):
        create_vsrs(hmc, group, partition)
    uris.append(group.uri)
    refresh_paths(hmc, state, group)


def create_vsrs(hmc: Any, group: Any, partition: Any) -> None:
    pool = group.properties['unassigned-world-wide-port-names']
    count = group.properties.get('connectivity') or 1
    if len(pool) < count:
        raise conflict(f'Storage group {group.name} has no unassigned WWPNs left')
    ports = group.properties.get('candidate-adapter-port-uris') or fcp_ports(
        partition.manager.parent
    )
    taken, pool[:] = pool[:count], pool[count:]
    devnos = device_numbers(hmc, partition)
    first = len(group.properties.get('virtual-storage-resource-uris') or ())
    for index, entry in enumerate(taken):
        validated = entry['status'] == rules.WWPN_VALIDATED
        devno = free_devno(devnos)
        group.virtual_storage_resources.add(
            {
                'name': f'{rules.VSR_NAME_PREFIX}{group.name}{first + index + 1}',
                'description': '',
                'partition-uri': partition.uri,
                'device-number': devno,
                'adapter-port-uri': ports[index % len(ports)] if validated and ports else None,
                'world-wide-port-name': entry['world-wide-port-name'],
                'world-wide-port-name-info': dict(entry),
            }
        )


def device_numbers(hmc: Any, partition: Any) -> set[str]:
    """The device numbers in use in the partition: NICs, HBAs, VSRs (lower case)."""
    used = {
        str(child.properties.get('device-number', '')).lower()
        for manager in (partition.nics, partition.hbas)
        for child in manager.list()
    }
    for group_uri in partition.properties.get('storage-group-uris') or ():
        group = hmc.all_resources.get(group_uri)
        if group is not None:
            used |= {
                str(vsr.properties.get('device-number', '')).lower()
                for vsr in group.virtual_storage_resources.list()
                if vsr.properties.get('partition-uri') == partition.uri
            }
    return used


def free_devno(used: set[str]) -> str:
    number = rules.VSR_DEVNO_FIRST
    while f'{number:04x}' in used:
        number += 1
    devno = f'{number:04x}'
    used.add(devno)
    return devno


def detach(hmc: Any, state: StorageState, partition: Any, body: Any, method: str, uri: str) -> None:
    """Detach Storage Group from Partition: its VSRs go, their WWPNs return to the group."""
    group = attachment_request(hmc, partition, body, method, uri)
    uris = partition.properties.get('storage-group-uris') or []
    if group.uri not in uris:
        raise conflict(f'Storage group {group.name} is not attached to {partition.name}')
    if partition.properties.get('status', 'stopped') not in rules.DETACH_FROM:
        raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
    release_vsrs(group, partition)
    uris.remove(group.uri)
    refresh_paths(hmc, state, group)


def release_vsrs(group: Any, partition: Any) -> None:
    """Remove the partition's VSRs; their WWPNs go back to the unassigned pool (UNVERIFIED:
    shared/STORAGE-GROUPS.md R1; kept stable so the SAN zoning stays valid)."""
    pool = group.properties.setdefault('unassigned-world-wide-port-names', [])
    uris = group.properties.get('virtual-storage-resource-uris') or []
    for vsr in group.virtual_storage_resources.list():
        if vsr.properties.get('partition-uri') != partition.uri:
            continue
        info = vsr.properties.get('world-wide-port-name-info') or {}
        pool.append(
            {
                'world-wide-port-name': vsr.properties['world-wide-port-name'],
                'status': info.get('status', rules.WWPN_NOT_VALIDATED),
            }
        )
        if vsr.uri in uris:
            uris.remove(vsr.uri)  # zc's manager leaves it in the group's list
        group.virtual_storage_resources.remove(vsr.oid)


def attached_summary(hmc: Any, group: Any, query: Mapping[str, str]) -> dict[str, Any]:
    """Get Partitions for a Storage Group, filtered by name (a regular expression) and status."""
    name, status = query.get('name'), query.get('status')
    found = []
    if name is not None:
        try:
            re.compile(name)
        except re.error as exc:
            raise invalid(f'name is not a valid regular expression: {exc}') from None
    for partition in attached_partitions(hmc, group):
        if name is not None and not re.fullmatch(name, partition.name):
            continue
        if status is not None and partition.properties.get('status') != status:
            continue
        found.append(
            {
                key: partition.properties.get(key)
                for key in ('object-uri', 'object-id', 'name', 'status')
            }
        )
    return {'partitions': found}


# --- Update Virtual Storage Resource Properties --------------------------------------------


def update_vsr(hmc: Any, state: StorageState, vsr: Any, body: Any, method: str, uri: str) -> None:
    """Update Virtual Storage Resource Properties (zc's mock has no such handler)."""
    group = vsr.manager.parent
    cpc = storage_cpc(group_cpc(hmc, group), method, uri)
    body = check_body(body, rules.VSR_WRITABLE)
    check_string(body, 'name', 1, 64)
    check_string(body, 'description', 0, 1024)
    if 'device-number' in body:
        devno = body['device-number']
        if not isinstance(devno, str) or not DEVNO.fullmatch(devno):
            raise invalid(f'device-number must be 4 lower-case hexadecimal digits: {devno!r}')
        partition = hmc.all_resources.get(vsr.properties.get('partition-uri'))
        used = device_numbers(hmc, partition) if partition is not None else set()
        used.discard(str(vsr.properties.get('device-number', '')).lower())
        if devno in used:
            raise invalid(f'device-number {devno} is already used in the partition')
    if 'adapter-port-uri' in body:
        fcp_port(hmc, cpc, body['adapter-port-uri'])
    vsr.properties.update(body)
    refresh_paths(hmc, state, group)


# --- Partitions: boot from a storage volume, delete --------------------------------------


BOOT_FIELDS = ('boot-storage-volume', 'boot-load-parameters')


def check_partition_boot(
    hmc: Any, api: ApiVersion, cpc: Any, partition: Any | None, body: Any
) -> None:
    """Create/Update Partition: the boot fields of the storage-volume boot (rules.py)."""
    if not isinstance(body, Mapping):
        return
    if api < rules.STORAGE_GROUPS_SINCE:
        for name in BOOT_FIELDS:
            if name in body:
                raise HmcError(
                    400,
                    rules.UNKNOWN_FIELD_REASON,
                    f'Field {name!r} is not valid in this HMC API version',
                )
        if body.get('boot-device') == 'storage-volume':
            raise invalid("boot-device 'storage-volume' is not valid in this HMC API version")
    storage = storage_management_enabled(cpc)
    device = body.get('boot-device')
    volume_uri = body.get('boot-storage-volume')
    if not storage and (device == 'storage-volume' or volume_uri is not None):
        raise feature_missing(cpc, 'boot from a storage volume')
    if storage and device == 'storage-adapter':
        raise HmcError(
            409,
            rules.STORAGE_FEATURE_MISSING_REASON,
            f'CPC {cpc.name} has DPM storage management: no HBAs to boot from',
        )
    if volume_uri is not None:
        volume = body_object(hmc, volume_uri, 'boot-storage-volume', 'storage-volume')
        attached = (partition.properties.get('storage-group-uris') or ()) if partition else ()
        if volume.manager.parent.uri not in attached:
            raise HmcError(
                409,
                rules.BOOT_VOLUME_REASON,
                f'The storage group of {volume.name} is not attached to the partition',
            )


def feature_missing(cpc: Any, what: str) -> HmcError:
    return HmcError(
        409,
        rules.STORAGE_FEATURE_MISSING_REASON,
        f'CPC {cpc.name} does not have the {rules.STORAGE_MANAGEMENT_FEATURE} firmware '
        f'feature enabled: no {what}',
    )


def boot_volume(hmc: Any, partition: Any) -> Any | None:
    """The storage volume a Start boots from, or None for another boot device.

    409,102 when it boots from a storage volume that is unset, gone, not in a
    storage group attached to the partition, or not fulfilled (rules.py).
    """
    if partition.properties.get('boot-device') != 'storage-volume':
        return None
    volume = hmc.all_resources.get(partition.properties.get('boot-storage-volume') or '')
    problem = None
    if volume is None:
        problem = 'boot-storage-volume designates no storage volume'
    elif volume.manager.parent.uri not in (partition.properties.get('storage-group-uris') or ()):
        problem = f'the storage group of boot volume {volume.name} is not attached'
    elif volume.properties.get('fulfillment-state') != rules.FULFILLMENT_COMPLETE:
        problem = f'boot volume {volume.name} is not fulfilled'
    if problem:
        raise HmcError(409, rules.BOOT_VOLUME_REASON, f'Cannot boot {partition.name}: {problem}')
    return volume


def boot_outcome(hmc: Any, state: StorageState, partition: Any, volume: Any) -> str:
    """'active', or rules.BOOT_FAILED when the SAN does not give the partition its boot LUN.

    The boot goes through the host port of the volume's fulfillment (any port of
    the partition's VSRs if discovery matched it), with the WWPN of the
    partition's VSR on that port.
    """
    binding = state.bindings.get(volume.uri)
    group = volume.manager.parent
    vsrs = [
        vsr
        for vsr in group.virtual_storage_resources.list()
        if vsr.properties.get('partition-uri') == partition.uri
        and vsr.properties.get('adapter-port-uri')
        and (binding is None or binding.host_port in (None, vsr.properties['adapter-port-uri']))
    ]
    if binding is None or not vsrs:
        return rules.BOOT_FAILED
    wwpns = [vsr.properties['world-wide-port-name'] for vsr in vsrs]
    return (
        'active'
        if state.fabric.reaches(wwpns, binding.target, binding.lun)[1]
        else (rules.BOOT_FAILED)
    )


def refuse_delete_attached(partition: Any) -> None:
    """Delete Partition while storage groups are attached: 409,100 (rules.IN_USE_REASON)."""
    attached = partition.properties.get('storage-group-uris') or []
    if attached:
        raise HmcError(
            409,
            rules.IN_USE_REASON,
            f'Partition {partition.name} has {len(attached)} storage group(s) attached: '
            'detach them first',
        )


def partition_features(cpc: Any, partition: Any) -> None:
    """A new partition's available-features-list says what its CPC has.

    zc's mock gives every new partition dpm-storage-management: true (mock
    PartitionsHandler.post), also on a z13; a real partition reports its CPC's
    features (ans zhmc_partition.py sample ~612, a z14 partition).
    """
    enabled = storage_management_enabled(cpc)
    for feature in partition.properties.get('available-features-list') or ():
        if feature.get('name') == rules.STORAGE_MANAGEMENT_FEATURE:
            feature['state'] = enabled
