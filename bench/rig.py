"""A backend on a simulated HMC, and Nova drivers wired to it over gRPC.

The backend runs in this process (``Rig``) or in a child process
(``Served``, ``bench.serve``) on a unix socket; it talks to dpm-hmc-sim
(``bench.hmc``) through a real zhmcclient Session over HTTPS, with the
simulator's CA as ``[hmc] ca_file``. Each Nova host gets its own
``DPMDriver`` (its own channel, as separate nova-compute processes would
have). Nova's database is not involved: instances are Nova objects whose
``save()`` does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

# nova-compute runs in native threading mode (gRPC cannot run under eventlet).
os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

from bench import hmc as hmc_mod  # noqa: E402
from bench.meter import Counts  # noqa: E402
from bench.meter import Meter  # noqa: E402

# The boot volume's target port (any WWPN; the backend boots the first target).
BOOT_TARGET_WWPN = '500507680B2142E5'
# Options of a bench backend: the simulator's jobs end at once unless a
# scenario gives them a duration, so check them right away.
FAST_JOBS = {'job_poll_interval': 0.01}


@dataclasses.dataclass(frozen=True)
class HostDef:
    name: str
    # physical_storage_adapter_mappings: the vHBAs of a partition on a z13 (m);
    # on a CPC with storage groups, the adapter ports the host's groups use.
    vhbas: int = 1
    max_processors: int = 16
    max_memory: int = 16384
    # The host's CPC (bench.hmc.inventory) when it is not the rig's: one
    # backend serving hosts on two CPCs (a cold migration between them).
    inventory: dict | None = dataclasses.field(default=None, compare=False)


def config_text(
    socket_path: str, endpoint, inventory: dict, hosts: list[HostDef], options=None
) -> str:
    """A backend config for the simulator at ``endpoint`` (host, port, ca_file)."""
    options = options or {}
    hmc_options = {'probe_interval': 1, **options.get('hmc', {})}
    lines = [
        '[hmc]',
        f'hosts = {endpoint.host}',
        f'port = {endpoint.port}',
        f'ca_file = {endpoint.ca_file}',
        f'userid = {hmc_mod.USERID}',
        f'password = {hmc_mod.PASSWORD}',
        *(
            [f'stomp_port = {endpoint.stomp_port}']
            if getattr(endpoint, 'stomp_port', None)
            else ['notifications = false']
        ),
        *(f'{k} = {v}' for k, v in hmc_options.items()),
        '[backend]',
        f'listen = unix:{socket_path}',
        f'hosts = {",".join(h.name for h in hosts)}',
        'grace_period = 5',
        *(f'{k} = {v}' for k, v in options.get('backend', {}).items()),
    ]
    # Any other section as given (e.g. [coordination]).
    for section, values in options.items():
        if section not in ('hmc', 'backend'):
            lines += [f'[{section}]', *(f'{k} = {v}' for k, v in values.items())]
    for host in hosts:
        cpc = host.inventory or inventory
        if host.vhbas > len(cpc['fcp']):
            raise ValueError(f'{cpc["name"]} has {len(cpc["fcp"])} FCP adapters')
        lines += [
            f'[host:{host.name}]',
            f'cpc_object_id = {cpc["cpc"]}',
            f'max_processors = {host.max_processors}',
            f'max_memory = {host.max_memory}',
        ]
        lines += [
            f'physical_storage_adapter_mappings = {fcp}:0'
            for fcp in cpc['fcp'][: max(host.vhbas, 1)]
        ]
    return '\n'.join(lines) + '\n'


# --- Nova --------------------------------------------------------------------------


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
    """A DPMDriver for ``host``: it reads [DEFAULT]host (and [dpm]) when created."""
    conf, _, _, _, fake, dpm_driver = nova()

    class HostDriver(dpm_driver):
        @property
        def _node_uuid(self) -> str:
            # Each nova-compute keeps its own $state_path/compute_id; one per host here.
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f'nova-compute/{host}'))

    conf.set_override('host', host)
    try:
        return HostDriver(fake.FakeVirtAPI())
    finally:
        conf.clear_override('host')


def new_instance(host: str, vcpus: int = 1, memory_mb: int = 512, instance_uuid: str = ''):
    _, objects, _, _, _, _ = nova()

    class BenchInstance(objects.Instance):
        def save(self, *args, **kwargs):
            """No database: keep system_metadata in the object."""

    return BenchInstance(
        uuid=instance_uuid or str(uuid.uuid4()),
        host=host,
        vm_state='building',
        task_state=None,
        image_ref='',
        system_metadata={},
        flavor=objects.Flavor(vcpus=vcpus, memory_mb=memory_mb),
    )


def network_info(vswitches: list[str], nics: int, seed: int = 0):
    """``nics`` dpm_vswitch ports spread over the CPC's virtual switches."""
    _, _, network_model, _, _, _ = nova()
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


def bound_to(vifs, vswitches: list[str]):
    """The same ports (ids, MACs) bound to other virtual switches.

    Neutron binds a server's ports again on the destination of a move, there
    to that CPC's virtual switches.
    """
    _, _, network_model, _, _, _ = nova()
    return network_model.NetworkInfo(
        [
            network_model.VIF(
                id=vif['id'],
                address=vif['address'],
                type=vif['type'],
                details={**vif['details'], 'object_id': vswitches[index % len(vswitches)]},
                active=vif['active'],
            )
            for index, vif in enumerate(vifs)
        ]
    )


def fc_connection_info(wwpns: list[str], lun: int = 1, volume_id: str = '') -> dict:
    """connection_info of an FC volume as Cinder returns it (``serial``: the volume id)."""
    info: dict = {
        'driver_volume_type': 'fibre_channel',
        'data': {
            'target_lun': lun,
            'target_wwn': [BOOT_TARGET_WWPN],
            'initiator_target_map': {w: [BOOT_TARGET_WWPN] for w in wwpns},
        },
    }
    if volume_id:
        info['serial'] = volume_id
    return info


def block_device_info(
    wwpns: list[str], lun: int = 1, volume_id: str = '', volume_size: int | None = None
) -> dict:
    """block_device_info of a server booted from an FC volume, as Cinder maps it.

    The storage-group path needs the volume's id and size (the vHBA path
    needs neither: without them the mapping is what the vHBA bench always used).
    """
    mapping: dict = {
        'boot_index': 0,
        'connection_info': fc_connection_info(wwpns, lun, volume_id),
    }
    if volume_id:
        mapping['volume_id'] = volume_id
    if volume_size is not None:
        mapping['volume_size'] = volume_size
    return {'block_device_mapping': [mapping]}


def nova_context():
    """A request context as nova-compute passes to attach_volume."""
    from nova import context

    return context.get_admin_context()


def bdm_lookup(volume_size: int):
    """Nova's BlockDeviceMapping.get_by_volume_and_instance, without Nova's database.

    The driver's attach_volume reads the volume's size from the BDM that
    nova-compute saved before the call; the bench has no database, so the
    lookup answers a BDM object with ``volume_size`` (a context manager).
    """
    from unittest import mock

    _, objects, _, _, _, _ = nova()

    def get_by_volume_and_instance(context, volume_id, instance_uuid, expected_attrs=None):
        return objects.BlockDeviceMapping(
            volume_id=volume_id,
            instance_uuid=instance_uuid,
            source_type='volume',
            destination_type='volume',
            volume_size=volume_size,
        )

    return mock.patch.object(
        objects.BlockDeviceMapping,
        'get_by_volume_and_instance',
        staticmethod(get_by_volume_and_instance),
    )


def migration_lookup(migration):
    """Nova's Migration.get_by_id, without Nova's database (a context manager).

    migrate_disk_and_power_off reads the move's Migration by the id the
    destination's claim recorded in the instance's migration_context.
    """
    from unittest import mock

    _, objects, _, _, _, _ = nova()

    def get_by_id(context, migration_id):
        if migration_id != migration.id:
            raise LookupError(f'no migration {migration_id}')
        return migration

    return mock.patch.object(objects.Migration, 'get_by_id', staticmethod(get_by_id))


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


# --- the backend in this process ------------------------------------------------------


def expire_caches(backend, cpc_facts: bool = False) -> None:
    """Forget what the backend reuses between calls for a short time.

    Nova's periodic tasks run a minute or more apart, longer than a partition
    snapshot lives (5 s): measuring with the snapshots expired counts what one
    such cycle really costs. CPC facts live ``[hmc] cpc_cache_ttl`` (300 s by
    default); ``cpc_facts`` forgets them too, as a cycle that comes later than
    that finds them.
    """
    backend.servicer.snapshots.clear()
    if cpc_facts:
        for host in backend.hosts.values():
            host._cpc_facts._facts.clear()


def age_caches(backend, seconds: float) -> None:
    """Make the partition snapshots and CPC facts ``seconds`` older; nothing is forgotten.

    What ``seconds`` of idle time would do to them, without waiting it out
    and without shortening a TTL: a cycle after that many seconds meets them
    so old. Where notifications keep them current their age does not count;
    without notifications it is the same as ``expire_caches(backend, True)``.
    """
    snapshots = backend.servicer.snapshots
    with snapshots._lock:
        for cpc, snapshot in snapshots._by_cpc.items():
            snapshots._by_cpc[cpc] = dataclasses.replace(
                snapshot, taken_at=snapshot.taken_at - seconds
            )
    caches = {id(host._cpc_facts): host._cpc_facts for host in backend.hosts.values()}
    for cache in caches.values():
        with cache._lock:
            for cpc, facts in cache._facts.items():
                older = facts.fetched_at - seconds
                cache._facts[cpc] = dataclasses.replace(facts, fetched_at=older)
            # Since when notifications keep the facts: as long ago, by as much more.
            cache._live_since -= seconds


def wait_until_live(backend, timeout: float = 30.0) -> None:
    """The backend's HMC notifications flow: its snapshots are kept current from now on."""
    end = time.monotonic() + timeout
    while backend.notifications is None or not backend.notifications.live:
        if time.monotonic() > end:
            raise RuntimeError("the bench backend did not receive the simulator's notifications")
        time.sleep(0.01)


def wait_until_checked(backend, timeout: float = 30.0) -> None:
    """The start-up probe and host checks are done (they are not an operation's requests)."""
    end = time.monotonic() + timeout
    while not (backend.pool.reachability.reachable and backend.hosts_checked()):
        if time.monotonic() > end:
            raise RuntimeError('the bench backend did not reach the HMC simulator')
        time.sleep(0.01)
    problems = {name: h.problem for name, h in backend.hosts.items() if h.problem}
    if problems:
        raise RuntimeError(f'hosts failed their start-up checks: {problems}')


@dataclasses.dataclass
class Measured:
    """One measured span: what reached the HMC, and what passed the session seam."""

    hmc: Counts
    seam: Counts
    records: list
    seconds: float


class Rig:
    """One in-process backend with a Meter at its seam, on a simulator; a driver per host."""

    def __init__(
        self, workdir: pathlib.Path, served, inventory: dict, hosts: list[HostDef], options=None
    ):
        from oslo_config import cfg

        from dpm_backend import config as config_mod
        from dpm_backend.server import Backend

        self.served = served
        self.inventory = inventory
        socket_path = workdir / 'backend.sock'
        config_file = workdir / 'backend.conf'
        config_file.write_text(config_text(str(socket_path), served, inventory, hosts, options))
        config = config_mod.load(['--config-file', str(config_file)], cfg.ConfigOpts())
        self.meter = Meter()
        self.backend = Backend(config, interceptors=[self.meter])
        self.backend.start()
        self.drivers: dict = {}
        try:
            wait_until_checked(self.backend)
            self.address = f'unix:{socket_path}'
            point_nova_at(self.address)
            self.drivers = {h.name: host_driver(h.name) for h in hosts}
        except BaseException:
            self.backend.stop(grace=0)
            raise

    @property
    def sim(self):
        return self.served.sim

    def measure(self, step, expire: bool = True, cpc_facts: bool = False) -> Measured:
        """Run ``step`` and count the HMC requests it caused."""
        if expire:
            expire_caches(self.backend, cpc_facts)
        before = len(self.sim.requests())
        self.meter.reset()
        started = time.perf_counter()
        step()
        seconds = time.perf_counter() - started
        records = self.sim.requests()[before:]
        return Measured(Counts.of_records(records), self.meter.take(), records, seconds)

    def close(self) -> None:
        for name, driver in self.drivers.items():
            driver.cleanup_host(name)
        forget_nova_overrides()
        self.backend.stop(grace=2)


@contextlib.contextmanager
def rig(served, inventory: dict, hosts: list[HostDef], options=None) -> Iterator[Rig]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-'))
    running = None
    try:
        running = Rig(workdir, served, inventory, hosts, options)
        yield running
    finally:
        if running is not None:
            running.close()
        shutil.rmtree(workdir, ignore_errors=True)


def boot(driver, instance, vswitches: list[str], nics: int, seed: int = 0, volume_size=None):
    """prepare_for_spawn, get_volume_connector, spawn: nova-compute's boot order.

    ``volume_size`` (GiB): the boot volume carries an id and that size, as the
    storage-group path needs.
    """
    vifs = network_info(vswitches, nics, seed)
    driver.prepare_for_spawn(instance)
    wwpns = driver.get_volume_connector(instance)['wwpns']
    volume_id = str(uuid.uuid4()) if volume_size is not None else ''
    bdi = block_device_info(wwpns, volume_id=volume_id, volume_size=volume_size)
    driver.spawn(None, instance, None, [], None, {}, vifs, bdi)
    return vifs


# --- the backend in a child process -----------------------------------------------------


def wait_for_socket(process, socket_path: pathlib.Path, what: str) -> None:
    end = time.monotonic() + 60
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f'{what} did not start')
        time.sleep(0.05)


class Served:
    """A backend in a child process (bench.serve) on a simulator, and a driver per host."""

    def __init__(self, workdir: pathlib.Path, endpoint, inventory: dict, hosts, options):
        import subprocess
        import sys

        socket_path = workdir / 'backend.sock'
        config_file = workdir / 'backend.conf'
        config_file.write_text(config_text(str(socket_path), endpoint, inventory, hosts, options))
        self._report = workdir / 'report.json'
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'bench.serve', str(config_file), str(self._report)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.drivers: dict = {}
        self.report: dict[str, Any] = {}
        try:
            wait_for_socket(self.process, socket_path, 'the bench backend')
        except BaseException:
            self.process.kill()
            self.process.wait(timeout=10)
            raise
        self.address = f'unix:{socket_path}'
        point_nova_at(self.address)
        self.drivers = {h.name: host_driver(h.name) for h in hosts}

    def close(self) -> None:
        import json
        import signal
        import subprocess

        for name, driver in self.drivers.items():
            driver.cleanup_host(name)
        forget_nova_overrides()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self._report.exists():
            self.report = json.loads(self._report.read_text())


@contextlib.contextmanager
def served(endpoint, inventory: dict, hosts: list[HostDef], options=None) -> Iterator[Served]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-'))
    running = None
    try:
        running = Served(workdir, endpoint, inventory, hosts, options)
        yield running
    finally:
        if running is not None:
            running.close()
        shutil.rmtree(workdir, ignore_errors=True)
