"""dpm-backend-ctl against a real backend on the simulator: hosts, instances, why, tokens.

Most commands run in this process (``ctl.main``) for speed; one runs as the
installed command would, as a subprocess. Exit status: 0 all is well, 1 a
host not served or an error the backend answered, 2 usage or configuration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import ctl

REPO = Path(__file__).resolve().parents[2]
T = 10
# A well-formed CPC object id that the simulated HMC does not have.
LOST_CPC = '0badc0de-1111-4222-8333-444455556666'
TOKEN_A = 'token-of-cpc1-and-z14host-0123456789'
TOKEN_B = 'token-of-cpc10-abcdefghijklmnopqrstu'
TARGET = '500507680b2142e5'


def hosts_with_a_lost_cpc() -> list[HostSpec]:
    fcp = tuple(f'{a}:0' for a in INVENTORY['fcp'])
    return [
        HostSpec('cpc1', INVENTORY['z13'], mappings=fcp),
        HostSpec('z14host', INVENTORY['z14'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',)),
        HostSpec('lost', LOST_CPC, mappings=fcp),
    ]


def target(running) -> str:
    return running.backend.address


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """ctl.main in this process: (exit status, stdout, stderr)."""
    status = ctl.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def table(out: str) -> dict[str, dict[str, str]]:
    """Aligned columns back into rows by their first column (the last may hold spaces)."""
    lines = out.splitlines()
    headers = lines[0].split()
    rows = {}
    for line in lines[1:]:
        cells = line.split(maxsplit=len(headers) - 1)
        rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return rows


def test_hosts_names_each_host_with_health_storage_cpc_and_usage_and_why_one_fails(
    backend_factory, capsys
):
    running = backend_factory(hosts_with_a_lost_cpc())
    running.log.clear()
    status, out, err = run(capsys, '--backend', target(running), 'hosts')
    assert status == 1, err  # host lost is not served
    rows = table(out)
    assert list(rows) == ['cpc1', 'z14host', 'lost']
    assert rows['cpc1'] == {
        'HOST': 'cpc1',
        'HEALTH': 'SERVING',
        'STORAGE': 'VHBA',
        'CPC': 'CPCZ13',
        'PROCESSORS': '0/8',
        'MEMORY_MB': '0/16384',
        'INSTANCES': '0',
        'PROBLEM': '-',
    }
    assert (rows['z14host']['STORAGE'], rows['z14host']['CPC']) == ('STORAGE_GROUPS', 'CPCZ14')
    assert rows['lost']['HEALTH'] == 'NOT_SERVING'
    assert rows['lost']['CPC'] == '-'
    assert f'CPC {LOST_CPC} does not exist on the HMC' in rows['lost']['PROBLEM']
    # The header is aligned with the rows.
    header, first = out.splitlines()[:2]
    assert header.index('HEALTH') == first.index('SERVING')

    status, out, _ = run(capsys, '--backend', target(running), 'hosts', '--json')
    assert status == 1
    listed = {row['host']: row for row in json.loads(out)['hosts']}
    assert listed['lost']['serving'] is False and listed['lost']['status'] is None
    assert 'does not exist on the HMC' in listed['lost']['problem']
    assert listed['cpc1']['serving'] is True and listed['cpc1']['problem'] == ''
    assert listed['cpc1']['status']['storage_path'] == 'STORAGE_PATH_VHBA'
    assert listed['cpc1']['status']['memory_mb_total'] == 16384  # a number, not a string


def test_hosts_exits_0_when_every_host_is_served(backend_factory, capsys):
    running = backend_factory(hosts_with_a_lost_cpc()[:2])
    status, out, _ = run(capsys, '--backend', target(running), '--json', 'hosts')
    assert status == 0
    assert [row['health'] for row in json.loads(out)['hosts']] == ['SERVING', 'SERVING']


def test_a_served_host_whose_cpc_stopped_operating_shows_the_error(backend_factory, capsys):
    running = backend_factory(hosts_with_a_lost_cpc()[:2], extra={'hmc': {'cpc_cache_ttl': 0}})
    running.cpc('z14').properties['status'] = 'not-operating'
    status, out, _ = run(capsys, '--backend', target(running), 'hosts')
    assert status == 1
    rows = table(out)
    assert rows['cpc1']['PROBLEM'] == '-'
    assert rows['z14host']['HEALTH'] == 'SERVING'  # it passed its start-up checks
    assert rows['z14host']['PROBLEM'].startswith('FAILED_PRECONDITION CPC_NOT_USABLE: ')
    assert 'has status not-operating' in rows['z14host']['PROBLEM']
    status, out, _ = run(capsys, '--backend', target(running), 'why', 'z14host')
    assert status == 1
    assert out.startswith('host z14host is not serving: FAILED_PRECONDITION CPC_NOT_USABLE: ')


def test_list_hosts_makes_no_hmc_request(backend_factory):
    running = backend_factory(hosts_with_a_lost_cpc())
    running.log.clear()
    reply = running.stub.ListHosts(pb.ListHostsRequest(), timeout=T)
    assert [(h.host, h.serving) for h in reply.hosts] == [
        ('cpc1', True),
        ('z14host', True),
        ('lost', False),
    ]
    assert running.log.requests == []


def test_instances_after_prepare_and_spawn(running, capsys):
    prepared_uuid, spawned_uuid = sorted([new_uuid(), new_uuid()])
    running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=prepared_uuid, flavor=flavor(1, 1024)),
        timeout=T,
    )
    wwpns = running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=spawned_uuid, flavor=flavor(2, 4096)),
        timeout=T,
    ).wwpns
    running.stub.Spawn(
        pb.SpawnRequest(
            host='cpc1',
            instance_uuid=spawned_uuid,
            flavor=flavor(2, 4096),
            nics=[nic(INVENTORY['vswitch_osa1'])],
            boot_volume=boot_volume(list(wwpns), [TARGET]),
        ),
        timeout=T,
    )

    status, out, err = run(capsys, '--backend', target(running), 'instances', 'cpc1')
    assert status == 0, err
    rows = table(out)
    assert set(rows) == {prepared_uuid, spawned_uuid}
    assert rows[prepared_uuid]['POWER_STATE'] == 'SHUTDOWN'
    assert rows[prepared_uuid]['PARTITION_STATUS'] == 'stopped'
    assert rows[spawned_uuid]['POWER_STATE'] == 'RUNNING'
    assert rows[spawned_uuid]['PARTITION_STATUS'] == 'active'
    assert (rows[spawned_uuid]['PROCESSORS'], rows[spawned_uuid]['MEMORY_MB']) == ('2', '4096')
    assert rows[spawned_uuid]['PARTITION'] == f'OpenStack-cpc1-{spawned_uuid}'

    status, out, _ = run(capsys, '--backend', target(running), 'instances', 'cpc1', '--json')
    assert status == 0
    instances = {i['instance_uuid']: i for i in json.loads(out)['instances']}
    assert instances[prepared_uuid]['power_state'] == 'POWER_STATE_SHUTDOWN'
    assert (instances[prepared_uuid]['vcpus'], instances[prepared_uuid]['memory_mb']) == (1, 1024)
    # Host cpc10 on the same CPC sees none of them.
    status, out, _ = run(capsys, '--backend', target(running), '--json', 'instances', 'cpc10')
    assert status == 0
    assert not {prepared_uuid, spawned_uuid} & {
        i['instance_uuid'] for i in json.loads(out)['instances']
    }


def test_instances_of_a_host_not_served_is_one_line_with_code_and_reason(running, capsys):
    status, out, err = run(capsys, '--backend', target(running), 'instances', 'classic')
    assert status == 1 and out == ''
    assert err.count('\n') == 1
    assert err.startswith('dpm-backend-ctl: ListInstances: FAILED_PRECONDITION HOST_NOT_READY: ')
    assert 'not in DPM mode' in err


def test_why_gives_the_reason_a_host_is_not_served(backend_factory, capsys):
    running = backend_factory(hosts_with_a_lost_cpc())
    status, out, _ = run(capsys, '--backend', target(running), 'why', 'lost')
    assert status == 1
    assert out.startswith('host lost is not serving: ')
    assert f'CPC {LOST_CPC} does not exist on the HMC' in out
    assert 'health: NOT_SERVING' in out

    status, out, _ = run(capsys, '--backend', target(running), 'explain', 'cpc1')
    assert status == 0
    assert out.startswith('host cpc1 is serving: CPC CPCZ13 (active), storage path VHBA')

    status, out, _ = run(capsys, '--backend', target(running), '--json', 'why', 'nosuch')
    assert status == 1
    result = json.loads(out)
    assert result['serving'] is False
    assert (result['error']['code'], result['error']['reason']) == ('NOT_FOUND', 'HOST_NOT_FOUND')
    assert result['health'] == 'SERVICE_UNKNOWN'


@pytest.fixture
def tokens(tmp_path):
    files = {}
    for name, token in (('a', TOKEN_A), ('b', TOKEN_B), ('wrong', 'not-a-token-0123456789')):
        files[name] = tmp_path / f'{name}.token'
        files[name].write_text(token + '\n')
    return files


def guarded(backend_factory, tokens, open_host: bool):
    extra = {
        'host:cpc1': {'token_file': str(tokens['a'])},
        'host:z14host': {'token_file': str(tokens['a'])},
        'host:cpc10': {'token_file': str(tokens['b'])},
    }
    if not open_host:
        extra['host:classic'] = {'token_file': str(tokens['b'])}
    return backend_factory(extra=extra)


def test_with_tokens_a_caller_lists_only_the_hosts_it_may_act_for(backend_factory, tokens, capsys):
    running = guarded(backend_factory, tokens, open_host=False)
    base = ('--backend', target(running), '--json')

    status, out, err = run(capsys, *base, 'hosts')
    assert (status, out) == (1, '')
    assert err.count('\n') == 1
    assert err.startswith('dpm-backend-ctl: ListHosts: UNAUTHENTICATED UNAUTHENTICATED: no bearer')
    assert err.rstrip().endswith('(see --token-file)')

    status, out, err = run(capsys, *base, '--token-file', str(tokens['wrong']), 'hosts')
    assert status == 1 and 'UNAUTHENTICATED' in err and 'an invalid bearer token' in err

    status, out, _ = run(capsys, *base, '--token-file', str(tokens['a']), 'hosts')
    assert status == 0
    assert [row['host'] for row in json.loads(out)['hosts']] == ['cpc1', 'z14host']

    status, out, _ = run(capsys, *base, '--token-file', str(tokens['b']), 'hosts')
    assert [row['host'] for row in json.loads(out)['hosts']] == ['cpc10', 'classic']
    assert status == 1  # classic is not served

    # Another host's token: why names the refusal.
    status, out, _ = run(capsys, *base, '--token-file', str(tokens['a']), 'why', 'cpc10')
    assert status == 1
    assert json.loads(out)['error']['reason'] == 'PERMISSION_DENIED'


def test_without_a_token_only_hosts_without_one_are_listed(backend_factory, tokens, capsys):
    running = guarded(backend_factory, tokens, open_host=True)
    status, out, _ = run(capsys, '--backend', target(running), '--json', 'hosts')
    assert [row['host'] for row in json.loads(out)['hosts']] == ['classic']
    assert status == 1
    # A token no host has is refused even so.
    status, out, err = run(
        capsys, '--backend', target(running), '--token-file', str(tokens['wrong']), 'hosts'
    )
    assert status == 1 and out == '' and 'UNAUTHENTICATED' in err


def test_connection_options_from_the_config_file_and_the_command_line_wins(
    running, tmp_path, capsys
):
    nova_conf = tmp_path / 'nova.conf'
    nova_conf.write_text(
        f'[DEFAULT]\nhost = cpc1\ncompute_driver = dpm.DPMDriver\n'
        f'[dpm]\nbackend = {target(running)}\nread_deadline = 30\n'
    )
    status, out, _ = run(capsys, '--config-file', str(nova_conf), 'why', 'cpc1')
    assert status == 0 and out.startswith('host cpc1 is serving')

    nowhere = f'unix:{tmp_path / "none.sock"}'
    nova_conf.write_text(f'[dpm]\nbackend = {nowhere}\n')
    status, _, err = run(capsys, '--config-file', str(nova_conf), 'why', 'cpc1')
    assert status == 1
    assert 'UNAVAILABLE' in err and f'serving at {nowhere}?' in err
    status, out, _ = run(
        capsys, '--config-file', str(nova_conf), 'why', 'cpc1', '--backend', target(running)
    )
    assert status == 0 and out.startswith('host cpc1 is serving')


@pytest.mark.parametrize(
    ('argv', 'words'),
    [
        (['--backend', '10.1.2.3:50051', 'hosts'], '--tls-ca-file'),
        (['--backend', '127.0.0.1:50051', 'hosts'], '--allow-insecure-loopback = true'),
        (['--backend', 'unix:/x', '--token-file', '/nonexistent/token', 'hosts'], 'cannot read'),
        (['--config-file', '/nonexistent/nova.conf', 'hosts'], '--config-file'),
        (['--backend', 'unix:/x', '--timeout', '0', 'hosts'], '--timeout'),
    ],
    ids=['plaintext-remote', 'loopback-without-flag', 'token-file', 'config-file', 'timeout'],
)
def test_configuration_errors_exit_2_with_one_line_before_anything_is_sent(capsys, argv, words):
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, '')
    assert err.count('\n') == 1 and err.startswith('dpm-backend-ctl: ') and words in err


def test_a_config_file_value_that_is_wrong_is_a_configuration_error(tmp_path, capsys):
    nova_conf = tmp_path / 'nova.conf'
    nova_conf.write_text('[dpm]\nbackend = 127.0.0.1:1\nallow_insecure_loopback = maybe\n')
    status, _, err = run(capsys, '--config-file', str(nova_conf), 'hosts')
    assert status == 2 and 'allow_insecure_loopback' in err
    # Refusals name the option as flag and as config file option, either of which set it.
    nova_conf.write_text('[dpm]\nbackend = 10.1.2.3:50051\n')
    status, _, err = run(capsys, '--config-file', str(nova_conf), 'hosts')
    assert status == 2 and '--backend ([dpm] backend) = 10.1.2.3:50051' in err


def test_usage_errors_exit_2(capsys):
    for argv in ([], ['instances'], ['reboot', 'cpc1'], ['hosts', '--timeout', 'soon']):
        with pytest.raises(SystemExit) as caught:
            ctl.main(argv)
        assert caught.value.code == 2, argv
    capsys.readouterr()


def test_the_command_runs_as_a_program(running):
    result = subprocess.run(
        [sys.executable, '-m', 'dpm_backend.ctl', '--backend', target(running), '--json', 'hosts'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr  # classic is not served
    listed = json.loads(result.stdout)['hosts']
    assert [row['host'] for row in listed] == ['cpc1', 'cpc10', 'z14host', 'classic']


def test_the_command_needs_no_nova(running):
    """As on a backend host, where nova is not installed: any import of it fails."""
    program = (
        'import runpy, sys; sys.modules["nova"] = None; '
        'sys.argv = ["dpm-backend-ctl", *sys.argv[1:]]; '
        'runpy.run_module("dpm_backend.ctl", run_name="__main__")'
    )
    result = subprocess.run(
        [sys.executable, '-c', program, '--backend', target(running), 'why', 'cpc1'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('host cpc1 is serving')


def test_several_backends_over_tls_need_the_name_their_certificates_share(capsys, tmp_path):
    pem = tmp_path / 'x.pem'
    pem.write_text('')
    tls = ['--tls-ca-file', str(pem), '--tls-cert-file', str(pem), '--tls-key-file', str(pem)]
    status, _, err = run(capsys, '--backend', '127.0.0.1:1,127.0.0.1:2', *tls, 'hosts')
    assert status == 2
    assert 'set --tls-server-name to a name' in err
