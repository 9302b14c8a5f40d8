"""An HMC simulator that stands where a real HMC stands.

It serves zhmcclient's own mock HMC (a FakedHmc loaded from an HMC definition)
over HTTPS on loopback, with the rules of real HMC versions that the mock lacks:
version-dependent query parameters, asynchronous Start/Stop Partition jobs,
sessions that expire, and more (profiles.py, rules.py). A real
``zhmcclient.Session`` works against it unchanged.
"""

from dpm_hmc_sim.core import Reply
from dpm_hmc_sim.core import RequestRecord
from dpm_hmc_sim.core import Settings
from dpm_hmc_sim.core import Simulator
from dpm_hmc_sim.definition import DefinitionError

__all__ = ['DefinitionError', 'Reply', 'RequestRecord', 'Settings', 'Simulator']
