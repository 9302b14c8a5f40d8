"""`make demo`: nova-compute's calls through DPMDriver to a backend on the HMC simulator.

Starts ``dpm-hmc-sim`` as an HMC 2.14.1 managing a z13 (the oldest profile with
vHBAs; HTTPS on loopback with a CA of its own, short start/stop jobs) and a
real ``dpm-backend`` process on a unix socket that logs on to it as to any HMC
(TLS verified, HMC request logging on) and serves two Nova hosts. For each host it loads the
driver as nova-compute does (``compute_driver = dpm.DPMDriver``) and makes the
calls nova-compute makes for a server booted from an FC volume with two
ports: init_host, resources, prepare_for_spawn, get_volume_connector, spawn,
get_info, power off/on, reboot, destroy, the connector after destroy. Each
call is printed with the HMC requests it caused. Then the backend gets
SIGTERM; the demo checks that it drained, logged off and left no partition
behind on the simulator, then stops the simulator.

Nova's database is not part of the demo: the instance objects print what the
driver asks nova-compute to save instead of writing it.
"""

from __future__ import annotations

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

# Nova's dependencies import eventlet (unused: threading mode) and warn about it.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import yaml  # noqa: E402

from dpm_hmc_sim import definition as sim_definition  # noqa: E402
from dpm_hmc_sim.testing import SimulatorProcess  # noqa: E402

# The oldest HMC version the simulator has that manages a CPC with vHBAs.
PROFILE = '2.14.1'
USERID = 'demo'
# Start and Stop Partition are HMC jobs; short ones keep the demo quick.
JOB_SECONDS = 0.5
CPC_NAME = 'CPCZ13'
HOSTS = ('cpc1', 'cpc10')
BOOT_TARGET_WWPN = '500507680B2142E5'


def sim_inventory(profile: str = PROFILE) -> dict:
    """Object ids of the demo CPC, its FCP adapters and virtual switches."""
    with open(sim_definition.resolve(profile), encoding='utf-8') as stream:
        definition = yaml.safe_load(stream)['hmc_definition']
    cpc = next(c for c in definition['cpcs'] if c['properties']['name'] == CPC_NAME)
    return {
        'cpc': cpc['properties']['object-id'],
        'fcp': [
            a['properties']['object-id']
            for a in cpc['adapters']
            if a['properties']['type'] == 'fcp'
        ],
        'vswitches': [v['properties']['object-id'] for v in cpc['virtual_switches']],
    }


def fc_block_device_info(wwpns: list[str], lun: int = 1) -> dict:
    """block_device_info of a server booted from an FC volume, as Cinder maps it."""
    return {
        'block_device_mapping': [
            {
                'boot_index': 0,
                'connection_info': {
                    'driver_volume_type': 'fibre_channel',
                    'data': {
                        'target_lun': lun,
                        'target_wwn': [BOOT_TARGET_WWPN],
                        'initiator_target_map': {w: [BOOT_TARGET_WWPN] for w in wwpns},
                    },
                },
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
        f'hosts = {",".join(HOSTS)}',
        'grace_period = 5',
    ]
    for host in HOSTS:
        lines += [
            f'[host:{host}]',
            f'cpc_object_id = {inventory["cpc"]}',
            'max_processors = 8',
            'max_memory = 16384',
        ]
        lines += [f'physical_storage_adapter_mappings = {fcp}:0' for fcp in inventory['fcp']]
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


def _lifecycle(backend: BackendProcess, host: str, inventory: dict) -> None:
    from nova.compute import power_state
    from nova.compute import provider_tree
    from nova.conf import CONF
    from nova.network import model as network_model

    from nova import exception
    from nova import objects
    from nova.virt import driver as virt_driver
    from nova.virt import fake

    objects.register_all()
    CONF.set_override('host', host)
    drv = virt_driver.load_compute_driver(fake.FakeVirtAPI(), 'dpm.DPMDriver')
    print(f'\n######## nova-compute for host {host}: {type(drv).__module__}.DPMDriver')
    state = power_state.STATE_MAP.get

    _step(backend, f'init_host({host!r})', lambda: drv.init_host(host))
    resources = _step(
        backend,
        'get_available_resource',
        lambda: drv.get_available_resource(host),
        lambda r: {k: r[k] for k in ('vcpus', 'memory_mb', 'local_gb', 'hypervisor_type')},
    )
    tree = provider_tree.ProviderTree()
    tree.new_root(host, resources['uuid'])
    _step(
        backend,
        'update_provider_tree (placement inventory; reuses the status just read)',
        lambda: drv.update_provider_tree(tree, host),
        lambda _: {rc: inv['total'] for rc, inv in tree.data(host).inventory.items()},
    )

    instance = _demo_instance(objects, host)
    print(f'\n-- server {instance.uuid} (2 vCPUs, 4096 MiB, boot from FC volume, 2 ports)')
    _step(backend, 'prepare_for_spawn (partition + vHBAs)', lambda: drv.prepare_for_spawn(instance))
    connector = _step(backend, 'get_volume_connector', lambda: drv.get_volume_connector(instance))
    vifs = network_model.NetworkInfo(
        [
            network_model.VIF(
                id=str(uuid.uuid4()),
                address=f'fa:16:3e:00:{index:02x}:{HOSTS.index(host):02x}',
                type='dpm_vswitch',
                details={'object_id': vswitch},
                active=True,
            )
            for index, vswitch in enumerate(inventory['vswitches'][:2])
        ]
    )
    block_device_info = fc_block_device_info(connector['wwpns'])
    CONF.set_override('vif_plugging_timeout', 0)
    _step(
        backend,
        'spawn (NICs, kernel cmdline, FC boot, start)',
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
    _step(backend, 'destroy', lambda: drv.destroy(None, instance, vifs, block_device_info))
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
    drv.cleanup_host(host)


def _partition_names(hmc: SimulatorProcess) -> set[str]:
    """Names of the partitions on the simulator's CPCs, from its state dump."""
    cpcs = hmc.state()['hmc_definition']['cpcs']
    return {p['properties']['name'] for cpc in cpcs for p in cpc.get('partitions', [])}


def main() -> int:
    # nova-compute in native threading mode, as the driver requires.
    os.environ.setdefault('OS_NOVA_DISABLE_EVENTLET_PATCHING', '1')
    inventory = sim_inventory()
    with tempfile.TemporaryDirectory(prefix='dpm-demo-') as workdir:
        hmc = SimulatorProcess(
            PROFILE,
            userid=USERID,
            password=secrets.token_urlsafe(16),
            cert_dir=os.path.join(workdir, 'hmc-sim'),
            start_seconds=JOB_SECONDS,
            stop_seconds=JOB_SECONDS,
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
        before = _partition_names(hmc)
        for host in HOSTS:
            _lifecycle(backend, host, inventory)
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
    leftovers = sorted(_partition_names(hmc) - before)
    print(
        f'== simulator: {counts.get("logons", 0)} logons, {counts.get("logoffs", 0)} logoffs, '
        f'{sessions["open"]} sessions open; partitions left by the demo: {leftovers}'
    )
    if leftovers or sessions['open']:
        print('the backend left partitions or HMC sessions behind', file=sys.stderr)
        return 1
    print('Demo finished: every call answered, nothing left running.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
