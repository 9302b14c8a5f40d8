"""`make bench`: run the scenarios on each HMC simulator profile, print the tables, write JSON.

Everything runs on loopback: dpm-hmc-sim (HTTPS), the backend (a unix
socket), Nova drivers in this process. Every server and process started is
stopped before the run ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import time

RESULTS = pathlib.Path(__file__).with_name('results.json')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench', description=__doc__)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='HMC request counts only, no timing scenarios (what make test runs)',
    )
    parser.add_argument('--output', type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    from bench import report
    from bench import run

    started = time.monotonic()
    results = run.run(quick=args.quick)
    results['elapsed_s'] = round(time.monotonic() - started, 1)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + '\n')
    print(report.table(results))
    print(f'\nwritten to {args.output} in {results["elapsed_s"]} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
