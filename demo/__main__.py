"""`make demo`: nova-compute's calls through DPMDriver to a backend on the HMC simulator.

Starts ``dpm-hmc-sim`` as an HMC 2.14.1 (the oldest profile with vHBAs; HTTPS
on loopback with a CA of its own, short start/stop and FCP discovery jobs),
which manages a z13 (vHBAs) and a z14 with DPM storage management (storage
groups), and a real ``dpm-backend`` process on a unix socket that logs on to
it as to any HMC (TLS verified, HMC request logging on) and serves three Nova
hosts: two on the z13, one (``z14host``) on the z14. For each host it loads
the driver as nova-compute does (``compute_driver = dpm.DPMDriver``) and makes
the calls nova-compute makes for a server booted from an FC volume with two
ports: init_host, resources, prepare_for_spawn, get_volume_connector, spawn,
get_info, power off/on, reboot, destroy, the connector after destroy. On the
z14 prepare creates the instance's storage group (the connector's WWPNs are
the group's), spawn defines the boot volume in it, runs FCP discovery and
attaches the group, a data volume is attached and detached, and destroy
deletes the group. Each call is printed with the HMC requests it caused.
Then the backend gets SIGTERM; the demo checks that it drained, logged off
and left no partition and no storage group behind on the simulator, then
stops the simulator.

Nova's database is not part of the demo: the instance objects print what the
driver asks nova-compute to save instead of writing it, and the block device
mapping attach_volume reads the data volume's size from is stubbed (said so
in the output).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from unittest import mock

# Nova's dependencies import eventlet (unused: threading mode) and warn about it.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import yaml  # noqa: E402

from dpm_hmc_sim import definition as sim_definition  # noqa: E402
from dpm_hmc_sim.testing import SimulatorProcess  # noqa: E402

# The oldest HMC version the simulator has that manages a CPC with vHBAs; it
# holds the z14 with DPM storage management too.
PROFILE = '2.14.1'
USERID = 'demo'
# Start and Stop Partition and Start FCP Storage Discovery are HMC jobs; short
# ones keep the demo quick.
JOB_SECONDS = 0.5
DISCOVER_SECONDS = 0.5
BOOT_TARGET_WWPN = '500507680B2142E5'
BOOT_VOLUME_GIB = 20
DATA_VOLUME_GIB = 5


@dataclasses.dataclass(frozen=True)
class DemoHost:
    name: str
    cpc: str  # the name of its CPC in the simulator's definition
    storage_groups: bool = False  # the CPC has DPM storage management (z14 and later)


HOSTS = (
    DemoHost('cpc1', 'CPCZ13'),
    DemoHost('cpc10', 'CPCZ13'),
    DemoHost('z14host', 'CPCZ14', storage_groups=True),
)


def sim_inventory(cpc_name: str, profile: str = PROFILE) -> dict:
    """Object ids of one demo CPC, its FCP adapters and virtual switches."""
    with open(sim_definition.resolve(profile), encoding='utf-8') as stream:
        definition = yaml.safe_load(stream)['hmc_definition']
    cpc = next(c for c in definition['cpcs'] if c['properties']['name'] == cpc_name)
    return {
        'cpc': cpc['properties']['object-id'],
        'fcp': [
            a['properties']['object-id']
            for a in cpc['adapters']
            if a['properties']['type'] == 'fcp'
        ],
        'vswitches': [v['properties']['object-id'] for v in cpc['virtual_switches']],
    }


def fc_connection_info(wwpns: list[str], lun: int, volume_id: str) -> dict:
    """connection_info of an FC volume as Cinder returns it (``serial``: Nova's volume id)."""
    return {
        'driver_volume_type': 'fibre_channel',
        'serial': volume_id,
        'data': {
            'volume_id': volume_id,
            'target_lun': lun,
            'target_wwn': [BOOT_TARGET_WWPN],
            'initiator_target_map': {w: [BOOT_TARGET_WWPN] for w in wwpns},
        },
    }


def fc_block_device_info(wwpns: list[str], lun: int = 1, volume_id: str = '') -> dict:
    """block_device_info of a server booted from an FC volume, as Cinder maps it."""
    volume_id = volume_id or str(uuid.uuid4())
    return {
        'block_device_mapping': [
            {
                'boot_index': 0,
                'volume_id': volume_id,
                'volume_size': BOOT_VOLUME_GIB,
                'connection_info': fc_connection_info(wwpns, lun, volume_id),
            }
        ]
    }


def _config_text(socket_path: str, hmc: SimulatorProcess, inventory: dict) -> str:
    lines = [
        '[hmc]',
        f'hosts = {hmc.host}',
        f'port = {hmc.port}',
        f'ca_file = {hmc.ca_file}',
        f'userid = {hmc.userid}',
        f'password = {hmc.password}',
        'log_requests = true',
        'probe_interval = 1',
        '[backend]',
        f'listen = unix:{socket_path}',
        f'hosts = {",".join(h.name for h in HOSTS)}',
        'grace_period = 5',
    ]
    for host in HOSTS:
        cpc = inventory[host.cpc]
        lines += [
            f'[host:{host.name}]',
            f'cpc_object_id = {cpc["cpc"]}',
            'max_processors = 8',
            'max_memory = 16384',
        ]
        # On the z14 the ports are those of the storage group's paths (no vHBAs).
        lines += [f'physical_storage_adapter_mappings = {fcp}:0' for fcp in cpc['fcp']]
    return '\n'.join(lines) + '\n'


class BackendProcess:
    """A dpm-backend child process whose log lines are collected."""

    def __init__(self, config_file: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', config_file],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip('\n'))

    def drain_log(self, settle: float = 0.1) -> list[str]:
        time.sleep(settle)
        lines = []
        while True:
            try:
                lines.append(self.lines.get_nowait())
            except queue.Empty:
                return lines

    def hmc_requests(self) -> list[str]:
        return [
            line.split('dpm_backend.hmc [-] ', 1)[1]
            for line in self.drain_log()
            if '] HMC ' in line
        ]

    def wait_for_socket(self, path: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError('dpm-backend did not start: ' + ' '.join(self.drain_log(0)))
            time.sleep(0.05)


def _step(backend: BackendProcess, title: str, call, show=lambda result: result):
    """Run one driver call; print it, its result and the HMC requests it caused."""
    print(f'\n== {title}')
    result = call()
    shown = show(result)
    if shown is not None:
        print(f'   -> {shown}')
    for request in backend.hmc_requests():
        print(f'   | {request}')
    return result


def _demo_instance(objects, host: str):
    """An instance as nova-compute hands it to the driver (no database here)."""

    class DemoInstance(objects.Instance):
        def save(self, *args, **kwargs):
            print(f'   (nova-compute saves system_metadata {dict(self.system_metadata)})')

    return DemoInstance(
        uuid=str(uuid.uuid4()),
        host=host,
        image_ref='',
        system_metadata={},
        flavor=objects.Flavor(vcpus=2, memory_mb=4096),
    )


def _stub_bdm_lookup(objects, volume_size: int):
    """Nova's BlockDeviceMapping.get_by_volume_and_instance without Nova's database.

    attach_volume reads the volume's size from the BDM nova-compute has just
    saved; the demo has no database, so the lookup returns a BDM object built
    here, with the size Cinder would have given the volume.
    """

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


def _lifecycle(backend: BackendProcess, host: DemoHost, inventory: dict) -> None:
    from nova.compute import power_state
    from nova.compute import provider_tree
    from nova.conf import CONF
    from nova.network import model as network_model

    from nova import context as nova_context
    from nova import exception
    from nova import objects
    from nova.virt import driver as virt_driver
    from nova.virt import fake

    objects.register_all()
    name = host.name
    CONF.set_override('host', name)
    drv = virt_driver.load_compute_driver(fake.FakeVirtAPI(), 'dpm.DPMDriver')
    cpc_kind = 'storage groups' if host.storage_groups else 'vHBAs'
    print(
        f'\n######## nova-compute for host {name} ({host.cpc}, {cpc_kind}): '
        f'{type(drv).__module__}.DPMDriver'
    )
    state = power_state.STATE_MAP.get

    _step(backend, f'init_host({name!r})', lambda: drv.init_host(name))
    resources = _step(
        backend,
        'get_available_resource',
        lambda: drv.get_available_resource(name),
        lambda r: {k: r[k] for k in ('vcpus', 'memory_mb', 'local_gb', 'hypervisor_type')},
    )
    tree = provider_tree.ProviderTree()
    tree.new_root(name, resources['uuid'])
    _step(
        backend,
        'update_provider_tree (placement inventory; reuses the status just read)',
        lambda: drv.update_provider_tree(tree, name),
        lambda _: {rc: inv['total'] for rc, inv in tree.data(name).inventory.items()},
    )

    instance = _demo_instance(objects, name)
    print(
        f'\n-- server {instance.uuid} (2 vCPUs, 4096 MiB, boot from a {BOOT_VOLUME_GIB} GiB '
        'FC volume, 2 ports)'
    )
    made = 'partition + storage group' if host.storage_groups else 'partition + vHBAs'
    _step(backend, f'prepare_for_spawn ({made})', lambda: drv.prepare_for_spawn(instance))
    connector = _step(backend, 'get_volume_connector', lambda: drv.get_volume_connector(instance))
    vswitches = inventory['vswitches']
    vifs = network_model.NetworkInfo(
        [
            network_model.VIF(
                id=str(uuid.uuid4()),
                address=f'fa:16:3e:00:{index:02x}:{HOSTS.index(host):02x}',
                type='dpm_vswitch',
                details={'object_id': vswitches[index % len(vswitches)]},
                active=True,
            )
            for index in range(2)
        ]
    )
    block_device_info = fc_block_device_info(connector['wwpns'])
    CONF.set_override('vif_plugging_timeout', 0)
    boot = (
        'storage volume in the group, FCP discovery, attach the group, boot from it'
        if host.storage_groups
        else 'FC boot'
    )
    _step(
        backend,
        f'spawn (NICs, kernel cmdline, {boot}, start)',
        lambda: drv.spawn(None, instance, None, [], None, {}, vifs, block_device_info),
    )
    info = drv.get_info
    _step(backend, 'get_info', lambda: info(instance), lambda i: state(i.state))
    _step(backend, 'list_instance_uuids', drv.list_instance_uuids)
    _step(backend, 'power_off', lambda: drv.power_off(instance))
    _step(backend, 'get_info', lambda: info(instance), lambda i: state(i.state))
    _step(backend, 'power_on', lambda: drv.power_on(None, instance, vifs))
    _step(backend, 'reboot (HARD)', lambda: drv.reboot(None, instance, vifs, 'HARD'))
    _step(backend, 'get_info', lambda: info(instance), lambda i: state(i.state))
    if host.storage_groups:
        data_volume = str(uuid.uuid4())
        connection_info = fc_connection_info(connector['wwpns'], 2, data_volume)
        context = nova_context.get_admin_context()
        print(
            f'\n-- data volume {data_volume} ({DATA_VOLUME_GIB} GiB, LUN 2). No Nova database '
            'here: objects.BlockDeviceMapping.get_by_volume_and_instance is stubbed to return '
            f'its BDM with volume_size {DATA_VOLUME_GIB} (what attach_volume reads the size from)'
        )
        with _stub_bdm_lookup(objects, DATA_VOLUME_GIB):
            _step(
                backend,
                'attach_volume (storage volume in the group, FCP discovery)',
                lambda: drv.attach_volume(context, connection_info, instance, '/dev/sdb'),
            )
        _step(
            backend,
            'detach_volume (the storage volume is deleted)',
            lambda: drv.detach_volume(context, connection_info, instance, '/dev/sdb'),
        )
    gone = 'stop, detach and delete the group, delete' if host.storage_groups else 'stop, delete'
    _step(
        backend,
        f'destroy ({gone})',
        lambda: drv.destroy(None, instance, vifs, block_device_info),
    )
    _step(
        backend,
        'destroy again (already gone: succeeds)',
        lambda: drv.destroy(None, instance, vifs, block_device_info),
    )
    _step(
        backend,
        'get_volume_connector after destroy (from system_metadata)',
        lambda: drv.get_volume_connector(instance),
    )

    def info_after_destroy():
        try:
            info(instance)
        except exception.InstanceNotFound as exc:
            return f'InstanceNotFound: {exc}'
        raise RuntimeError('the destroyed instance is still reported')

    _step(backend, 'get_info after destroy', info_after_destroy)
    drv.cleanup_host(name)


def _names(hmc: SimulatorProcess) -> tuple[set[str], set[str]]:
    """Names of the partitions on the simulator's CPCs and of its storage groups."""
    definition = hmc.state()['hmc_definition']
    partitions = {
        p['properties']['name'] for cpc in definition['cpcs'] for p in cpc.get('partitions', [])
    }
    groups = {
        g['properties']['name']
        for console in definition.get('consoles', [])
        for g in console.get('storage_groups', [])
    }
    return partitions, groups


def main() -> int:
    # nova-compute in native threading mode, as the driver requires.
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    inventory = {cpc: sim_inventory(cpc) for cpc in sorted({h.cpc for h in HOSTS})}
    with tempfile.TemporaryDirectory(prefix='dpm-demo-') as workdir:
        hmc = SimulatorProcess(
            PROFILE,
            userid=USERID,
            password=secrets.token_urlsafe(16),
            cert_dir=os.path.join(workdir, 'hmc-sim'),
            start_seconds=JOB_SECONDS,
            stop_seconds=JOB_SECONDS,
            discover_seconds=DISCOVER_SECONDS,
        )
        try:
            print(hmc.ready_line)
            return _run(workdir, hmc, inventory)
        finally:
            hmc.terminate()


def _run(workdir: str, hmc: SimulatorProcess, inventory: dict) -> int:
    socket_path = os.path.join(workdir, 'dpm-backend.sock')
    config_file = os.path.join(workdir, 'dpm-backend.conf')
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as stream:
        stream.write(_config_text(socket_path, hmc, inventory))
    print(f'Starting dpm-backend on it (HTTPS to {hmc.host}:{hmc.port}, CA {hmc.ca_file})')
    backend = BackendProcess(config_file)
    try:
        backend.wait_for_socket(socket_path)
        from nova.conf import CONF

        from dpm_frontend import conf as dpm_conf

        dpm_conf.register_opts(CONF)
        CONF.set_override('backend', f'unix:{socket_path}', group='dpm')
        backend.drain_log(0.5)
        partitions_before, groups_before = _names(hmc)
        for host in HOSTS:
            _lifecycle(backend, host, inventory[host.cpc])
    finally:
        backend.process.send_signal(signal.SIGTERM)
        code = backend.process.wait(timeout=30)
    tail = [line.split('[-] ', 1)[-1] for line in backend.drain_log() if 'Stopped' in line]
    print(f'\n== SIGTERM: dpm-backend exited with {code}; {" ".join(tail)}')
    if code != 0 or os.path.exists(socket_path):
        print('the backend did not stop cleanly', file=sys.stderr)
        return 1
    sessions = hmc.session_counts()
    counts = sessions['userids'].get(USERID, {})
    partitions, groups = _names(hmc)
    leftovers = sorted(partitions - partitions_before)
    left_groups = sorted(groups - groups_before)
    print(
        f'== simulator: {counts.get("logons", 0)} logons, {counts.get("logoffs", 0)} logoffs, '
        f'{sessions["open"]} sessions open; partitions left by the demo: {leftovers}; '
        f'storage groups left by the demo: {left_groups}'
    )
    if leftovers or left_groups or sessions['open']:
        print('the backend left partitions, storage groups or HMC sessions behind', file=sys.stderr)
        return 1
    print('Demo finished: every call answered, nothing left running.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
