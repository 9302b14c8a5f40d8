"""Fixtures: dpm-hmc-sim served over HTTPS in this process, and real zhmcclient sessions."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from sim.simtest import PASSWORD
from sim.simtest import USERID

from dpm_hmc_sim.testing import ServedSimulator
from dpm_hmc_sim.testing import served


@pytest.fixture(scope='session')
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CA and server certificate for the whole run."""
    return tmp_path_factory.mktemp('hmc-sim-certs')


@pytest.fixture
def serve(cert_dir: Path) -> Iterator[Callable[..., ServedSimulator]]:
    """Start simulators (definition, **settings); all are stopped after the test.

    Start/Stop Partition and FCP discovery jobs take 0.2 s unless set.
    """
    running: list[ServedSimulator] = []

    def start(definition: str = '2.15.0', **settings: object) -> ServedSimulator:
        settings.setdefault('start_seconds', 0.2)
        settings.setdefault('stop_seconds', 0.2)
        settings.setdefault('discover_seconds', 0.2)
        hmc = served(definition, userid=USERID, password=PASSWORD, cert_dir=cert_dir, **settings)
        running.append(hmc)
        return hmc

    yield start
    for hmc in running:
        hmc.stop()


@pytest.fixture
def hmc(serve: Callable[..., ServedSimulator]) -> ServedSimulator:
    """An HMC 2.15.0 with 0.2 s Start/Stop jobs."""
    return serve('2.15.0')
