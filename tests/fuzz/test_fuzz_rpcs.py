"""Property-based fuzzing of every DPMHost RPC with hostile input (hypothesis).

Hostile: random and curated strings (unicode, NUL, 100 kB, regex and shell
metacharacters, path pieces, near misses of valid values), negative-looking
and huge numbers at the uint32/uint64 edges, malformed UUIDs, MACs, WWPNs
and object ids, 11 to 16 NICs, VLAN details, unknown hosts and hosts that
are prefixes or patterns of served ones. (No request field carries a device
number: the HMC assigns them.)

Required of every case: never INTERNAL or UNKNOWN; a request the contract
calls invalid (an oracle below restates the rules without the backend's
validation code) is refused with INVALID_ARGUMENT, NOT_FOUND or
RESOURCE_EXHAUSTED and makes no HMC request; a valid one succeeds or fails
only for a state of the HMC that STATE_FAILURES names (no partition, capacity,
the classic or the storage-group CPC, a boot volume not reaching the vHBAs);
no partition is created or changed by a failed call; the server keeps
serving. A third of the cases are built valid, half of those for an instance
prepared first, so that each RPC has a floor of valid cases and of accepted
ones. The in-process servicer runs most cases; a smaller run goes over the
real unix socket (and through the token interceptor). The number of cases is
printed at the end of the run.
"""

from __future__ import annotations

import re
import uuid

import grpc
import pytest
from dpmtest import INVENTORY
from dpmtest import RequestLog
from dpmtest import count_cases
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import snapshot
from dpmtest import wait_for
from dpmtest import write_config
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.server import Backend

# --- Strategies ---

HOSTS = ('cpc1', 'cpc10', 'z14host', 'classic')
# A partition of the shipped mock HMC named for host cpc10 (another cloud's).
CPC10_UUID = '0f8e2d4c-1b3a-4c5d-8e6f-7a8b9c0d1e2f'
VSWITCHES = (INVENTORY['vswitch_osa0'], INVENTORY['vswitch_osa1'], INVENTORY['vswitch_hs'])
HUGE = 'x' * 100_000
NASTY = (
    '',
    ' ',
    '\x00',
    'cpc1\x00',
    '\x00cpc1',
    'cpc1 ',
    ' cpc1',
    'CPC1',
    'Cpc1',
    'cpc',
    'cpc1-',
    'cpc1-backup',
    'cpc1.*',
    '.*',
    '.+',
    '^cpc1$',
    'cpc1|cpc10',
    'cpc[0-9]+',
    '(a+)+$',
    '[',
    '\\',
    '\\d',
    '$(reboot)',
    '`id`',
    '; rm -rf /',
    '| cat /etc/passwd',
    '&& shutdown -h now',
    '../../etc/passwd',
    '..\\..\\windows',
    '/api/partitions/1',
    '/api/cpcs/' + INVENTORY['z13'],
    '%2e%2e%2f',
    '%00',
    'OpenStack-cpc1-',
    'OpenStack-cpc10-' + CPC10_UUID,
    '\u0441pc1',  # Cyrillic es
    'cpc1\u200b',
    '\ufeffcpc1',
    '\u202ecpc1',
    'cpc\uff11',  # full-width digit
    '\U0001d520\U0001d52d\U0001d5201',  # Fraktur
    '\n',
    'cpc1\r\nX-Injected: 1',
    "' OR 1=1 --",
    '{{7*7}}',
    '%s%s%n',
    '${jndi:ldap://x}',
    '*',
    '?',
    HUGE,
    'h' * 17,
    'h' * 18,
)


INSERTED = '\x00-_.*/\\$;|\n é'


@st.composite
def near_misses(draw, valid_values: st.SearchStrategy[str]) -> str:
    """Near misses of a valid value: case, an inserted or dropped character, padding."""
    valid = draw(valid_values)
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return valid.upper()
    if kind == 1:
        return draw(st.sampled_from((' ', '\t', '\x00'))) + valid
    if kind == 2:
        return valid + draw(st.sampled_from((' ', '\n', '\x00')))
    if kind == 3:
        return valid[:-1]
    if kind == 4:
        return valid + valid[-1:]
    if kind == 5:
        position = draw(st.integers(0, len(valid)))
        return valid[:position] + draw(st.sampled_from(INSERTED)) + valid[position:]
    return valid + draw(st.sampled_from(NASTY[:48]))


def hostile(*valid: str, long_text: bool = True) -> st.SearchStrategy[str]:
    """Valid values, their near misses, curated nasty strings and random text.

    Random text stays short where many strings make one request (NIC and
    WWPN fields): the 100 kB case comes from the curated list.
    """
    choices = [st.sampled_from(NASTY), st.text(max_size=40)]
    if long_text:
        choices.append(st.text(min_size=41, max_size=600))
    if valid:
        choices += [st.sampled_from(valid), near_misses(st.sampled_from(valid))]
    return st.one_of(*choices)


canonical_uuids = st.uuids().map(str)
host_names = hostile(*HOSTS)
uuid_strings = st.one_of(
    canonical_uuids,
    near_misses(canonical_uuids),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: '{' + str(u) + '}'),
    st.uuids().map(lambda u: u.urn),
    hostile(CPC10_UUID),
)
nic_uuid_strings = st.one_of(
    near_misses(canonical_uuids), st.uuids().map(lambda u: u.hex), hostile(long_text=False)
)
macs = st.one_of(
    st.binary(min_size=6, max_size=6).map(lambda b: ':'.join(f'{x:02x}' for x in b)),
    st.binary(min_size=6, max_size=6).map(lambda b: '-'.join(f'{x:02X}' for x in b)),
    st.binary(min_size=6, max_size=6).map(bytes.hex),
    hostile(
        'fa:16:3e:00:00:01',
        '00:00:00:00:00:00',
        'ff:ff:ff:ff:ff:ff',
        'fb:16:3e:00:00:01',
        long_text=False,
    ),
)
wwpns = st.one_of(
    st.binary(min_size=8, max_size=8).map(bytes.hex),
    st.binary(min_size=8, max_size=8).map(lambda b: '0x' + b.hex().upper()),
    st.binary(min_size=7, max_size=9).map(lambda b: b.hex()[1:]),
    hostile('c05076ffe5000001', '0xC05076FFE5000001', 'c0:50:76:ff:e5:00:00:01', long_text=False),
)
object_ids = st.one_of(
    st.sampled_from(VSWITCHES), canonical_uuids, hostile(*VSWITCHES, long_text=False)
)
uint32 = st.one_of(
    st.sampled_from([0, 1, 2, 12, 13, 512, 513, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)
)
uint64 = st.one_of(
    st.sampled_from(
        [0, 1, 511, 512, 2048, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1, 2**63, 2**64 - 1]
    ),
    st.integers(0, 2**64 - 1),
)
flavors = st.builds(pb.Flavor, vcpus=uint32, memory_mb=uint64)
vif_types = st.one_of(
    st.just(contract.DPM_VSWITCH),
    hostile(contract.DPM_VSWITCH, 'ovs', 'bridge', 'hw_veb', long_text=False),
)


@st.composite
def nics_(draw) -> pb.Nic:
    message = pb.Nic(
        port_id=draw(st.one_of(canonical_uuids, nic_uuid_strings)),
        mac=draw(macs),
        vif_type=draw(vif_types),
        vswitch_object_id=draw(object_ids),
    )
    if draw(st.booleans()):
        message.vlan = draw(uint32)
    return message


nic_lists = st.one_of(
    st.lists(nics_(), max_size=4),
    st.lists(nics_(), min_size=11, max_size=16),
)


@st.composite
def boot_volumes(draw) -> pb.FcBootVolume | None:
    if draw(st.integers(0, 9)) == 0:
        return None  # an image boot
    entries = draw(
        st.lists(
            st.builds(
                pb.InitiatorTargets,
                initiator_wwpn=wwpns,
                target_wwpns=st.lists(wwpns, max_size=4),
            ),
            max_size=3,
        )
    )
    return pb.FcBootVolume(target_lun=draw(uint64), initiator_target_map=entries)


@st.composite
def spawn_requests(draw) -> pb.SpawnRequest:
    request = pb.SpawnRequest(
        host=draw(host_names),
        instance_uuid=draw(st.one_of(canonical_uuids, uuid_strings)),
        nics=draw(nic_lists),
        stop_other_hosts_partitions=draw(st.booleans()),
    )
    if draw(st.integers(0, 9)):
        request.flavor.CopyFrom(draw(flavors))
    volume = draw(boot_volumes())
    if volume is not None:
        request.boot_volume.CopyFrom(volume)
    return request


@st.composite
def prepare_requests(draw) -> pb.PrepareInstanceRequest:
    request = pb.PrepareInstanceRequest(
        host=draw(host_names), instance_uuid=draw(st.one_of(canonical_uuids, uuid_strings))
    )
    if draw(st.integers(0, 9)):
        request.flavor.CopyFrom(draw(flavors))
    return request


def instance_requests(request_type) -> st.SearchStrategy:
    return st.builds(
        request_type,
        host=host_names,
        instance_uuid=st.one_of(canonical_uuids, uuid_strings),
    )


HOSTILE = {
    'GetHostStatus': st.builds(pb.GetHostStatusRequest, host=host_names),
    'ListInstances': st.builds(pb.ListInstancesRequest, host=host_names),
    'GetInstanceInfo': instance_requests(pb.GetInstanceInfoRequest),
    'GetVolumeConnector': instance_requests(pb.GetVolumeConnectorRequest),
    'PrepareInstance': prepare_requests(),
    'Spawn': spawn_requests(),
    'Destroy': instance_requests(pb.DestroyRequest),
    'PowerOff': instance_requests(pb.PowerOffRequest),
    'PowerOn': instance_requests(pb.PowerOnRequest),
    'Reboot': instance_requests(pb.RebootRequest),
}

# --- Requests valid by the contract (a third of the cases) ---
# The hostile strategies above rarely hit a valid request (a Spawn almost never):
# these build valid ones on purpose, so that a validator refusing valid input fails.

served_hosts = st.sampled_from(HOSTS)
# Mostly unknown instances; CPC10_UUID is host cpc10's partition (read-only methods).
valid_uuids = st.one_of(canonical_uuids, st.just(CPC10_UUID))
valid_flavors = st.one_of(
    st.builds(pb.Flavor, vcpus=st.integers(1, 4), memory_mb=st.sampled_from([1, 512, 2048])),
    st.builds(pb.Flavor, vcpus=st.integers(1, 512), memory_mb=st.integers(1, 64 * 1024 * 1024)),
)
# Unicast, locally administered: the low two bits of the first octet are 10.
local_macs = st.binary(min_size=6, max_size=6).map(
    lambda b: ':'.join(f'{x:02x}' for x in bytes([b[0] & 0xFC | 0x02]) + b[1:])
)
valid_nics = st.builds(
    pb.Nic,
    port_id=canonical_uuids,
    mac=local_macs,
    vif_type=st.just(contract.DPM_VSWITCH),
    vswitch_object_id=st.sampled_from(VSWITCHES),
)
valid_wwpns = st.one_of(
    st.binary(min_size=8, max_size=8).map(bytes.hex),
    st.binary(min_size=8, max_size=8).map(lambda b: '0x' + b.hex().upper()),
)
valid_boot_volumes = st.builds(
    pb.FcBootVolume,
    target_lun=st.integers(0, 0xFFFFFFFF),
    initiator_target_map=st.lists(
        st.builds(
            pb.InitiatorTargets,
            initiator_wwpn=valid_wwpns,
            target_wwpns=st.lists(valid_wwpns, min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=3,
    ),
)


def valid_instance_requests(request_type) -> st.SearchStrategy:
    return st.builds(request_type, host=served_hosts, instance_uuid=valid_uuids)


VALID = {
    'GetHostStatus': st.builds(pb.GetHostStatusRequest, host=served_hosts),
    'ListInstances': st.builds(pb.ListInstancesRequest, host=served_hosts),
    'GetInstanceInfo': valid_instance_requests(pb.GetInstanceInfoRequest),
    'GetVolumeConnector': valid_instance_requests(pb.GetVolumeConnectorRequest),
    'PrepareInstance': st.builds(
        pb.PrepareInstanceRequest,
        host=served_hosts,
        instance_uuid=canonical_uuids,
        flavor=valid_flavors,
    ),
    'Spawn': st.builds(
        pb.SpawnRequest,
        host=served_hosts,
        instance_uuid=canonical_uuids,
        flavor=valid_flavors,
        nics=st.lists(valid_nics, max_size=contract.MAX_NICS, unique_by=lambda n: n.port_id),
        boot_volume=valid_boot_volumes,
        # Evacuate: the instance's partitions of the other hosts are stopped first.
        stop_other_hosts_partitions=st.booleans(),
    ),
    'Destroy': valid_instance_requests(pb.DestroyRequest),
    'PowerOff': valid_instance_requests(pb.PowerOffRequest),
    'PowerOn': valid_instance_requests(pb.PowerOnRequest),
    'Reboot': valid_instance_requests(pb.RebootRequest),
}
REQUESTS = {
    method: st.one_of(HOSTILE[method], HOSTILE[method], VALID[method]) for method in HOSTILE
}

# --- The oracle: is a request valid by the contract? ---

_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
_HEX16 = re.compile(r'[0-9a-f]{16}')


def _uuid_ok(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value and bool(_UUID.fullmatch(value))
    except ValueError:
        return False


def _mac_ok(value: str) -> bool:
    parts = value.lower().split(':')
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in '0123456789abcdef' for c in p) for p in parts
    ):
        return False
    first = int(parts[0], 16)
    return not first & 1 and bool(first & 2)  # unicast, locally administered


def _wwpn_ok(value: str) -> bool:
    value = value.strip().lower()
    value = value[2:] if value.startswith('0x') else value
    return bool(_HEX16.fullmatch(value))


def _nic_ok(nic: pb.Nic) -> bool:
    return (
        nic.vif_type == contract.DPM_VSWITCH
        and not nic.HasField('vlan')
        and _uuid_ok(nic.port_id)
        and _uuid_ok(nic.vswitch_object_id)
        and _mac_ok(nic.mac)
    )


def _flavor_ok(request) -> bool:
    return (
        request.HasField('flavor')
        and 1 <= request.flavor.vcpus <= 512
        and 1 <= request.flavor.memory_mb <= 64 * 1024 * 1024
    )


def valid(method: str, request) -> bool:
    """True if a request passes every check that needs no HMC."""
    if request.host not in HOSTS:
        return False
    if method in ('GetHostStatus', 'ListInstances'):
        return True
    if not _uuid_ok(request.instance_uuid):
        return False
    if method == 'PrepareInstance':
        return _flavor_ok(request)
    if method != 'Spawn':
        return True
    ports = [nic.port_id for nic in request.nics]
    volume = request.boot_volume
    return (
        _flavor_ok(request)
        and len(request.nics) <= contract.MAX_NICS
        and all(_nic_ok(nic) for nic in request.nics)
        and len(set(ports)) == len(ports)
        and request.HasField('boot_volume')
        and len(volume.initiator_target_map) > 0
        and volume.target_lun <= 0xFFFFFFFF  # os-brick's longest FCP LUN form: 4 bytes
        and all(
            _wwpn_ok(entry.initiator_wwpn)
            and entry.target_wwpns
            and all(_wwpn_ok(t) for t in entry.target_wwpns)
            for entry in volume.initiator_target_map
        )
    )


# --- Running the cases ---

REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
MUTATING = {'Destroy', 'PowerOff', 'PowerOn', 'Reboot', 'PrepareInstance', 'Spawn'}
ON_AN_INSTANCE = {'GetInstanceInfo', 'GetVolumeConnector', 'PowerOff', 'PowerOn', 'Reboot'}
VHBA_HOSTS = {'cpc1', 'cpc10'}  # z13: vHBAs; z14host has storage groups; classic is not DPM
DPM_HOSTS = {*VHBA_HOSTS, 'z14host'}
ANY = None

# The only failures of a valid request: the state of the HMC, never the request.
# (code, ErrorInfo reason) -> (the methods, the hosts) it may answer; ANY: all of them.
STATE_FAILURES = {
    # No partition for the instance (Destroy succeeds instead: it is idempotent).
    (grpc.StatusCode.NOT_FOUND, 'INSTANCE_NOT_FOUND'): (ON_AN_INSTANCE, ANY),
    # The CPC subset (max_processors, max_memory) cannot hold the flavor.
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 'HOST_CAPACITY_EXCEEDED'): (
        {'PrepareInstance', 'Spawn'},
        DPM_HOSTS,
    ),
    # The classic-mode CPC: not in DPM mode, so its host fails its checks.
    (grpc.StatusCode.FAILED_PRECONDITION, 'CPC_NOT_USABLE'): (ANY, {'classic'}),
    (grpc.StatusCode.FAILED_PRECONDITION, 'HOST_NOT_READY'): (ANY, {'classic'}),
    # The z14 manages FC storage with storage groups: a Spawn there needs the
    # volume's size (the storage volume is defined with it).
    (grpc.StatusCode.INVALID_ARGUMENT, 'INVALID_FIELD'): ({'Spawn'}, {'z14host'}),
    # A virtual switch of another CPC than the host's.
    (grpc.StatusCode.NOT_FOUND, 'HMC_OBJECT_NOT_FOUND'): ({'Spawn'}, {'z14host', 'classic'}),
    # The boot volume's initiators are not the partition's vHBAs (unless prepared:
    # then they are, see prepare()).
    (grpc.StatusCode.FAILED_PRECONDITION, 'BOOT_VOLUME_UNUSABLE'): (
        {'Spawn'},
        {*VHBA_HOSTS, 'z14host'},
    ),
}
# Examples per RPC on the in-process servicer; the sum is the bulk of the count.
EXAMPLES = {
    'GetHostStatus': 1000,
    'ListInstances': 1000,
    'GetInstanceInfo': 900,
    'GetVolumeConnector': 900,
    'PrepareInstance': 1300,
    'Spawn': 1500,
    'Destroy': 900,
    'PowerOff': 900,
    'PowerOn': 900,
    'Reboot': 900,
}
# A third of the cases come from VALID: at least this share must be valid by the
# oracle, and (where the HMC state allows it) some must succeed.
VALID_SHARE = 0.2
ACCEPTED_SHARE = 0.05  # measured: 0.1 to 0.5 per RPC
# Spawn: its valid cases also fail on the z14 and classic hosts and on capacity
# (a flavor resized into a full subset); measured 0.03 to 0.07.
ACCEPTED_SHARE_BY_METHOD = {'Spawn': 0.015}
SOCKET_EXAMPLES = 60  # per RPC, over the unix socket
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Context:
    """The part of grpc.ServicerContext the servicer uses."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
        self.details = ''
        self.trailing: tuple = ()

    def time_remaining(self) -> float:
        return 10.0

    def is_active(self) -> bool:
        return True

    def add_callback(self, callback) -> bool:
        return True

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = metadata

    def set_code(self, code) -> None:
        self.code = code

    def set_details(self, details) -> None:
        self.details = details


def reason_of(trailing) -> str:
    """The ErrorInfo reason of a failed call's trailing metadata ('' if none)."""
    for key, value in trailing or ():
        if key == 'grpc-status-details-bin':
            info = error_details_pb2.ErrorInfo()
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Unpack(info):
                    return info.reason
    return ''


def names(hmc) -> set[str]:
    return {p.name for cpc in hmc.cpcs.list() for p in cpc.partitions.list()}


def owned_by_another(request) -> bool:
    """The mock's partition of "another cloud" is, by its name, host cpc10's own."""
    return request.host == 'cpc10' and getattr(request, 'instance_uuid', '') == CPC10_UUID


def judge(method, request, code, reason, details, requests, hmc, before, prepared=False) -> None:
    """The properties every case must have; ``requests``: HMC requests it made."""
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (code, details)
    assert len(details) < 1000, 'an error message echoes unbounded input'
    if not valid(method, request):
        assert code in REFUSALS, (code, details)
        assert requests == 0, f'{requests} HMC requests for an invalid request ({details})'
    elif code != grpc.StatusCode.OK:
        # A valid request is accepted, or refused for the state of the HMC only.
        methods, hosts = STATE_FAILURES.get((code, reason), ((), ()))
        assert (methods is ANY or method in methods) and (hosts is ANY or request.host in hosts), (
            f'valid {method} on {request.host} refused: {code.name} {reason}: {details}'
        )
        assert not (prepared and reason in ('INSTANCE_NOT_FOUND', 'BOOT_VOLUME_UNUSABLE')), (
            f'{method} of a prepared instance: {code.name} {reason}: {details}'
        )
    if code != grpc.StatusCode.OK:
        assert names(hmc) == before, 'a failed call left partitions behind'


def prepare(servicer, message):
    """PrepareInstance for a valid request's instance on a vHBA host; the request to send.

    The partition then exists, and a Spawn's boot volume names its vHBAs as the
    initiators (the targets of the first entry stay): the request stays valid,
    and only the HMC state decides the outcome. None if nothing was prepared.
    """
    if message.host not in VHBA_HOSTS:
        return None
    small = pb.Flavor(vcpus=1, memory_mb=512)
    # Prepared as Nova prepares: with the flavor the spawn brings, where the host
    # holds it (else the smallest, and the spawn resizes the stopped partition).
    flavors = [small]
    if isinstance(message, pb.SpawnRequest) and _flavor_ok(message):
        flavors.insert(0, message.flavor)
    for flavor in flavors:
        context = Context()
        reply = servicer.PrepareInstance(
            pb.PrepareInstanceRequest(
                host=message.host, instance_uuid=message.instance_uuid, flavor=flavor
            ),
            context,
        )
        if context.code != grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
    assert context.code == grpc.StatusCode.OK, (context.code, context.details)
    request = type(message)()
    request.CopyFrom(message)
    if isinstance(request, pb.SpawnRequest):
        targets = list(request.boot_volume.initiator_target_map[0].target_wwpns)
        del request.boot_volume.initiator_target_map[:]
        request.boot_volume.initiator_target_map.extend(
            pb.InitiatorTargets(initiator_wwpn=w, target_wwpns=targets) for w in reply.wwpns
        )
    return request


@pytest.fixture(scope='module')
def servicer(tmp_path_factory, simulators):
    tmp = tmp_path_factory.mktemp('fuzz')
    simulator = simulators()
    pristine(simulator)
    config = load_config(write_config(tmp / 'f.conf', tmp / 'unused.sock', hmc=simulator))
    log = RequestLog()
    backend = Backend(config, interceptors=[log])
    yield backend, log, simulator.sim
    backend.pool.close()


@pytest.mark.parametrize('method', sorted(EXAMPLES))
def test_hostile_requests_on_the_servicer(servicer, request, method):
    backend, log, sim = servicer
    hmc = sim.hmc
    handler = getattr(backend.servicer, method)
    state = snapshot(hmc)
    ran = []
    accepted = []
    valid_hosts = set()
    accepted_hosts = set()

    @settings(FUZZ, max_examples=EXAMPLES[method])
    @given(message=REQUESTS[method], prepared=st.booleans())
    def case(message, prepared):
        if method in MUTATING:
            assume(not owned_by_another(message))
        is_valid = valid(method, message)
        ran.append(is_valid)
        if is_valid:
            valid_hosts.add(message.host)
        start = names(hmc)
        prepared = (
            prepared
            and is_valid
            and method not in ('GetHostStatus', 'ListInstances')
            and not owned_by_another(message)
        )
        try:
            if prepared:
                message = prepare(backend.servicer, message) or message
                prepared = names(hmc) != start
            before = names(hmc)
            log.clear()
            context = Context()
            handler(message, context)
            reason = reason_of(context.trailing)
            judge(
                method,
                message,
                context.code,
                reason,
                context.details,
                log.count(),
                hmc,
                before,
                prepared,
            )
            accepted.append(is_valid and context.code == grpc.StatusCode.OK)
            if accepted[-1]:
                accepted_hosts.add(message.host)
        finally:
            if names(hmc) != start:
                # What the case created (a prepared or spawned partition): remove it again.
                backend.servicer.Destroy(
                    pb.DestroyRequest(host=message.host, instance_uuid=message.instance_uuid),
                    Context(),
                )
        assert names(hmc) == start

    case()
    count_cases(request.config, 'fuzz: hostile requests, in-process servicer', len(ran))
    count_cases(
        request.config, 'fuzz: in-process cases valid by the oracle (reach the HMC)', sum(ran)
    )
    count_cases(request.config, 'fuzz: in-process valid cases accepted', sum(accepted))
    assert len(ran) >= EXAMPLES[method] * 0.9
    if method in ('GetHostStatus', 'ListInstances'):
        # Few valid requests exist (one per host), and hypothesis does not repeat one.
        assert valid_hosts == set(HOSTS), f'no valid case for {set(HOSTS) - valid_hosts}'
        assert accepted_hosts >= DPM_HOSTS, f'refused for {DPM_HOSTS - accepted_hosts}'
    else:
        assert sum(ran) >= EXAMPLES[method] * VALID_SHARE, f'only {sum(ran)} valid cases'
        # Prepared instances on the vHBA hosts: the HMC's state lets these succeed.
        accepted_share = sum(accepted) / EXAMPLES[method]
        floor = ACCEPTED_SHARE_BY_METHOD.get(method, ACCEPTED_SHARE)
        assert accepted_share >= floor, f'only {sum(accepted)} valid cases accepted'
    assert snapshot(hmc) == state, 'an HMC object changed'


@pytest.fixture(scope='module')
def on_socket(tmp_path_factory, simulators):
    tmp = tmp_path_factory.mktemp('fuzz-socket')
    token_file = tmp / 'cpc1.token'
    token_file.write_text(TOKEN + '\n')
    simulator = simulators()
    pristine(simulator)
    config = load_config(
        write_config(
            tmp / 'f.conf',
            tmp / 'f.sock',
            extra={'host:cpc1': {'token_file': str(token_file)}},
            hmc=simulator,
        )
    )
    log = RequestLog()
    backend = Backend(config, interceptors=[log])
    backend.start()
    # The reachability probe and the host checks make HMC requests of their own.
    wait_for(lambda: backend.pool.reachability.reachable and backend.hosts_checked())
    channel = grpc.insecure_channel(backend.address)
    yield backend, log, channel, simulator.sim
    channel.close()
    backend.stop(grace=1)


TOKEN = 'fuzz-token-of-cpc1-0123456789'


@pytest.mark.parametrize('method', sorted(EXAMPLES))
def test_hostile_requests_over_the_socket(on_socket, request, method):
    backend, log, channel, sim = on_socket
    hmc = sim.hmc
    call = getattr(pb_grpc.DPMHostStub(channel), method)
    state = snapshot(hmc)
    ran = []

    @settings(FUZZ, max_examples=SOCKET_EXAMPLES)
    @given(message=REQUESTS[method], token=st.sampled_from([None, TOKEN, TOKEN + 'x', '']))
    def case(message, token):
        if method in MUTATING:
            assume(not owned_by_another(message))
        ran.append(1)
        before = names(hmc)
        log.clear()
        metadata = None if token is None else [('authorization', f'Bearer {token}')]
        try:
            call(message, timeout=10, metadata=metadata)
            code, reason, details = grpc.StatusCode.OK, '', ''
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ''
            reason = reason_of(exc.trailing_metadata())
        # Only cpc1 has a token here; the other hosts are open to every caller.
        if (message.host in HOSTS and message.host != 'cpc1') or (
            token == TOKEN and message.host == 'cpc1'
        ):
            judge(method, message, code, reason, details, log.count(), hmc, before)
        else:
            # Nothing else of the request is looked at: no token, no answer.
            want = (
                grpc.StatusCode.PERMISSION_DENIED
                if token == TOKEN
                else (grpc.StatusCode.UNAUTHENTICATED)
            )
            assert code == want, (code, details)
            assert log.count() == 0
        if code == grpc.StatusCode.OK and method in ('PrepareInstance', 'Spawn'):
            backend.servicer.Destroy(
                pb.DestroyRequest(host=message.host, instance_uuid=message.instance_uuid),
                Context(),
            )
        assert names(hmc) == before

    case()
    count_cases(request.config, 'fuzz: hostile requests, unix socket', len(ran))
    assert snapshot(hmc) == state
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    pb_grpc.DPMHostStub(channel).ListInstances(pb.ListInstancesRequest(host='cpc10'), timeout=5)
