"""Nova compute driver for DPM: translates Nova calls into DPMHost calls."""
