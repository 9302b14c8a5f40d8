"""An HMC simulator that stands where a real HMC stands.

It serves zhmcclient's own mock HMC (a FakedHmc loaded from an HMC definition)
over HTTPS on loopback, with the rules of real HMC versions that the mock lacks
(profiles.py, rules.py).
"""
