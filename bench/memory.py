"""Resident memory of a dpm-backend process serving 8 hosts, 80 instances (on the simulator)."""

from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent import futures

from bench import hmc as hmc_mod
from bench import rig as rig_mod
from bench.rig import FAST_JOBS
from bench.rig import HostDef


def _status_kib(pid: int) -> dict[str, int]:
    values = {}
    with open(f'/proc/{pid}/status', encoding='ascii') as stream:
        for line in stream:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(rest.split()[0])
    return values


def backend_rss(profile: str = '2.15.0', hosts: int = 8, per_host: int = 10) -> dict:
    defs = [HostDef(f'mem{i}') for i in range(hosts)]
    inventory = hmc_mod.inventory(hmc_mod.definition(profile), hmc_mod.VHBA_CPC)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-mem-'))
    socket_path = workdir / 'backend.sock'
    config_file = workdir / 'backend.conf'
    drivers = {}
    process = None
    try:
        with hmc_mod.simulator_process(profile, start_seconds=0, stop_seconds=0) as sim:
            options = {'hmc': FAST_JOBS}
            config_file.write_text(
                rig_mod.config_text(str(socket_path), sim, inventory, defs, options)
            )
            process = subprocess.Popen(
                [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(config_file)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                rig_mod.wait_for_socket(process, socket_path, 'dpm-backend')
                rig_mod.point_nova_at(f'unix:{socket_path}')
                drivers = {h.name: rig_mod.host_driver(h.name) for h in defs}
                for name, driver in drivers.items():
                    driver.get_available_resource(name)
                started = _status_kib(process.pid)
                instances = [rig_mod.new_instance(h.name) for h in defs for _ in range(per_host)]
                vswitches = inventory['vswitches']
                with futures.ThreadPoolExecutor(8) as pool:
                    list(
                        pool.map(
                            lambda i: rig_mod.boot(drivers[i.host], i, vswitches, 1, hash(i.uuid)),
                            instances,
                        )
                    )
                for name, driver in drivers.items():
                    driver.get_available_resource(name)
                    driver.list_instance_uuids()
                    for instance in instances:
                        if instance.host == name:
                            driver.get_info(instance)
                loaded = _status_kib(process.pid)
            finally:
                for name, driver in drivers.items():
                    driver.cleanup_host(name)
                rig_mod.forget_nova_overrides()
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            rejected = hmc_mod.rejected(sim.requests())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        'profile': profile,
        'hosts': hosts,
        'instances': hosts * per_host,
        'rss_started_mib': round(started['VmRSS'] / 1024, 1),
        'rss_serving_mib': round(loaded['VmRSS'] / 1024, 1),
        'peak_rss_mib': round(loaded['VmHWM'] / 1024, 1),
        'exit_code': process.returncode,
        'rejected_count': len(rejected),
    }
