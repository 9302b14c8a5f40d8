"""A dpm-backend process with a Meter at its session seam (scenarios 4 and 5).

``python -m bench.serve CONFIG LATENCY JOB_DELAY REPORT``: serves like
``dpm-backend`` until SIGTERM, then drains and writes what the Meter and the
pool saw to REPORT (JSON). Nova hosts and the backend run in separate
processes in production; so do they here.
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

    config_file, latency, job_delay, report = argv
    config = config_mod.load(['--config-file', config_file], cfg.ConfigOpts())
    meter = Meter(latency=float(latency), job_delay=float(job_delay))
    backend = Backend(config, interceptors=[meter])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    backend.start()
    stop.wait()
    backend.stop()
    requests = meter.requests()
    with open(report, 'w', encoding='utf-8') as stream:
        json.dump(
            {
                'pool_size': config.hmc.pool_size,
                'sessions_opened': backend.pool.sessions_created,
                'logons': sum(1 for m, u in requests if m == 'POST' and u == '/api/sessions'),
                'logoffs': sum(
                    1 for m, u in requests if m == 'DELETE' and u.startswith('/api/sessions/')
                ),
                'requests': len(requests),
            },
            stream,
        )
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
