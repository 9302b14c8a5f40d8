"""`make demo`: simulator and backend processes; the driver's calls for three hosts; all stopped."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

Z14_HOST = 'z14host'


def _section(out: str, host: str) -> str:
    """The output of one host's lifecycle."""
    start = out.index(f'######## nova-compute for host {host} ')
    end = out.find('\n######## ', start + 1)
    return out[start : end if end != -1 else out.index('\n== SIGTERM')]


def _step(section: str, title: str) -> list[str]:
    """The HMC requests one step printed, without their times (the first step with ``title``)."""
    start = section.index(f'\n== {title}')
    end = section.find('\n\n', start + 1)
    lines = section[start : end if end != -1 else len(section)].splitlines()
    return [
        re.sub(r' \(\d+ ms\)$', '', line.removeprefix('   | HMC '))
        for line in lines
        if line.startswith('   | HMC ')
    ]


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
    for host, cpc in (('cpc1', 'CPCZ13, vHBAs'), ('cpc10', 'CPCZ13, vHBAs')):
        assert (
            f'######## nova-compute for host {host} ({cpc}): dpm_frontend.driver.DPMDriver' in out
        )
    assert (
        f'######## nova-compute for host {Z14_HOST} (CPCZ14, storage groups): '
        'dpm_frontend.driver.DPMDriver' in out
    )
    assert out.count('== spawn (NICs, kernel cmdline, FC boot, start)') == 2
    assert '| HMC POST /api/partitions/' in out and '/operations/start -> ok' in out
    assert out.count("-> {'VCPU': 8, 'MEMORY_MB': 16384}") == 3
    assert out.count('-> running') >= 3 and out.count('-> shutdown') == 3
    assert out.count('InstanceNotFound') == 3
    # Start and Stop are HMC jobs, polled and then deleted.
    assert '/operations/start -> ok' in out and '| HMC DELETE /api/jobs/' in out
    assert 'dpm-backend exited with 0' in out
    assert (
        '0 sessions open; partitions left by the demo: []; storage groups left by the demo: []'
        in out
    )
    assert 'Demo finished' in out
    assert 'Traceback' not in out + demo.stderr
    assert ' -> ok' in out and not re.search(r'\| HMC .* -> (?!ok)', out)


def test_the_vhba_hosts_never_touch_storage_groups(demo):
    for host in ('cpc1', 'cpc10'):
        section = _section(demo.stdout, host)
        assert '/storage-groups' not in section, host
        assert '/hbas -> ok' in section, host


def test_the_storage_group_host_runs_the_whole_lifecycle(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    section = _section(demo.stdout, Z14_HOST)
    assert '/hbas' not in section  # no vHBAs on a CPC with storage management

    prepare = _step(section, 'prepare_for_spawn (partition + storage group)')
    assert any(r.startswith('POST /api/cpcs/') and r.endswith('/partitions -> ok') for r in prepare)
    assert 'POST /api/storage-groups -> ok' in prepare
    # The connector's WWPNs are the storage group's, saved for after destroy.
    saved = re.search(r"saves system_metadata \{'dpm_wwpns': '([0-9a-f,]+)'\}", section)
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
