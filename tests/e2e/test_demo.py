"""`make demo` runs the whole lifecycle for two hosts and leaves nothing running."""

from __future__ import annotations

import subprocess
import sys


def test_demo_drives_both_hosts_and_stops_the_backend():
    result = subprocess.run(
        [sys.executable, '-m', 'dpm_backend.demo'],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for host in ('cpc1', 'cpc10'):
        assert f'######## host {host}' in out
        assert f'partition_name: "OpenStack-{host}-' in out
    assert out.count('== Spawn (2 NICs, FC boot)') == 2
    assert 'boot_os_specific_parameters: "' in out
    assert '| HMC POST /api/partitions/' in out and '/operations/start -> ok' in out
    assert out.count('NOT_FOUND: instance') == 2
    assert 'backend exited with 0' in out and 'logged off 1 HMC sessions' in out
    assert 'Demo finished' in out
