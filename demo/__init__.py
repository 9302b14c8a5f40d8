"""`make demo`: nova-compute's calls through DPMDriver to a backend on the HMC simulator.

Not part of any installed package: compute nodes get ``dpm_frontend`` only.
"""
