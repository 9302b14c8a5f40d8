"""End-to-end tests run once per HMC version that manages a CPC with vHBAs."""

from __future__ import annotations

import pytest
from dpmtest import VHBA_PROFILES
from dpmtest import pristine


@pytest.fixture(params=VHBA_PROFILES, ids=lambda profile: f'hmc{profile}')
def hmc_sim(simulators, request):
    """A pristine simulator of each vHBA profile (HMC 2.14.1, 2.15.0)."""
    simulator = simulators(request.param)
    pristine(simulator)
    return simulator
