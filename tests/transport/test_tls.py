"""TCP with mutual TLS: only clients with a certificate from the configured CA get in.

Certificates are made at test time with the openssl command line: a CA, a
server certificate for localhost/127.0.0.1, a client certificate from the
CA, and a client certificate from another CA. Plaintext TCP is refused at
load unless the address is loopback and ``allow_insecure_loopback`` is set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from dpmtest import load_config
from dpmtest import wait_for
from dpmtest import write_config

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import config as config_mod

T = 10
OPENSSL = shutil.which('openssl')
pytestmark = pytest.mark.skipif(OPENSSL is None, reason='the openssl command is not installed')
TOKEN = 'tls-and-a-token-for-cpc1-0123456789'


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
        '-nodes', '-keyout', f'{name}.key', '-out', f'{name}.pem', '-days', '2',
        '-subj', f'/CN={name}',
        cwd=directory,
    )  # fmt: skip


def make_cert(directory: Path, name: str, ca: str, extensions: str) -> None:
    (directory / f'{name}.ext').write_text(extensions + '\n')
    openssl(
        'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', f'{name}.key', '-out', f'{name}.csr', '-subj', f'/CN={name}',
        cwd=directory,
    )  # fmt: skip
    openssl(
        'x509', '-req', '-in', f'{name}.csr', '-CA', f'{ca}.pem', '-CAkey', f'{ca}.key',
        '-CAcreateserial', '-out', f'{name}.pem', '-days', '2', '-extfile', f'{name}.ext',
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope='module')
def pki(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp('pki')
    make_ca(directory, 'ca')
    make_ca(directory, 'rogue-ca')
    make_cert(
        directory,
        'server',
        'ca',
        'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth',
    )
    make_cert(directory, 'client', 'ca', 'extendedKeyUsage=clientAuth')
    make_cert(directory, 'rogue-client', 'rogue-ca', 'extendedKeyUsage=clientAuth')
    return directory


@pytest.fixture
def tls_backend(backend_factory, pki, tmp_path):
    token = tmp_path / 'cpc1.token'
    token.write_text(TOKEN)
    running = backend_factory(
        extra={
            'backend': {
                'listen': '127.0.0.1:0',
                'tls_cert_file': str(pki / 'server.pem'),
                'tls_key_file': str(pki / 'server.key'),
                'tls_client_ca_file': str(pki / 'ca.pem'),
            },
            'host:cpc1': {'token_file': str(token)},
        }
    )
    wait_for(lambda: running.backend.pool.reachability.reachable)
    return running


def channel(running, pki: Path, client: str | None, ca: str = 'ca') -> grpc.Channel:
    key = cert = None
    if client:
        key = (pki / f'{client}.key').read_bytes()
        cert = (pki / f'{client}.pem').read_bytes()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / f'{ca}.pem').read_bytes(),
        private_key=key,
        certificate_chain=cert,
    )
    port = running.backend.address.rpartition(':')[2]
    return grpc.secure_channel(
        f'localhost:{port}', credentials, options=[('grpc.use_local_subchannel_pool', 1)]
    )


def get_status(chan: grpc.Channel, host: str = 'cpc10', metadata=None):
    return pb_grpc.DPMHostStub(chan).GetHostStatus(
        pb.GetHostStatusRequest(host=host), timeout=T, metadata=metadata
    )


def test_a_client_certificate_from_the_ca_gets_in(tls_backend, pki):
    with channel(tls_backend, pki, 'client') as chan:
        assert get_status(chan).status.host == 'cpc10'
        # TLS authenticates the caller; the token still binds it to its hosts.
        reply = get_status(chan, 'cpc1', [('authorization', f'Bearer {TOKEN}')])
        assert reply.status.host == 'cpc1'
        with pytest.raises(grpc.RpcError) as caught:
            get_status(chan, 'cpc1')
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ('client', 'trusted'),
    [(None, 'ca'), ('rogue-client', 'ca'), ('client', 'rogue-ca')],
    ids=['no-client-cert', 'client-cert-of-another-ca', 'server-cert-not-trusted'],
)
def test_connections_without_mutual_trust_are_refused(tls_backend, pki, client, trusted):
    tls_backend.log.clear()
    with channel(tls_backend, pki, client, trusted) as chan, pytest.raises(grpc.RpcError) as caught:
        get_status(chan)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert tls_backend.log.requests == []


def test_dpm_backend_ctl_takes_the_same_tls_files_and_token(tls_backend, pki, tmp_path, capsys):
    import json

    from dpm_backend import ctl

    token = tmp_path / 'token'
    token.write_text(TOKEN)
    port = tls_backend.backend.address.rpartition(':')[2]

    def run(client: str, *argv: str) -> tuple[int, str, str]:
        status = ctl.main(
            [
                *('--backend', f'localhost:{port}', '--tls-ca-file', str(pki / 'ca.pem')),
                *('--tls-cert-file', str(pki / f'{client}.pem')),
                *('--tls-key-file', str(pki / f'{client}.key')),
                *argv,
            ]
        )
        return status, *capsys.readouterr()

    status, out, err = run('client', '--token-file', str(token), '--json', 'why', 'cpc1')
    assert status == 0, err
    assert json.loads(out)['status']['host'] == 'cpc1'
    # A client certificate of another CA does not get in.
    status, out, err = run('rogue-client', 'why', 'cpc10')
    assert (status, out) == (1, '')
    assert 'UNAVAILABLE' in err and err.count('\n') == 1


def test_plaintext_to_the_tls_port_is_refused(tls_backend):
    with (
        grpc.insecure_channel(tls_backend.backend.address) as chan,
        pytest.raises(grpc.RpcError) as caught,
    ):
        get_status(chan)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_tcp_needs_loopback_and_the_explicit_flag(tmp_path, pki):
    def load(**backend):
        path = write_config(tmp_path / 'c.conf', tmp_path / 's.sock', extra={'backend': backend})
        return load_config(path)

    with pytest.raises(config_mod.ConfigError, match='allow_insecure_loopback'):
        load(listen='127.0.0.1:50051')
    with pytest.raises(config_mod.ConfigError, match='mutual TLS'):
        load(listen='192.0.2.10:50051', allow_insecure_loopback='true')
    assert load(listen='[::1]:50051', allow_insecure_loopback='true').listen.unix_path is None
    tls = {
        'tls_cert_file': str(pki / 'server.pem'),
        'tls_key_file': str(pki / 'server.key'),
        'tls_client_ca_file': str(pki / 'ca.pem'),
    }
    assert load(listen='192.0.2.10:50051', **tls).listen.tls_cert_file
    with pytest.raises(config_mod.ConfigError, match='go together'):
        load(listen='192.0.2.10:50051', tls_cert_file=tls['tls_cert_file'])


@pytest.mark.parametrize('option', ['tls_cert_file', 'tls_key_file', 'tls_client_ca_file'])
def test_a_tls_file_without_pem_content_fails_at_load_naming_the_option(tmp_path, pki, option):
    files = {
        'tls_cert_file': str(pki / 'server.pem'),
        'tls_key_file': str(pki / 'server.key'),
        'tls_client_ca_file': str(pki / 'ca.pem'),
    }
    garbage = tmp_path / 'garbage.pem'
    garbage.write_text('not a certificate\n')
    # A certificate where the key belongs (and vice versa) is as wrong as garbage.
    files[option] = str(pki / 'server.key' if option != 'tls_key_file' else pki / 'server.pem')
    for wrong in (files[option], str(garbage)):
        files[option] = wrong
        path = write_config(
            tmp_path / 'c.conf',
            tmp_path / 's.sock',
            extra={'backend': {'listen': '192.0.2.10:50051', **files}},
        )
        with pytest.raises(config_mod.ConfigError, match=rf'\[backend\] {option}'):
            load_config(path)


def test_an_unknown_socket_group_stops_the_start_before_anything_is_bound(tmp_path):
    socket_path = tmp_path / 'g.sock'
    path = write_config(
        tmp_path / 'g.conf',
        socket_path,
        extra={'backend': {'socket_group': 'no-such-group-for-dpm'}},
    )
    result = subprocess.run(
        [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert '[backend] socket_group' in result.stderr
    assert not socket_path.exists()
