"""The DPMHost API: stubs generated from protos/dpm_api (do not edit them) and its contract."""
