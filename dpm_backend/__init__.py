"""The dpm-backend process: all HMC work for the Nova hosts of one HMC, over gRPC."""
