"""The unix socket is one backend's: never taken from a live one, never removed if not ours."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dpmtest import load_config
from dpmtest import write_config
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_backend import server
from dpm_backend.config import ConfigError
from dpm_backend.server import Backend

REPO = Path(__file__).resolve().parents[2]
SERVING = health_pb2.HealthCheckResponse.SERVING


def health(channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status


def identity(path: str) -> tuple[int, int]:
    info = os.lstat(path)
    return info.st_dev, info.st_ino


def in_use(path: str) -> str:
    return (
        f'dpm-backend: configuration error: another backend is serving on unix:{path}; '
        'stop it or choose another [backend] listen'
    )


def test_a_second_backend_on_the_same_socket_exits_2_and_the_first_keeps_serving(
    backend_factory, hmc_sim, tmp_path
):
    first = backend_factory()
    path = first.backend.config.listen.unix_path
    before = identity(path)
    config = write_config(tmp_path / 'second.conf', Path(path), hmc=hmc_sim)
    second = subprocess.run(
        [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [in_use(path)]
    assert identity(path) == before
    assert health(first.channel) == SERVING


def test_a_stale_socket_left_by_a_killed_backend_is_replaced_and_removed_at_stop(
    backend_factory, tmp_path
):
    path = tmp_path / 'b0.sock'  # where backend_factory's first backend listens
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # closed without unlink: what SIGKILL leaves
    stale = identity(str(path))
    running = backend_factory()
    assert running.backend.config.listen.unix_path == str(path)
    assert identity(str(path)) != stale
    assert health(running.channel) == SERVING
    running.backend.stop(grace=0)
    assert not path.exists()


def test_stop_leaves_a_socket_that_another_process_put_in_place(backend_factory):
    running = backend_factory()
    path = running.backend.config.listen.unix_path
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(path)
        other.listen()
        theirs = identity(path)
        running.backend.stop(grace=0)
        assert identity(path) == theirs
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)  # still theirs, still reachable


def test_a_socket_that_appears_between_the_check_and_the_link_is_not_replaced(
    tmp_path, monkeypatch
):
    path = tmp_path / 's.sock'
    backend = Backend(load_config(write_config(tmp_path / 'c.conf', path)))
    monkeypatch.setattr(server, '_claim_socket_path', lambda path: None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        theirs = identity(str(path))
        with pytest.raises(ConfigError, match='another backend is serving'):
            backend.start()
        assert identity(str(path)) == theirs
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.dpm-backend-')] == []


def test_a_file_that_is_not_a_socket_is_never_replaced(tmp_path):
    path = tmp_path / 's.sock'
    path.write_text('not a socket')
    backend = Backend(load_config(write_config(tmp_path / 'c.conf', path)))
    with pytest.raises(ConfigError, match=r'exists and is not a socket'):
        backend.start()
    assert path.read_text() == 'not a socket'
