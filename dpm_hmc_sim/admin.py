"""The simulator's admin interface over HTTPS, for a simulator in another process.

Paths under ``/_sim/`` (which no HMC has) map onto the Simulator's Python API.
They need no session, are not in the request log, and answer during an outage,
so a test can end the outage. There is no authentication: the command listens on
loopback only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from dpm_hmc_sim.core import Simulator

PREFIX = '/_sim/'

Handler = Callable[[Simulator, dict[str, Any]], Any]


def _configure(sim: Simulator, body: dict[str, Any]) -> Any:
    return dataclasses.asdict(sim.configure(**body))


def _set_outcome(sim: Simulator, body: dict[str, Any]) -> Any:
    # 'partition', or 'name' (a partition or, for 'discover', a storage group).
    name = body['name'] if 'name' in body else body['partition']
    sim.set_outcome(str(name), str(body['operation']), str(body['outcome']))
    return None


def _expose_lun(sim: Simulator, body: dict[str, Any]) -> Any:
    # One LUN in fabric.py's dict form.
    return sim.expose_lun(
        body['target-world-wide-port-name'],
        body['logical-unit-number'],
        size=body.get('size'),
        host_wwpns=body.get('host-world-wide-port-names'),
        uuid=body.get('uuid'),
    )


def _guest_status(sim: Simulator, body: dict[str, Any]) -> Any:
    return {'old-status': sim.guest_status(str(body['partition']), str(body['status']))}


def _reset(sim: Simulator, body: dict[str, Any]) -> Any:
    sim.reset()
    return None


def _clear_requests(sim: Simulator, body: dict[str, Any]) -> Any:
    sim.clear_requests()
    return None


ROUTES: dict[tuple[str, str], Handler] = {
    ('GET', 'state'): lambda sim, body: sim.dump(),
    ('GET', 'config'): lambda sim, body: dataclasses.asdict(sim.settings),
    ('POST', 'config'): _configure,
    ('POST', 'reset'): _reset,
    ('POST', 'outcome'): _set_outcome,
    ('POST', 'guest-status'): _guest_status,
    ('GET', 'fabric'): lambda sim, body: sim.fabric,
    ('POST', 'fabric'): lambda sim, body: sim.set_fabric(body),
    ('POST', 'fabric/luns'): _expose_lun,
    ('GET', 'sessions'): lambda sim, body: sim.session_counts(),
    ('POST', 'sessions/expire'): lambda sim, body: {'expired': sim.expire_sessions()},
    ('GET', 'requests'): lambda sim, body: [dataclasses.asdict(r) for r in sim.requests()],
    ('POST', 'requests/clear'): _clear_requests,
}


def handle(sim: Simulator, method: str, path: str, raw_body: bytes | None) -> tuple[int, Any]:
    """(HTTP status, JSON body or None) for one admin request."""
    route = ROUTES.get((method, path.partition('?')[0].removeprefix(PREFIX)))
    if route is None:
        return 404, {'message': f'no admin operation {method} {path}'}
    try:
        body = json.loads(raw_body) if raw_body else {}
        if not isinstance(body, dict):
            raise ValueError('the body must be a JSON object')
        result = route(sim, body)
    except (ValueError, KeyError, TypeError) as exc:
        return 400, {'message': f'{type(exc).__name__}: {exc}'}
    return (200, result) if result is not None else (204, None)
