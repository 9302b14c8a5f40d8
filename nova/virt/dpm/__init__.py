"""Lets nova-compute load the DPM driver as ``compute_driver = dpm.DPMDriver``.

Nova imports ``nova.virt.<compute_driver>`` only, so this package is installed
into nova's tree by the project's wheel; the driver itself is dpm_frontend.
"""

from dpm_frontend.driver import DPMDriver

__all__ = ['DPMDriver']
