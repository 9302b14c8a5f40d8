"""The README's simulator and grpcurl blocks work when pasted, one after the other.

The blocks run as written, with bash, from the project root; only the fixed
paths (/tmp/hmc-sim, /tmp/dpm-backend.sock, the config file) and port 6794 are
moved to this test's directory and a free port, so that runs cannot collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / 'README.md').read_text()
SIM_CONFIG = REPO / 'deploy' / 'dpm-backend-sim.conf'


def _block(after_heading: str, index: int = 0) -> str:
    section = README.split(after_heading, 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```sh\n(.*?)```', section, re.S)[index]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_simulator_and_grpcurl_blocks_run_as_pasted(tmp_path):
    port = str(_free_port())
    stomp_port = str(_free_port())

    def moved(text: str) -> str:
        return (
            text.replace('/tmp/hmc-sim', str(tmp_path / 'hmc-sim'))
            .replace('/tmp/dpm-backend.sock', str(tmp_path / 'dpm-backend.sock'))
            .replace('deploy/dpm-backend-sim.conf', str(tmp_path / 'sim.conf'))
            .replace('6794', port)
            .replace('61612', stomp_port)
        )

    (tmp_path / 'sim.conf').write_text(moved(SIM_CONFIG.read_text()))
    script = '\n'.join(
        [
            'set -e',
            moved(_block('## HMC versions and the simulator')),
            moved(_block('## Talking to it with grpcurl')),
        ]
    )
    # Its own process group: whatever the blocks leave running is stopped below.
    shell = subprocess.Popen(
        ['bash', '-c', script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = shell.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    out = stdout + stderr
    assert shell.returncode == 0, out
    assert f'dpm-hmc-sim: serving HMC 2.14.1 (API 2.40) on 127.0.0.1:{port}' in out
    assert 'dpm_api.v1.DPMHost\ngrpc.health.v1.Health' in out
    assert '"status": "SERVING"' in out
    assert '"storage_path": "STORAGE_PATH_VHBA"' in out
    assert '"partition_status": "stopped"' in out
    assert 'HMC notifications flow for 1 CPCs' in out
    # The pooled session and the notification receiver's.
    assert 'Stopped; logged off 2 HMC sessions' in out
    assert 'Traceback' not in out
