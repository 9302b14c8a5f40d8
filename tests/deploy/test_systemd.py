"""The systemd template unit: hardened, valid, and Type=notify as the backend speaks it."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_backend import server

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / 'deploy' / 'dpm-backend@.service'
INSTANCE = 'dpm-backend@hmc1.service'
ANALYZE = shutil.which('systemd-analyze')
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason='systemd-analyze is not installed (Debian package systemd)'
)
MAX_EXPOSURE = 3.0


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def instance_copy(tmp_path: Path, exec_start: str | None = None) -> Path:
    text = UNIT.read_text()
    if exec_start:
        text = text.replace('/usr/bin/dpm-backend', exec_start)
    path = tmp_path / INSTANCE
    path.write_text(text)
    return path


@needs_analyze
def test_security_exposure_is_below_three(tmp_path):
    path = instance_copy(tmp_path)
    result = subprocess.run(
        [ANALYZE, 'security', '--offline=true', '--no-pager', str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(
        rf'Overall exposure level for {re.escape(INSTANCE)}: ([0-9.]+)', result.stdout
    )
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    print(f'systemd-analyze security {INSTANCE}: exposure {exposure}')
    assert exposure < MAX_EXPOSURE


@needs_analyze
def test_unit_verifies_without_warnings(tmp_path):
    # verify checks that ExecStart= exists: point it at the installed entry point.
    path = instance_copy(tmp_path, str(Path(sys.executable).parent / 'dpm-backend'))
    result = subprocess.run(
        [ANALYZE, 'verify', str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if 'Failed to' in result.stderr and 'dpm-backend' not in result.stderr:
        pytest.skip(f'systemd-analyze verify cannot run here: {result.stderr.strip()}')
    assert result.returncode == 0, result.stderr
    assert INSTANCE not in result.stderr, result.stderr


def test_unit_is_notify_with_credential_runtime_dir_and_one_instance_per_hmc():
    service = unit()['Service']
    assert service['Type'] == 'notify'
    assert service['NotifyAccess'] == 'main'
    assert service['ExecStart'].endswith('--config-file /etc/dpm-backend/%i.conf')
    assert service['LoadCredential'].startswith('hmc-password:')
    assert service['RuntimeDirectory'] == 'dpm-backend'
    assert service['KillSignal'] == 'SIGTERM'
    assert 'password' not in service['ExecStart']


def receive(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def test_backend_notifies_ready_once_serving_and_stopping_on_sigterm(tmp_path):
    notify_path = tmp_path / 'notify'
    socket_path = tmp_path / 'n.sock'
    config = write_config(tmp_path / 'n.conf', socket_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
            cwd=REPO,
            env={**os.environ, 'NOTIFY_SOCKET': str(notify_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert receive(notify, 30) == 'READY=1'
            # READY means serving: the socket answers at once.
            with grpc.insecure_channel(f'unix:{socket_path}') as channel:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            process.send_signal(signal.SIGTERM)
            assert receive(notify, 30) == 'STOPPING=1'
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, output


def test_notify_reaches_an_abstract_socket_and_is_a_no_op_without_one(monkeypatch):
    name = f'dpm-backend-test-{os.getpid()}'
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind('\0' + name)
        monkeypatch.setenv('NOTIFY_SOCKET', '@' + name)
        server.sd_notify('READY=1')
        assert receive(notify, 5) == 'READY=1'
    monkeypatch.delenv('NOTIFY_SOCKET')
    server.sd_notify('READY=1')  # nothing to talk to: no error
