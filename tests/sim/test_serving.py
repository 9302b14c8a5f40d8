"""Serving: TLS, latency, outages, the request log, the admin interface and the command."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest
import requests
import zhmcclient
from sim.simtest import PASSWORD
from sim.simtest import STOPPED_PARTITION
from sim.simtest import USERID
from sim.simtest import connect
from sim.simtest import partition

from dpm_hmc_sim import tls
from dpm_hmc_sim.server import loopback_address
from dpm_hmc_sim.testing import SimulatorProcess


def test_the_certificate_is_verified_with_the_ca_file(hmc, cert_dir):
    assert stat.S_IMODE((cert_dir / tls.KEY_FILE).stat().st_mode) == 0o600
    for host in ('127.0.0.1', 'localhost'):
        url = f'https://{host}:{hmc.port}/api/version'
        assert requests.get(url, verify=hmc.ca_file, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f'https://127.0.0.1:{hmc.port}/api/version', timeout=10)
    context = ssl.create_default_context(cafile=hmc.ca_file)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    raw = socket.create_connection((hmc.host, hmc.port))
    with context.wrap_socket(raw, server_hostname='localhost') as connection:
        assert connection.version() in ('TLSv1.2', 'TLSv1.3')


def test_a_served_simulator_starts_in_well_under_a_second(serve):
    begin = time.monotonic()
    hmc = serve('2.16.0')
    assert time.monotonic() - begin < 1.0
    assert connect(hmc).query_api_version()['hmc-version'] == '2.16.0'


def test_latency_is_added_to_every_request(serve):
    hmc = serve(latency=0.2)
    client = connect(hmc)
    client.query_api_version()
    begin = time.monotonic()
    client.query_api_version()
    assert time.monotonic() - begin >= 0.2
    hmc.sim.configure(latency=0)
    begin = time.monotonic()
    client.query_api_version()
    assert time.monotonic() - begin < 0.2


def test_an_outage_is_a_connection_error_until_it_ends(hmc):
    client = connect(hmc)
    assert len(client.cpcs.list()) == 3
    hmc.sim.configure(enabled=False)
    with pytest.raises(zhmcclient.ConnectionError):
        client.cpcs.list()
    with pytest.raises(zhmcclient.ConnectionError):
        connect(hmc).query_api_version()
    hmc.sim.configure(enabled=True)
    assert len(client.cpcs.list()) == 3
    assert [r.status for r in hmc.sim.requests() if r.status == 0]  # dropped, unanswered


def test_the_request_log_records_status_reason_and_userid(hmc):
    client = connect(hmc)
    part = partition(client, STOPPED_PARTITION)
    with pytest.raises(zhmcclient.HTTPError):
        part.stop(wait_for_completion=False)
    log = hmc.sim.requests()
    assert (log[-1].method, log[-1].status, log[-1].reason, log[-1].userid) == (
        'POST',
        409,
        1,
        USERID,
    )
    assert log[-1].uri == f'{part.uri}/operations/stop'
    assert all(record.time > 0 for record in log)
    hmc.sim.clear_requests()
    assert hmc.sim.requests() == []


def test_the_admin_interface_answers_over_https_during_an_outage(hmc):
    base = f'https://{hmc.host}:{hmc.port}/_sim'

    def call(method: str, path: str, body: dict | None = None):
        answer = requests.request(
            method, f'{base}/{path}', json=body, verify=hmc.ca_file, timeout=10
        )
        return answer.status_code, (answer.json() if answer.content else None)

    assert call('POST', 'config', {'enabled': False})[1]['enabled'] is False
    assert call('GET', 'config')[1]['enabled'] is False
    assert call('GET', 'state')[0] == 200
    assert call('POST', 'config', {'enabled': True})[1]['enabled'] is True
    assert call('POST', 'config', {'no-such-setting': 1})[0] == 400
    assert call('POST', 'config', {'latency': -1})[0] == 400
    outcome = {'partition': STOPPED_PARTITION, 'operation': 'start', 'outcome': 'paused'}
    assert call('POST', 'outcome', outcome)[0] == 204
    assert call('POST', 'outcome', {**outcome, 'outcome': 'melted'})[0] == 400
    assert call('POST', 'sessions/expire')[1] == {'expired': 0}
    assert call('GET', 'sessions')[1]['open'] == 0
    assert call('POST', 'reset')[0] == 204
    assert call('GET', 'nothing')[0] == 404
    assert hmc.sim.requests() == []  # admin requests are not HMC requests


def test_only_loopback_addresses_are_served():
    assert loopback_address('127.0.0.1:0') == ('127.0.0.1', 0)
    assert loopback_address('localhost:6794') == ('127.0.0.1', 6794)
    assert loopback_address('[::1]:6794') == ('::1', 6794)
    for refused in ('0.0.0.0:6794', '192.0.2.1:6794', 'hmc.example.com:6794', '127.0.0.1'):
        with pytest.raises(ValueError):
            loopback_address(refused)


def test_the_command_refuses_a_non_loopback_listener(tmp_path):
    password_file = tmp_path / 'password'
    password_file.write_text(PASSWORD)
    done = subprocess.run(
        [sys.executable, '-m', 'dpm_hmc_sim', '--listen', '0.0.0.0:6794', '--userid', USERID,
         '--password-file', str(password_file), '--cert-dir', str(tmp_path / 'certs')],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ''
    assert 'loopback' in done.stderr


@pytest.mark.parametrize(
    ('text', 'why'),
    [
        ('hmc: [1, 2\n', "not valid YAML: line 2, column 1: expected ',' or ']'"),
        ('a: b: c\n', 'not valid YAML: line 1, column 5: mapping values are not allowed here'),
        ('- 1\n', 'needs hmc_definition.api_version and consoles[0].properties.version'),
        (None, 'No such file or directory'),
    ],
    ids=['unclosed', 'mapping', 'shape', 'missing'],
)
def test_a_bad_definition_file_is_a_one_line_error_with_exit_2(tmp_path, text, why):
    password_file = tmp_path / 'password'
    password_file.write_text(PASSWORD)
    definition = tmp_path / 'hmc.yaml'
    if text is not None:
        definition.write_text(text)
    done = subprocess.run(
        [sys.executable, '-m', 'dpm_hmc_sim', '--definition', str(definition),
         '--listen', '127.0.0.1:0', '--userid', USERID,
         '--password-file', str(password_file), '--cert-dir', str(tmp_path / 'certs')],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ''
    assert done.stderr == f'dpm-hmc-sim: {definition}: {why}' + done.stderr.split(why, 1)[1]
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_a_definition_that_fails_zhmcclients_schema_is_named_in_one_line(tmp_path):
    import yaml

    from dpm_hmc_sim.definition import DefinitionError
    from dpm_hmc_sim.definition import load
    from dpm_hmc_sim.definition import resolve

    data = yaml.safe_load(resolve('2.14.1').read_text())
    data['hmc_definition']['cpcs'][0]['partitions'] = 5
    with pytest.raises(DefinitionError) as caught:
        load(data)
    assert '\n' not in str(caught.value)
    assert 'not a valid HMC definition: ' in str(caught.value)
    assert 'hmc_definition.cpcs.0.partitions' in str(caught.value)


def test_the_command_serves_and_exits_0_on_sigterm(tmp_path):
    sim = SimulatorProcess(
        '2.14.1',
        password=PASSWORD,
        cert_dir=tmp_path / 'certs',
        start_seconds=0.2,
        discover_seconds=0.3,
        latency=0,
        fabric={'open': False},
    )
    try:
        assert (
            sim.ready_line == f'dpm-hmc-sim: serving HMC 2.14.1 (API 2.40) on 127.0.0.1:{sim.port}'
        )
        client = zhmcclient.Client(sim.session())
        assert client.query_api_version()['hmc-version'] == '2.14.1'
        part = partition(client, STOPPED_PARTITION)
        sim.set_outcome(STOPPED_PARTITION, 'start', 'paused')
        job = part.start(wait_for_completion=False)
        time.sleep(0.4)
        assert job.check_for_completion() == ('complete', {})
        part.pull_full_properties()
        assert part.properties['status'] == 'paused'
        assert sim.state()['jobs'] == []
        assert sim.configure(latency=0.01)['latency'] == 0.01
        assert sim.expire_sessions() == 1
        assert len(client.cpcs.list()) == 3
        assert sim.session_counts()['userids'][USERID]['logons'] == 2
        assert [r.status for r in sim.requests() if r.status >= 400] == [403]
        sim.clear_requests()
        assert sim.requests() == []
        assert sim.configure()['discover_seconds'] == 0.3
        lun = {'target-world-wide-port-name': '5005076810260382', 'logical-unit-number': '0' * 16}
        assert sim.expose_lun(lun) == {'open': False, 'luns': [lun]}
        assert sim.set_fabric({}) == sim.fabric() == {'open': True, 'luns': []}
        assert sim.state()['storage']['fabric'] == {'open': True, 'luns': []}
        sim.reset()
        part.pull_full_properties()
        assert part.properties['status'] == 'stopped'
    finally:
        code = sim.terminate(timeout=10)
    assert code == 0
    assert sim.process.stdout.closed
