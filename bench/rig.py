"""A backend on the bench mock HMC and Nova drivers wired to it over gRPC.

The backend runs in this process on a unix socket with a ``Meter`` at its
session seam; each Nova host gets its own ``DPMDriver`` (its own channel, as
separate nova-compute processes would have). Nova's database is not involved:
instances are Nova objects whose ``save()`` does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator

# nova-compute runs in native threading mode (gRPC cannot run under eventlet).
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')


from bench.meter import Meter  # noqa: E402
from dpm_frontend.demo import fc_block_device_info  # noqa: E402
from dpm_frontend.demo import mock_inventory  # noqa: E402

DEFINITION = pathlib.Path(__file__).with_name('mock_hmc.yaml')


INVENTORY = mock_inventory(str(DEFINITION))


@dataclasses.dataclass(frozen=True)
class HostDef:
    name: str
    vhbas: int = 1  # physical_storage_adapter_mappings (m)
    max_processors: int = 16
    max_memory: int = 16384


def config_text(socket_path: str, hosts: list[HostDef], backend: dict | None = None) -> str:
    lines = [
        '[hmc]',
        f'mock_definition = {DEFINITION}',
        'userid = bench',
        'password = bench-password',
        'probe_interval = 1',
        *(f'{k} = {v}' for k, v in (backend or {}).get('hmc', {}).items()),
        '[backend]',
        f'listen = unix:{socket_path}',
        f'hosts = {",".join(h.name for h in hosts)}',
        'grace_period = 5',
        *(f'{k} = {v}' for k, v in (backend or {}).get('backend', {}).items()),
    ]
    for host in hosts:
        lines += [
            f'[host:{host.name}]',
            f'cpc_object_id = {INVENTORY["cpc"]}',
            f'max_processors = {host.max_processors}',
            f'max_memory = {host.max_memory}',
        ]
        lines += [
            f'physical_storage_adapter_mappings = {fcp}:0' for fcp in INVENTORY['fcp'][: host.vhbas]
        ]
    return '\n'.join(lines) + '\n'


def nova():
    """Nova's modules, imported once the environment is set."""
    from nova.compute import provider_tree
    from nova.conf import CONF
    from nova.network import model as network_model

    from dpm_frontend import conf as dpm_conf
    from dpm_frontend.driver import DPMDriver
    from nova import objects
    from nova.virt import fake

    objects.register_all()
    dpm_conf.register_opts(CONF)
    return CONF, objects, network_model, provider_tree, fake, DPMDriver


def host_driver(host: str):
    """A DPMDriver for ``host``; nova-compute would take it from [DEFAULT]host."""
    _, _, _, _, fake, dpm_driver = nova()

    class HostDriver(dpm_driver):
        @property
        def _host(self) -> str:
            return host

    return HostDriver(fake.FakeVirtAPI())


def new_instance(host: str, vcpus: int = 1, memory_mb: int = 512, instance_uuid: str = ''):
    _, objects, _, _, _, _ = nova()

    class BenchInstance(objects.Instance):
        def save(self, *args, **kwargs):
            """No database: keep system_metadata in the object."""

    return BenchInstance(
        uuid=instance_uuid or str(uuid.uuid4()),
        host=host,
        image_ref='',
        system_metadata={},
        flavor=objects.Flavor(vcpus=vcpus, memory_mb=memory_mb),
    )


def network_info(nics: int, seed: int = 0):
    """``nics`` dpm_vswitch ports spread over the CPC's virtual switches."""
    _, _, network_model, _, _, _ = nova()
    vswitches = INVENTORY['vswitches']
    return network_model.NetworkInfo(
        [
            network_model.VIF(
                id=str(uuid.uuid4()),
                address=f'fa:16:3e:{seed // 256 % 256:02x}:{seed % 256:02x}:{index:02x}',
                type='dpm_vswitch',
                details={'object_id': vswitches[index % len(vswitches)]},
                active=True,
            )
            for index in range(nics)
        ]
    )


block_device_info = fc_block_device_info


def provider_tree_for(driver, host: str):
    _, _, _, provider_tree, _, _ = nova()
    tree = provider_tree.ProviderTree()
    tree.new_root(host, driver._node_uuid)
    return tree


def point_nova_at(address: str) -> None:
    conf_nova, _, _, _, _, _ = nova()
    conf_nova.set_override('backend', address, group='dpm')
    conf_nova.set_override('retry_interval', 0.2, group='dpm')
    conf_nova.set_override('vif_plugging_timeout', 0)


def forget_nova_overrides() -> None:
    conf_nova, _, _, _, _, _ = nova()
    conf_nova.clear_override('backend', group='dpm')
    conf_nova.clear_override('retry_interval', group='dpm')
    conf_nova.clear_override('vif_plugging_timeout')


def expire_caches(backend) -> None:
    """Forget what the backend reuses between calls for a short time.

    Nova's periodic tasks run minutes apart, longer than any short-lived
    snapshot lives; measuring with the snapshot expired counts what one
    such cycle really costs. CPC facts (``[hmc] cpc_cache_ttl``) stay.
    """
    snapshots = getattr(getattr(backend, 'servicer', None), 'snapshots', None)
    if snapshots is not None:
        snapshots.clear()


class Rig:
    """One in-process backend with a Meter, and a driver per host."""

    def __init__(self, workdir: pathlib.Path, hosts: list[HostDef], meter: Meter, options=None):
        from oslo_config import cfg

        from dpm_backend import config as config_mod
        from dpm_backend.server import Backend

        socket_path = workdir / 'backend.sock'
        config_file = workdir / 'backend.conf'
        config_file.write_text(config_text(str(socket_path), hosts, options))
        config = config_mod.load(['--config-file', str(config_file)], cfg.ConfigOpts())
        self.meter = meter
        self.backend = Backend(config, interceptors=[meter])
        self.backend.start()
        self.address = f'unix:{socket_path}'
        point_nova_at(self.address)
        self.drivers = {h.name: host_driver(h.name) for h in hosts}

    @property
    def faked_cpc(self):
        return self.backend.pool.mock.hmc.cpcs.lookup_by_oid(INVENTORY['cpc'])

    def close(self) -> None:
        for name, driver in self.drivers.items():
            driver.cleanup_host(name)
        forget_nova_overrides()
        self.backend.stop(grace=2)


@contextlib.contextmanager
def rig(hosts: list[HostDef], meter: Meter | None = None, options=None) -> Iterator[Rig]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-'))
    running = None
    try:
        running = Rig(workdir, hosts, meter or Meter(), options)
        yield running
    finally:
        if running is not None:
            running.close()
        shutil.rmtree(workdir, ignore_errors=True)


def boot(driver, instance, nics: int, seed: int = 0):
    """prepare_for_spawn, get_volume_connector, spawn: nova-compute's boot order."""
    vifs = network_info(nics, seed)
    driver.prepare_for_spawn(instance)
    wwpns = driver.get_volume_connector(instance)['wwpns']
    driver.spawn(None, instance, None, [], None, {}, vifs, block_device_info(wwpns))
    return vifs


class Served:
    """A backend in a child process (bench.serve), and a driver per host."""

    def __init__(self, workdir: pathlib.Path, hosts: list[HostDef], latency, job_delay, options):
        import subprocess
        import sys
        import time

        socket_path = workdir / 'backend.sock'
        config_file = workdir / 'backend.conf'
        config_file.write_text(config_text(str(socket_path), hosts, options))
        self._report = workdir / 'report.json'
        self.process = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'bench.serve',
                str(config_file),
                str(latency),
                str(job_delay),
                str(self._report),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 60
        while not socket_path.exists():
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError('the bench backend did not start')
            time.sleep(0.05)
        self.address = f'unix:{socket_path}'
        point_nova_at(self.address)
        self.drivers = {h.name: host_driver(h.name) for h in hosts}
        self.report: dict = {}

    def close(self) -> None:
        import json
        import signal

        for name, driver in self.drivers.items():
            driver.cleanup_host(name)
        forget_nova_overrides()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        if self._report.exists():
            self.report = json.loads(self._report.read_text())


@contextlib.contextmanager
def served(hosts: list[HostDef], latency=0.0, job_delay=0.0, options=None) -> Iterator[Served]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-'))
    running = None
    try:
        running = Served(workdir, hosts, latency, job_delay, options)
        yield running
    finally:
        if running is not None:
            running.close()
        shutil.rmtree(workdir, ignore_errors=True)
