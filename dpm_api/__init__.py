"""Generated DPMHost API stubs (from protos/dpm_api); do not edit."""
