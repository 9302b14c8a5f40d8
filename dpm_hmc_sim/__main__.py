"""``python -m dpm_hmc_sim``: the dpm-hmc-sim command."""

import sys

from dpm_hmc_sim.server import main

sys.exit(main())
