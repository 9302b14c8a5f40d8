"""Per-host bearer tokens: a caller acts only for the hosts its token names.

Config: ``[host:<name>] token_file`` (or ``token``, or the systemd credential
``token-<name>``); the call carries ``authorization: Bearer <token>``. No or
an unknown token: UNAUTHENTICATED. A valid token for other hosts:
PERMISSION_DENIED. Both with ErrorInfo, before any other check and without
any HMC request. Health and reflection stay open.
"""

from __future__ import annotations

import hmac
import logging

import grpc
import pytest
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import wait_for
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha import reflection_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import auth

T = 10
TOKEN_A = 'token-of-cpc1-and-z14host-0123456789'  # one caller, two hosts
TOKEN_B = 'token-of-cpc10-abcdefghijklmnopqrstu'
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture
def guarded(backend_factory, tmp_path):
    files = {}
    for host, token in (('cpc1', TOKEN_A), ('z14host', TOKEN_A), ('cpc10', TOKEN_B)):
        files[host] = tmp_path / f'{host}.token'
        files[host].write_text(token + '\n')
    # Host "classic" has no token: open to every caller of the socket.
    running = backend_factory(
        extra={f'host:{host}': {'token_file': str(path)} for host, path in files.items()}
    )
    # The first reachability probe is an HMC request of its own; let it pass.
    wait_for(lambda: running.backend.pool.reachability.reachable)
    return running


def bearer(token: str) -> list[tuple[str, str]]:
    return [('authorization', f'Bearer {token}')]


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    trailing = dict(exc.trailing_metadata())
    status = status_pb2.Status.FromString(trailing['grpc-status-details-bin'])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


def call(running, method: str, request, metadata=None):
    reply = getattr(running.stub, method)(request, timeout=T, metadata=metadata)
    if method == 'WatchInstances':
        try:
            return next(reply)  # the stream's first response (its current state)
        finally:
            reply.cancel()
    return reply


def every_rpc(host: str):
    ids = {'host': host, 'instance_uuid': new_uuid()}
    return [
        ('GetHostStatus', pb.GetHostStatusRequest(host=host)),
        ('ListInstances', pb.ListInstancesRequest(host=host)),
        ('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids)),
        ('GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids)),
        ('PrepareInstance', pb.PrepareInstanceRequest(**ids, flavor=flavor())),
        ('Spawn', pb.SpawnRequest(**ids, flavor=flavor())),
        ('Destroy', pb.DestroyRequest(**ids)),
        ('PowerOff', pb.PowerOffRequest(**ids)),
        ('PowerOn', pb.PowerOnRequest(**ids)),
        ('Reboot', pb.RebootRequest(**ids)),
        ('AttachVolume', pb.AttachVolumeRequest(**ids)),
        ('DetachVolume', pb.DetachVolumeRequest(**ids, volume_id=new_uuid())),
        ('WatchInstances', pb.WatchInstancesRequest(host=host)),
    ]


def test_every_rpc_names_every_method_that_acts_for_a_host():
    methods = set(pb.DESCRIPTOR.services_by_name['DPMHost'].methods_by_name)
    assert {m for m, _ in every_rpc('cpc1')} == methods - {'ListHosts'}


@pytest.mark.parametrize(
    ('metadata', 'code', 'reason'),
    [
        (None, UNAUTHENTICATED, 'UNAUTHENTICATED'),
        (bearer('wrong-token-0123456789abcdef'), UNAUTHENTICATED, 'UNAUTHENTICATED'),
        (bearer(TOKEN_A[:-1]), UNAUTHENTICATED, 'UNAUTHENTICATED'),
        (bearer(TOKEN_A + ' '), UNAUTHENTICATED, 'UNAUTHENTICATED'),
        ([('authorization', TOKEN_A)], UNAUTHENTICATED, 'UNAUTHENTICATED'),
        ([('authorization', f'Basic {TOKEN_A}')], UNAUTHENTICATED, 'UNAUTHENTICATED'),
        ([('authorization', 'Bearer ')], UNAUTHENTICATED, 'UNAUTHENTICATED'),
        (bearer(TOKEN_A) + bearer(TOKEN_B), UNAUTHENTICATED, 'UNAUTHENTICATED'),
        (bearer(TOKEN_B), PERMISSION_DENIED, 'PERMISSION_DENIED'),  # cpc10's, for cpc1
    ],
    ids=[
        'none',
        'wrong',
        'truncated',
        'padded',
        'no-scheme',
        'basic',
        'empty',
        'two',
        'another-hosts',
    ],
)
def test_every_rpc_without_the_hosts_token_is_refused_before_anything_else(
    guarded, metadata, code, reason
):
    before = {p.name for p in guarded.cpc().partitions.list()}
    guarded.log.clear()
    for method, request in every_rpc('cpc1'):
        with pytest.raises(grpc.RpcError) as caught:
            call(guarded, method, request, metadata)
        assert caught.value.code() == code, method
        info = error_info(caught.value)
        assert (info.reason, info.domain) == (reason, 'dpm_api.v1')
        assert TOKEN_A not in caught.value.details() and TOKEN_B not in caught.value.details()
    assert guarded.log.requests == []
    assert {p.name for p in guarded.cpc().partitions.list()} == before


def test_the_right_token_works_for_each_of_its_hosts_and_only_those(guarded):
    assert call(guarded, 'ListInstances', pb.ListInstancesRequest(host='cpc1'), bearer(TOKEN_A))
    # The lower-case scheme is the same scheme.
    reply = call(
        guarded,
        'GetHostStatus',
        pb.GetHostStatusRequest(host='z14host'),
        [('authorization', f'bearer {TOKEN_A}')],
    )
    assert reply.status.host == 'z14host'
    call(guarded, 'ListInstances', pb.ListInstancesRequest(host='cpc10'), bearer(TOKEN_B))
    for host, token in (('cpc10', TOKEN_A), ('z14host', TOKEN_B), ('cpc1', TOKEN_B)):
        with pytest.raises(grpc.RpcError) as caught:
            call(guarded, 'ListInstances', pb.ListInstancesRequest(host=host), bearer(token))
        assert caught.value.code() == PERMISSION_DENIED
        assert error_info(caught.value).metadata['host'] == host


def test_host_names_crafted_around_a_granted_host_are_denied(guarded):
    guarded.log.clear()
    for host in ('cpc1 ', 'CPC1', 'cpc', 'cpc1.*', 'cpc10', 'cpc1\x00', '', 'x' * 5000):
        with pytest.raises(grpc.RpcError) as caught:
            call(guarded, 'ListInstances', pb.ListInstancesRequest(host=host), bearer(TOKEN_A))
        assert caught.value.code() == PERMISSION_DENIED, host
        assert len(caught.value.details()) < 300
    assert guarded.log.requests == []


def test_unknown_hosts_reveal_nothing_without_a_token(guarded):
    with pytest.raises(grpc.RpcError) as caught:
        call(guarded, 'ListInstances', pb.ListInstancesRequest(host='nope'))
    assert caught.value.code() == UNAUTHENTICATED  # not NOT_FOUND: no host enumeration


def test_a_host_without_a_token_is_open_and_health_and_reflection_need_none(guarded):
    with pytest.raises(grpc.RpcError) as caught:
        call(guarded, 'GetHostStatus', pb.GetHostStatusRequest(host='classic'))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # classic mode CPC
    health = health_pb2_grpc.HealthStub(guarded.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=T).status in (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    stub = reflection_pb2_grpc.ServerReflectionStub(guarded.channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services='')]), timeout=T
    )
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert 'dpm_api.v1.DPMHost' in names


def test_tokens_are_never_logged_even_at_debug(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    for token in (TOKEN_A, TOKEN_B, 'wrong-token-0123456789abcdef'):
        for method, request in every_rpc('cpc1')[:3]:
            try:
                call(guarded, method, request, bearer(token))
            except grpc.RpcError as exc:
                assert token not in exc.details()
    assert 'refused' in caplog.text
    for token in (TOKEN_A, TOKEN_B, 'wrong-token-0123456789abcdef'):
        assert token not in caplog.text
    assert TOKEN_A not in repr(guarded.backend.config)


def test_every_token_is_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest

    def recording(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, 'compare_digest', recording)
    checker = auth.TokenChecker({'a': 'x' * 20, 'b': 'y' * 20}, {'a', 'b', 'c'})
    assert checker.check('a', 'x' * 20) is None
    # Every configured token is compared, whichever matches, so timing says nothing.
    assert sorted(compared) == [b'x' * 20, b'y' * 20]
    assert checker.check('c', None) is None  # an open host
    assert checker.check('b', 'x' * 20).code == PERMISSION_DENIED
    assert checker.check('a', 'z' * 20).code == UNAUTHENTICATED


def test_list_hosts_shows_the_hosts_a_caller_may_act_for_and_no_other(guarded):
    def listed(metadata=None):
        reply = call(guarded, 'ListHosts', pb.ListHostsRequest(), metadata)
        return [host.host for host in reply.hosts]

    assert listed(bearer(TOKEN_A)) == ['cpc1', 'z14host', 'classic']  # classic has no token
    assert listed(bearer(TOKEN_B)) == ['cpc10', 'classic']
    assert listed() == ['classic']
    # Two tokens are no token (as for every RPC): the hosts without one.
    assert listed(bearer(TOKEN_A) + bearer(TOKEN_B)) == ['classic']
    with pytest.raises(grpc.RpcError) as caught:
        listed(bearer('wrong-token-0123456789abcdef'))
    assert caught.value.code() == UNAUTHENTICATED
    assert error_info(caught.value).reason == 'UNAUTHENTICATED'


def test_without_a_token_list_hosts_reveals_no_host_where_every_host_has_one():
    checker = auth.TokenChecker({'a': 'x' * 20, 'b': 'y' * 20}, {'a', 'b'})
    assert checker.listed('x' * 20) == {'a'}
    for token in (None, 'z' * 20, ''):
        refusal = checker.listed(token)
        assert not isinstance(refusal, frozenset) and refusal.code == UNAUTHENTICATED, token


def test_require_tokens_refuses_to_start_with_an_open_host(tmp_path):
    from dpmtest import load_config
    from dpmtest import write_config

    from dpm_backend import config as config_mod

    path = write_config(
        tmp_path / 'c.conf',
        tmp_path / 's.sock',
        extra={'backend': {'require_tokens': 'true'}, 'host:cpc1': {'token': TOKEN_A}},
    )
    with pytest.raises(config_mod.ConfigError, match='require_tokens') as caught:
        load_config(path)
    assert 'cpc10' in str(caught.value) and TOKEN_A not in str(caught.value)
