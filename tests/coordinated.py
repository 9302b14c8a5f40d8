"""Test helpers for active/standby backends: backends on one etcd, health sampled in turn."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
from dpmtest import RequestLog
from dpmtest import RunningBackend
from dpmtest import default_hosts
from dpmtest import load_config
from dpmtest import write_config
from google.rpc import error_details_pb2
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.server import SERVICE_NAME
from dpm_backend.server import Backend

REPO = Path(__file__).resolve().parents[1]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Two hosts that pass their checks on the simulator (the default hosts include
# one on a classic-mode CPC, which never serves).
HOSTS = ('cpc1', 'z14host')


def hosts():
    return [h for h in default_hosts() if h.name in HOSTS]


def health_services() -> list[str]:
    return ['', SERVICE_NAME, *(Backend.host_service_name(h) for h in HOSTS)]


def config_file(tmp_path: Path, name: str, hmc, url: str, ttl: int, extra=None) -> Path:
    sections = {'coordination': {'backend_url': url, 'lease_ttl': ttl, 'member_id': name}}
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    return write_config(
        tmp_path / f'{name}.conf', tmp_path / f'{name}.sock', hosts(), sections, hmc=hmc
    )


def in_process(tmp_path: Path, name: str, hmc, url: str, ttl: int, extra=None) -> RunningBackend:
    """A coordinated backend in this process; its RequestLog sees what passes the lease's gate."""
    config = load_config(config_file(tmp_path, name, hmc, url, ttl, extra))
    log = RequestLog()
    backend = Backend(config, interceptors=[log])
    backend.start()
    channel = grpc.insecure_channel(f'unix:{tmp_path / f"{name}.sock"}')
    return RunningBackend(backend, pb_grpc.DPMHostStub(channel), channel, log, hmc)


@dataclasses.dataclass
class Process:
    """A coordinated backend as a process of its own (to kill or SIGSTOP)."""

    popen: subprocess.Popen
    socket: Path
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text()


def as_process(tmp_path: Path, name: str, hmc, url: str, ttl: int, extra=None) -> Process:
    config = config_file(tmp_path, name, hmc, url, ttl, extra)
    log_path = tmp_path / f'{name}.log'
    with log_path.open('w') as log:
        popen = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(popen, tmp_path / f'{name}.sock', log_path)


def health(channel: grpc.Channel, service: str = '', timeout: float = 1.0) -> int | None:
    """The health status of ``service``; None if the backend did not answer in time."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.RpcError:
        return None
    return reply.status


def error_info(exc: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    trailing = dict(exc.trailing_metadata())
    status = status_pb2.Status.FromString(trailing['grpc-status-details-bin'])
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


class HealthSampler:
    """Asks each backend's overall health in turn, round after round, in a thread.

    A round takes a few milliseconds when every backend answers (a stopped
    one costs its timeout); a round in which two backends answer SERVING
    means two served at once.
    """

    def __init__(self, sockets: dict[str, Path], timeout: float = 0.3) -> None:
        self._channels = {
            name: grpc.insecure_channel(f'unix:{path}') for name, path in sockets.items()
        }
        self._timeout = timeout
        self.rounds: list[tuple[float, dict[str, int | None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='health-sampler', daemon=True)

    def __enter__(self) -> HealthSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for channel in self._channels.values():
            channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            statuses = {
                name: health(channel, timeout=self._timeout)
                for name, channel in self._channels.items()
            }
            self.rounds.append((time.monotonic(), statuses))
            self._stop.wait(0.02)

    def both_serving(self) -> list[tuple[float, dict[str, int | None]]]:
        return [r for r in self.rounds if sum(s == SERVING for s in r[1].values()) > 1]

    def serving(self, name: str) -> list[float]:
        """When the backend answered SERVING."""
        return [when for when, statuses in self.rounds if statuses[name] == SERVING]
