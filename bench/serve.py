"""A dpm-backend process with a Meter at its session seam (the many-hosts scenario).

``python -m bench.serve CONFIG REPORT``: serves like ``dpm-backend`` until
SIGTERM, then drains and writes what the pool and the Meter saw to REPORT
(JSON). Nova hosts, the backend and the HMC run in separate processes in
production; so do they here.
"""

from __future__ import annotations

import json
import signal
import sys
import threading


def main(argv: list[str]) -> int:
    from oslo_config import cfg

    from bench.meter import Meter
    from dpm_backend import config as config_mod
    from dpm_backend.server import Backend

    config_file, report = argv
    config = config_mod.load(['--config-file', config_file], cfg.ConfigOpts())
    meter = Meter()
    backend = Backend(config, interceptors=[meter])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    backend.start()
    stop.wait()
    backend.stop()
    with open(report, 'w', encoding='utf-8') as stream:
        json.dump(
            {
                'pool_size': config.hmc.pool_size,
                'sessions_opened': backend.pool.sessions_created,
                'seam_requests': len(meter.requests()),
            },
            stream,
        )
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
