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


def instance_copy(tmp_path: Path) -> Path:
    path = tmp_path / INSTANCE
    path.write_text(UNIT.read_text())
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


# systemd-analyze verify runs in tests/deploy/test_install.py, on the root make install fills.


def test_unit_runs_the_installed_backend_as_notify_with_credential_and_one_instance_per_hmc():
    service = unit()['Service']
    assert service['Type'] == 'notify'
    assert service['NotifyAccess'] == 'main'
    assert service['ExecStart'] == (
        '/opt/dpm-backend/bin/dpm-backend --config-file /etc/dpm-backend/%i.conf'
    )
    assert service['LoadCredential'] == 'hmc-password:/etc/dpm-backend/%i.password'
    # Each instance has its own runtime directory (and socket); stopping one
    # removes /run/dpm-backend/<hmc> only.
    assert service['RuntimeDirectory'] == 'dpm-backend/%i'
    assert service['RuntimeDirectoryPreserve'] == 'restart'
    assert service['KillSignal'] == 'SIGTERM'
    # A configuration error (exit 2) is not retried every RestartSec.
    assert (service['Restart'], service['RestartPreventExitStatus']) == ('on-failure', '2')
    assert 'password' not in service['ExecStart']
    # A group that may not exist on the host would fail the unit: membership
    # of the socket group is the service user's (usermod), not the unit's.
    assert 'SupplementaryGroups' not in service
    assert unit()['Unit']['Documentation'] == (
        'file:///opt/dpm-backend/share/doc/dpm-backend/README.md'
    )


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
