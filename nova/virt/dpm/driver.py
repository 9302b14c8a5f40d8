"""``compute_driver = dpm.driver.DPMDriver`` also works."""

from dpm_frontend.driver import DPMDriver

__all__ = ['DPMDriver']
