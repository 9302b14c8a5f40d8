"""`make demo`: simulator and backend processes; three hosts, one in full; a summary."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

Z14_HOST = 'z14host'


VHBA_HOSTS = ('cpc1', 'cpc10')
# The calls each host's lifecycle makes, in order (z14host adds attach_volume and detach_volume).
CALLS = [
    'init_host', 'get_available_resource', 'update_provider_tree', 'prepare_for_spawn',
    'get_volume_connector', 'spawn', 'get_info', 'list_instance_uuids', 'power_off', 'get_info',
    'power_on', 'reboot', 'get_info', 'destroy', 'destroy again', 'get_volume_connector again',
    'get_info again',
]  # fmt: skip
ONE_LINE = re.compile(
    r'   (?P<name>[a-z_]+(?: again)?)(?:\(\S+\))? +(?P<requests>\d+) HMC requests?'
    r'(?: +(?P<seconds>\d+\.\d) s)?(?: +-> (?P<brief>.+))?'
)
TOTALS = re.compile(
    r'   = (?P<host>\S+): (?P<calls>\d+) calls, (?P<requests>\d+) HMC requests '
    r'\((?P<ok>[^)]+)\) on (?P<collections>.+)'
)


def _section(out: str, host: str) -> str:
    """The output of one host's lifecycle."""
    start = out.index(f'######## {host} ')
    end = out.index('\n######## ', start + 1)
    return out[start:end]


def _step(section: str, title: str) -> list[str]:
    """The HMC requests one call printed in full (the first call with ``title``)."""
    start = section.index(f'\n== {title}')
    end = section.find('\n\n', start + 1)
    lines = section[start : end if end != -1 else len(section)].splitlines()
    return [line.removeprefix('   | ') for line in lines if line.startswith('   | ')]


def _totals(section: str) -> re.Match:
    match = TOTALS.search(section)
    assert match is not None, section
    return match


@pytest.fixture(scope='module')
def demo():
    return subprocess.run(
        [sys.executable, '-m', 'demo'],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_demo_drives_every_host_through_the_driver_and_stops_the_backend(demo):
    out = demo.stdout
    assert out.startswith('dpm-hmc-sim: serving HMC 2.14.1 (API 2.40) on 127.0.0.1:'), out
    assert demo.returncode == 0, out + demo.stderr
    assert f'######## {Z14_HOST} (CPCZ14, storage groups) in full: ' in out
    assert 'dpm.DPMDriver' in out
    assert out.count("-> {'VCPU': 8, 'MEMORY_MB': 16384}") == 3
    assert out.count('-> running') == 6 and out.count('-> shutdown') == 3
    assert out.count('-> InstanceNotFound') == 3
    assert 'Demo finished' in out
    assert 'Traceback' not in out + demo.stderr
    # Only the full host's requests are printed, all answered; no request times.
    assert ' -> ok' in out and not re.search(r'\| [A-Z]+ \S+ -> (?!ok$)', out, re.M)
    assert not re.search(r'\(\d+ ms\)', out)


def test_the_other_hosts_get_one_line_per_call(demo):
    for host in VHBA_HOSTS:
        section = _section(demo.stdout, host)
        assert section.startswith(f'######## {host} (CPCZ13, vHBAs): the same calls, one line each')
        lines = [m for line in section.splitlines() if (m := ONE_LINE.fullmatch(line))]
        assert [m['name'] for m in lines] == CALLS, section
        assert '| ' not in section  # no request printed
        calls = {m['name']: m for m in lines}
        assert int(calls['prepare_for_spawn']['requests']) > 0
        # Start and Stop Partition are 0.5 s jobs: the calls that wait for them show their time.
        for name in ('spawn', 'power_off', 'power_on', 'reboot', 'destroy'):
            assert float(calls[name]['seconds']) >= 0.5, (host, name)
        assert calls['get_available_resource']['seconds'] is None
        totals = _totals(section)
        assert totals['host'] == host and int(totals['calls']) == len(CALLS)
        assert int(totals['requests']) == sum(int(m['requests']) for m in lines)
        assert totals['ok'] == 'all ok'
        collections = totals['collections'].split(', ')
        assert 'hbas' in collections and 'storage-groups' not in collections, collections
    # cpc10's list has the simulator's own OpenStack-cpc10-... partition; cpc1's does not.
    assert '-> this server and 1 other' in _section(demo.stdout, 'cpc10')
    assert '-> this server\n' in _section(demo.stdout, 'cpc1')


def test_the_full_host_shows_the_kernel_command_line_read_from_the_hmc(demo):
    section = _section(demo.stdout, Z14_HOST)
    written = re.search(
        r"kernel command line on the HMC \(boot-os-specific-parameters\): '([^']*)'", section
    )
    assert written is not None, section
    tokens = written.group(1).split(' ')
    # One token per NIC: device number, adapter port, the VIF's MAC without colons.
    assert len(tokens) == 2
    for index, token in enumerate(tokens):
        assert re.fullmatch(rf'[0-9a-f]{{4}},[0-3],fa163e00{index:02x}02;', token), token
    explained = section[written.end() :].splitlines()[1]
    assert explained.startswith("   = one '<device number>,<adapter port>,<MAC>;' per NIC")
    devices = [token.split(',')[0] for token in tokens]
    assert f'qeth device {devices[0]} on port' in explained
    assert 'MAC fa:16:3e:00:00:02' in explained and 'MAC fa:16:3e:00:01:02' in explained


def test_the_summary_counts_hosts_instances_and_hmc_requests(demo):
    out = demo.stdout
    summary = out[out.index('\n######## summary\n') :]
    assert '   hosts: 3, cpc1 (CPCZ13, vHBAs), cpc10 (CPCZ13, vHBAs), z14host' in summary
    assert '   instances booted: 3 (partitions the HMC started;' in summary
    requests = re.search(
        r'HMC requests in all: (\d+) \((\d+) caused by the calls above, (\d+)', summary
    )
    assert requests is not None, summary
    total, by_calls, others = map(int, requests.groups())
    assert total == by_calls + others and others > 0
    hosts = [_totals(_section(out, h)) for h in (Z14_HOST, *VHBA_HOSTS)]
    assert by_calls == sum(int(t['requests']) for t in hosts)
    assert '   requests refused by the HMC: 0\n' in summary
    # The pooled session and the one whose topic carries the HMC's notifications.
    assert 'dpm-backend exited with 0; Stopped; logged off 2 HMC sessions' in summary
    assert (
        'logons 2, logoffs 2, sessions open 0; '
        'left by the demo: partitions [], storage groups []' in summary
    )


def test_periodic_reads_cost_no_hmc_request_while_notifications_flow(demo):
    for host in VHBA_HOSTS:
        section = _section(demo.stdout, host)
        for call in ('get_available_resource', 'update_provider_tree', 'list_instance_uuids'):
            (line,) = [line for line in section.splitlines() if line.strip().startswith(call)]
            assert ' 0 HMC requests' in line, line


def test_full_names_a_demo_host():
    from demo.__main__ import _arguments

    assert _arguments([]).full == Z14_HOST
    assert _arguments(['--full', 'cpc1']).full == 'cpc1'
    with pytest.raises(SystemExit):
        _arguments(['--full', 'cpc2'])


def test_the_storage_group_host_runs_the_whole_lifecycle(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    section = _section(demo.stdout, Z14_HOST)
    assert '/hbas' not in section  # no vHBAs on a CPC with storage management

    prepare = _step(section, 'prepare_for_spawn (partition + storage group)')
    assert any(r.startswith('POST /api/cpcs/') and r.endswith('/partitions -> ok') for r in prepare)
    assert 'POST /api/storage-groups -> ok' in prepare
    # The connector's WWPNs are the storage group's, saved for after destroy.
    saved = re.search(
        rf"saves system_metadata \{{'dpm_wwpns:{Z14_HOST}': '([0-9a-f,]+)'\}}", section
    )
    assert saved is not None, section
    wwpns = saved.group(1).split(',')
    assert len(wwpns) == 2  # storage_connectivity 2
    assert f"-> {{'wwpns': {wwpns!r}" in section

    spawn = ' '.join(
        _step(
            section,
            'spawn (NICs, kernel cmdline, storage volume in the group, FCP discovery, '
            'attach the group, boot from it, start)',
        )
    )
    order = [
        '/operations/modify -> ok',  # the boot volume defined in the group
        '/operations/validate-lun-path -> ok',
        '/operations/fulfill-fcp-storage-volume -> ok',
        '/operations/start-fcp-storage-discovery -> ok',
        'DELETE /api/jobs/',
        '/operations/attach-storage-group -> ok',
        '/operations/start -> ok',
    ]
    positions = [spawn.find(marker) for marker in order]
    assert -1 not in positions and positions == sorted(positions), (positions, spawn)
    assert spawn.count('/nics -> ok') == 2
    assert '/api/virtual-switches/' in spawn

    for title in ('power_off', 'power_on'):
        assert any('/operations/' in r for r in _step(section, title)), title
    reboot = _step(section, 'reboot (HARD)')
    assert sum('/operations/stop' in r for r in reboot) == 1
    assert sum('/operations/start' in r for r in reboot) == 1

    assert 'get_by_volume_and_instance is stubbed' in section
    attach = _step(section, 'attach_volume (storage volume in the group, FCP discovery)')
    assert any(r.endswith('/operations/modify -> ok') for r in attach)
    assert any('/operations/start-fcp-storage-discovery -> ok' in r for r in attach)
    detach = _step(section, 'detach_volume (the storage volume is deleted)')
    assert any(r.endswith('/operations/modify -> ok') for r in detach)
    assert not any('discovery' in r for r in detach)

    destroy = ' '.join(_step(section, 'destroy (stop, detach and delete the group, delete)'))
    order = [
        '/operations/stop -> ok',
        '/operations/detach-storage-group -> ok',
        'DELETE /api/partitions/',
        '/operations/delete -> ok',  # the storage group
    ]
    positions = [destroy.find(marker) for marker in order]
    assert -1 not in positions and positions == sorted(positions), (positions, destroy)
    again = _step(section, 'destroy again (already gone: succeeds)')
    assert all(r.startswith('GET ') for r in again)
    assert 'InstanceNotFound' in section
