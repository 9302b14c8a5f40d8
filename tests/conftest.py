"""Fixtures: the HMC simulator over HTTPS, and a backend serving on a unix socket."""

from __future__ import annotations

import os
import time

# nova-compute runs in native threading mode (gRPC cannot run under eventlet);
# this must be set before anything imports nova.
os.environ['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = '1'

from collections.abc import Iterator
from pathlib import Path

import grpc

# Nova's test packages set up threading mode (and forbid eventlet) on import;
# collected first, they come before any test module that imports nova.
import nova.tests.functional
import nova.tests.unit  # noqa: F401
import pytest
from dpmtest import DEFAULT_PROFILE
from dpmtest import HostSpec
from dpmtest import RequestLog
from dpmtest import RunningBackend
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import simulator
from dpmtest import write_config
from etcd import Etcd

from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.server import Backend


@pytest.fixture(scope='session')
def simulators():
    """The simulator of an HMC profile, served over HTTPS in this process (dpmtest.simulator).

    The backend talks to it through a real zhmcclient Session, exactly as to
    an HMC; tests read its state directly (``.sim.hmc``).
    """
    return simulator


@pytest.fixture
def hmc_sim(simulators, request):
    """A pristine simulator of the default profile (or of ``request.param``)."""
    simulator = simulators(getattr(request, 'param', DEFAULT_PROFILE))
    pristine(simulator)
    return simulator


@pytest.fixture
def backend_factory(tmp_path: Path, hmc_sim) -> Iterator:
    started: list[RunningBackend] = []

    def start(hosts: list[HostSpec] | None = None, extra=None, interceptors=None) -> RunningBackend:
        index = len(started)
        socket_path = tmp_path / f'b{index}.sock'
        config_file = write_config(
            tmp_path / f'b{index}.conf', socket_path, hosts, extra, hmc=hmc_sim
        )
        config = load_config(config_file)
        log = RequestLog()
        backend = Backend(config, interceptors=[log, *(interceptors or [])])
        backend.start()
        # The start-up probe and host checks must not count as a test's HMC requests.
        end = time.monotonic() + 10
        while time.monotonic() < end and hmc_sim.sim.enabled:
            if backend.pool.reachability.reachable and backend.hosts_checked():
                break
            time.sleep(0.01)
        log.clear()
        channel = grpc.insecure_channel(f'unix:{socket_path}')
        running = RunningBackend(backend, pb_grpc.DPMHostStub(channel), channel, log, hmc_sim)
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.backend.stop(grace=1)


@pytest.fixture
def running(backend_factory) -> RunningBackend:
    return backend_factory()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    """An etcd of the test's own on loopback (tests/etcd.py): the coordination service."""
    server = Etcd(tmp_path / 'etcd')
    server.start()
    yield server
    server.kill()
