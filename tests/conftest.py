"""Fixtures: a backend serving on a unix socket on the shipped mock HMC."""

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
from dpmtest import HostSpec
from dpmtest import RequestLog
from dpmtest import RunningBackend
from dpmtest import load_config
from dpmtest import write_config

from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend.server import Backend


@pytest.fixture
def backend_factory(tmp_path: Path) -> Iterator:
    started: list[RunningBackend] = []

    def start(hosts: list[HostSpec] | None = None, extra=None, interceptors=None) -> RunningBackend:
        index = len(started)
        socket_path = tmp_path / f'b{index}.sock'
        config = load_config(write_config(tmp_path / f'b{index}.conf', socket_path, hosts, extra))
        log = RequestLog()
        backend = Backend(config, interceptors=[log, *(interceptors or [])])
        backend.start()
        # The start-up reachability probe must not count as a test's HMC request.
        end = time.monotonic() + 10
        while not backend.pool.reachability.reachable and time.monotonic() < end:
            if backend.pool.mock and not backend.pool.mock.hmc.enabled:
                break  # a test that starts with the HMC down
            time.sleep(0.01)
        log.clear()
        channel = grpc.insecure_channel(f'unix:{socket_path}')
        running = RunningBackend(backend, pb_grpc.DPMHostStub(channel), channel, log)
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.backend.stop(grace=1)


@pytest.fixture
def running(backend_factory) -> RunningBackend:
    return backend_factory()
