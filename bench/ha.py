"""High availability: how long a standby takes over, and what the HMC's lock costs a spawn.

Takeover (``takeover``): two ``dpm-backend`` processes of one HMC (dpm-hmc-sim
in this process) on an etcd of the bench's own (loopback, a temporary data
directory). The active one is killed (SIGKILL) or stopped (SIGTERM); the
time counts from the signal until the other answers health SERVING and a
GetHostStatus succeeds. The roles then swap: the stopped one starts again as
the standby. After a kill the lock lives on until its lease expires: about
``lease_ttl`` less the time since the last refresh (every ttl/4), plus the
standby's retry (0.5 s) and its host checks. A graceful stop releases the
lock, so the standby acquires it at its next retry.

Coordination cost (``coordination_cost``): the same boot from volume
(prepare_for_spawn, get_volume_connector, spawn) through the driver on one
in-process backend, with and without ``[coordination]``, on a simulator
whose requests take ``HMC_LATENCY`` and whose Start job takes a second,
checked every 10 ms (``FAST_JOBS``: the wait is not rounded to a 0.2 s poll,
and the polls pass the lease's gate too).
Blocks of each mode alternate, so that a slower spell of the machine falls
on both. The HMC requests per boot must be the same in both modes: the
lease's gate adds none.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from bench import hmc as hmc_mod
from bench import rig as rig_mod
from bench.rig import HostDef
from bench.scenarios import HMC_LATENCY

ETCD = shutil.which('etcd') or '/usr/bin/etcd'
PROFILE = '2.15.0'
HOST = HostDef('ha0', vhbas=1)
NICS = 1
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Seconds a standby is given to try the held lock before the active one is stopped.
SETTLE_S = 1.0
# Seconds beyond lease_ttl the takeover may take (the target).
TAKEOVER_MARGIN_S = 2.0
# Percent the coordinated boot may take longer than the plain one (the target).
COST_PERCENT = 2.0
# Seconds of the Start Partition job in the cost scenario.
START_SECONDS = 1.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def etcd() -> Iterator[str]:
    """A single-member etcd on loopback with a temporary data directory; its tooz URL."""
    if not pathlib.Path(ETCD).exists():
        raise RuntimeError('etcd is not installed: apt-get install etcd-server')
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-etcd-'))
    client = f'http://127.0.0.1:{_free_port()}'
    peer = f'http://127.0.0.1:{_free_port()}'
    process = subprocess.Popen(
        [
            ETCD,
            '--name=bench',
            f'--data-dir={workdir / "data"}',
            f'--listen-client-urls={client}',
            f'--advertise-client-urls={client}',
            f'--listen-peer-urls={peer}',
            f'--initial-advertise-peer-urls={peer}',
            f'--initial-cluster=bench={peer}',
            '--initial-cluster-state=new',
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _etcd_healthy(client), 30, 'etcd did not become healthy', process)
        yield f'etcd3+http://{client.removeprefix("http://")}'
    finally:
        process.kill()
        process.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)


def _etcd_healthy(client: str) -> bool:
    try:
        # An http URL of our own making, on loopback.
        with urllib.request.urlopen(f'{client}/health', timeout=1) as reply:  # noqa: S310
            return b'"health":"true"' in reply.read().replace(b' ', b'')
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str, process=None, interval: float = 0.02) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f'{what}: the process exited with {process.returncode}')
        if time.monotonic() > end:
            raise RuntimeError(what)
        time.sleep(interval)


def coordination(url: str, ttl: int, member: str) -> dict:
    return {'coordination': {'backend_url': url, 'lease_ttl': ttl, 'member_id': member}}


# --- takeover ---------------------------------------------------------------------------


class _Backend:
    """A coordinated dpm-backend process on a unix socket, and a channel to it."""

    def __init__(self, workdir: pathlib.Path, name: str, served, inventory, url, ttl) -> None:
        socket_path = workdir / f'{name}.sock'
        config = workdir / f'{name}.conf'
        options = {'hmc': rig_mod.FAST_JOBS, **coordination(url, ttl, name)}
        config.write_text(rig_mod.config_text(str(socket_path), served, inventory, [HOST], options))
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        rig_mod.wait_for_socket(self.process, socket_path, f'dpm-backend {name}')
        self.channel = grpc.insecure_channel(f'unix:{socket_path}')

    def health(self) -> int | None:
        try:
            return (
                health_pb2_grpc.HealthStub(self.channel)
                .Check(health_pb2.HealthCheckRequest(), timeout=1)
                .status
            )
        except grpc.RpcError:
            return None

    def host_status(self) -> bool:
        from dpm_api.v1 import dpm_host_pb2 as pb
        from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc

        try:
            pb_grpc.DPMHostStub(self.channel).GetHostStatus(
                pb.GetHostStatusRequest(host=HOST.name), timeout=2
            )
        except grpc.RpcError:
            return False
        return True

    def end(self, signum: int = signal.SIGKILL) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=10)
        self.channel.close()
        return code


def _handover(active: _Backend, standby: _Backend, signum: int, ttl: int) -> dict:
    """Signal the active backend; seconds until the standby serves and answers GetHostStatus."""
    sent = time.monotonic()
    active.process.send_signal(signum)
    _wait(
        lambda: standby.health() == SERVING, ttl + 60, f'{standby.name} never served', interval=0.01
    )
    serving = time.monotonic()
    _wait(standby.host_status, 30, f'{standby.name} never answered GetHostStatus', interval=0.01)
    answered = time.monotonic()
    code = active.end(signum)
    return {
        'serving_s': round(serving - sent, 3),
        'host_status_s': round(answered - sent, 3),
        'exit_code': code,
    }


def _summary(runs: list[dict], ttl: int) -> dict:
    took = [r['host_status_s'] for r in runs]
    return {
        'repeats': len(runs),
        'median_s': round(statistics.median(took), 3),
        'max_s': max(took),
        'target_s': ttl + TAKEOVER_MARGIN_S,
        'runs': runs,
    }


def takeover(ttl: int = 4, kills: int = 5, stops: int = 3, profile: str = PROFILE) -> dict:
    """Handovers between two backend processes: ``kills`` by SIGKILL, then ``stops`` by SIGTERM."""
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-ha-'))
    runs: dict[str, list] = {'kill': [], 'stop': []}
    running: list[_Backend] = []
    try:
        with (
            hmc_mod.simulator(profile, start_seconds=0, stop_seconds=0) as served,
            etcd() as url,
        ):

            def start(name: str, status: int) -> _Backend:
                backend = _Backend(workdir, name, served, inventory, url, ttl)
                running.append(backend)
                _wait(lambda: backend.health() == status, 60, f'{name} never reached {status}')
                return backend

            active = start('a', SERVING)
            standby = start('b', NOT_SERVING)
            plan = [('kill', signal.SIGKILL)] * kills + [('stop', signal.SIGTERM)] * stops
            for kind, signum in plan:
                time.sleep(SETTLE_S)
                runs[kind].append(_handover(active, standby, signum, ttl))
                running.remove(active)
                active, standby = standby, start(active.name, NOT_SERVING)
            records = served.sim.requests()
    finally:
        for backend in running:
            backend.end(signal.SIGTERM)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        'profile': profile,
        'lease_ttl': ttl,
        'kill_9': _summary(runs['kill'], ttl),
        'sigterm': _summary(runs['stop'], ttl) if runs['stop'] else None,
        'rejected': len(hmc_mod.rejected(records)),
    }


# --- coordination cost --------------------------------------------------------------------


def _boots(running, count: int) -> list:
    """``count`` measured boots (snapshots expired, as every measured span), each destroyed."""
    driver = running.drivers[HOST.name]
    vswitches = running.inventory['vswitches']
    measured = []
    for seed in range(count + 1):
        instance = rig_mod.new_instance(HOST.name)
        vifs: list = []

        def boot(instance=instance, seed=seed, vifs=vifs) -> None:
            vifs[:] = rig_mod.boot(driver, instance, vswitches, NICS, seed)

        m = running.measure(boot)
        driver.destroy(None, instance, vifs)
        if seed:  # the first boot meets cold caches: a warm-up
            measured.append(m)
    return measured


def coordination_cost(spawns: int = 10, blocks: int = 2, profile: str = PROFILE) -> dict:
    """The same boot from volume with and without [coordination]; ``spawns`` of each."""
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    per_block = max(1, spawns // blocks)
    measured: dict[str, list] = {'plain': [], 'coordinated': []}
    with (
        hmc_mod.simulator(profile, start_seconds=START_SECONDS, stop_seconds=0) as served,
        etcd() as url,
    ):
        served.sim.configure(latency=HMC_LATENCY)
        try:
            for block in range(blocks):
                for mode in ('plain', 'coordinated'):
                    options = {'hmc': rig_mod.FAST_JOBS}
                    if mode == 'coordinated':
                        options.update(coordination(url, 10, f'cost{block}'))
                    with rig_mod.rig(served, inventory, [HOST], options) as running:
                        measured[mode] += _boots(running, per_block)
        finally:
            served.sim.configure(latency=0)
        records = served.sim.requests()
    result: dict = {
        'profile': profile,
        'latency_ms': HMC_LATENCY * 1000,
        'start_seconds': START_SECONDS,
        'nics': NICS,
        'vhbas': HOST.vhbas,
        'rejected': len(hmc_mod.rejected(records)),
        'modes': {},
    }
    for mode, boots in measured.items():
        result['modes'][mode] = {
            'spawns': len(boots),
            'median_s': round(statistics.median(m.seconds for m in boots), 4),
            'seconds': [round(m.seconds, 4) for m in boots],
            # HMC requests per boot besides polling (every boot alike), and polling.
            'work': sorted({m.hmc.work for m in boots}),
            'seam_work': sorted({m.seam.work for m in boots}),
            'polling': [m.hmc.polling for m in boots],
        }
    plain, coordinated = (result['modes'][m]['median_s'] for m in ('plain', 'coordinated'))
    result['added_percent'] = round((coordinated - plain) / plain * 100, 2)
    return result


# --- the whole scenario, its targets, its report ------------------------------------------


def ha(quick: bool = False) -> dict:
    if quick:
        return {'coordination_cost': coordination_cost(spawns=2, blocks=1)}
    return {
        'takeover': [takeover(ttl=4), takeover(ttl=10, kills=1, stops=0)],
        'coordination_cost': coordination_cost(),
    }


def targets(data: dict) -> dict:
    """The scenario's targets, shaped as bench.run's (met, measured, target)."""
    judged = {}
    for entry in data.get('takeover', []):
        ttl = entry['lease_ttl']
        for kind in ('kill_9', 'sigterm'):
            summary = entry[kind]
            if not summary:
                continue
            judged[f'ha_takeover_{kind}_ttl_{ttl}'] = {
                'met': summary['max_s'] <= summary['target_s'] and not entry['rejected'],
                'measured': {k: summary[k] for k in ('median_s', 'max_s', 'repeats')},
                'target': f'<= lease_ttl + {TAKEOVER_MARGIN_S:g} s ({summary["target_s"]:g} s) '
                'until the standby serves and GetHostStatus answers, every repeat',
            }
    cost = data['coordination_cost']
    modes = cost['modes']
    work = {mode: m['work'] for mode, m in modes.items()}
    judged['ha_coordination_requests'] = {
        'met': len({tuple(w) for w in work.values()}) == 1
        and all(len(w) == 1 for w in work.values())
        and all(m['seam_work'] == m['work'] for m in modes.values())
        and not cost['rejected'],
        'measured': work,
        'target': 'the same HMC requests per boot (besides polling) with and without '
        '[coordination], none refused',
    }
    if 'takeover' in data:
        judged['ha_coordination_added'] = {
            'met': cost['added_percent'] <= COST_PERCENT,
            'measured': cost['added_percent'],
            'target': f'<= {COST_PERCENT:g} % added to the median boot '
            f'({cost["latency_ms"]:g} ms per HMC request, Start job {cost["start_seconds"]:g} s)',
        }
    return judged


def table(data: dict | None) -> list[str]:
    """The scenario's section of the printed report (none if it did not run)."""
    if not data:
        return []
    lines = ['', '## High availability: active/standby backends on etcd', '']
    for entry in data.get('takeover', []):
        for kind, label in (('kill_9', 'kill -9'), ('sigterm', 'SIGTERM')):
            s = entry[kind]
            if s:
                lines.append(
                    f'- takeover after {label}, lease_ttl {entry["lease_ttl"]} s: median '
                    f'{s["median_s"]} s, max {s["max_s"]} s over {s["repeats"]} '
                    f'(target <= {s["target_s"]:g} s)'
                )
    cost = data['coordination_cost']
    plain, coordinated = cost['modes']['plain'], cost['modes']['coordinated']
    lines.append(
        f'- boot from volume ({cost["nics"]} NIC, {cost["vhbas"]} vHBA; '
        f'{cost["latency_ms"]:g} ms per HMC request, Start job {cost["start_seconds"]:g} s): '
        f'median {plain["median_s"]} s alone, {coordinated["median_s"]} s with '
        f'[coordination] ({cost["added_percent"]:+g} %, {plain["spawns"]} and '
        f'{coordinated["spawns"]} boots); HMC requests besides polling {plain["work"]} and '
        f'{coordinated["work"]}'
    )
    return lines


if __name__ == '__main__':
    import json
    import logging

    logging.basicConfig(level=logging.ERROR)
    measured = ha()
    print(json.dumps(measured, indent=2))
    print('\n'.join(table(measured)))
