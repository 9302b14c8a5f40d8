"""`make demo`: simulator and backend processes; the driver's calls for two hosts; all stopped."""

from __future__ import annotations

import subprocess
import sys


def test_demo_drives_both_hosts_through_the_driver_and_stops_the_backend():
    result = subprocess.run(
        [sys.executable, '-m', 'demo'],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = result.stdout
    assert out.startswith('dpm-hmc-sim: serving HMC 2.14.1 (API 2.40) on 127.0.0.1:'), out
    assert result.returncode == 0, out + result.stderr
    for host in ('cpc1', 'cpc10'):
        assert f'######## nova-compute for host {host}: dpm_frontend.driver.DPMDriver' in out
    assert out.count('== spawn (NICs, kernel cmdline, FC boot, start)') == 2
    assert '| HMC POST /api/partitions/' in out and '/operations/start -> ok' in out
    assert out.count("-> {'VCPU': 8, 'MEMORY_MB': 16384}") == 2
    assert out.count('-> running') >= 2 and out.count('-> shutdown') == 2
    assert out.count('InstanceNotFound') == 2
    # Start and Stop are HMC jobs, polled and then deleted.
    assert '/operations/start -> ok' in out and '| HMC DELETE /api/jobs/' in out
    assert 'dpm-backend exited with 0' in out
    assert '0 sessions open; partitions left by the demo: []' in out
    assert 'Demo finished' in out
    assert 'Traceback' not in out + result.stderr
