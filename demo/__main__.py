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
deletes the group. One host (``--full``, by default z14host) is printed in
full: each call, its result and the HMC requests it caused, and after spawn
the kernel command line the backend wrote (read back from the simulator); the
other hosts get one line per call. Then the backend gets SIGTERM; a summary
gives the hosts, the instances booted, the HMC requests in all and those the
HMC refused (the demo fails unless none), and the demo checks that the
backend drained, logged off and left no partition and no storage group behind
on the simulator, then stops the simulator.

Nova's database is not part of the demo: the instance objects print what the
driver asks nova-compute to save instead of writing it, and the block device
mapping attach_volume reads the data volume's size from is stubbed (said so
in the output).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import re
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

# attach_volume reads the volume size from a BDM: the bench's stand-in for Nova's database.
from bench.rig import bdm_lookup  # noqa: E402
from demo.transcript import Request  # noqa: E402
from demo.transcript import Transcript  # noqa: E402
from demo.transcript import explain_cmdline  # noqa: E402
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
# Shown in full (the others one line per call): the storage-group path has the most to show.
FULL_HOST = 'z14host'


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
        f'stomp_port = {hmc.stomp_port}',
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


# An oslo.log line: time, pid, level, logger, [request context], message.
LOG_LINE = re.compile(r'\S+ \S+ \d+ [A-Z]+ (?P<logger>\S+) \[[^\]]*\] (?P<message>.*)')


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

    def hmc_requests(self) -> list[Request]:
        """The HMC requests the backend logged since the last call."""
        return [
            request
            for message in self.messages(self.drain_log(), logger='dpm_backend.hmc')
            if (request := Request.parse(message)) is not None
        ]

    @staticmethod
    def messages(lines: list[str], logger: str) -> list[str]:
        """The messages of one logger's lines, without time, level and request context."""
        matches = (LOG_LINE.fullmatch(line) for line in lines)
        return [m['message'] for m in matches if m is not None and m['logger'] == logger]

    def wait_for_message(self, text: str, timeout: float = 30) -> None:
        """Until a log line has ``text`` (the lines up to it are dropped)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.process.poll() is None:
            try:
                if text in self.lines.get(timeout=0.1):
                    return
            except queue.Empty:
                continue
        raise RuntimeError(f'dpm-backend never logged {text!r}')

    def wait_for_socket(self, path: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not os.path.exists(path):
            if self.process.poll() is not None or time.monotonic() > end:
                raise RuntimeError('dpm-backend did not start: ' + ' '.join(self.drain_log(0)))
            time.sleep(0.05)


def _demo_instance(objects, host: str, transcript: Transcript):
    """An instance as nova-compute hands it to the driver (no database here)."""

    class DemoInstance(objects.Instance):
        def save(self, *args, **kwargs):
            transcript.note(f'(nova-compute saves system_metadata {dict(self.system_metadata)})')

    return DemoInstance(
        uuid=str(uuid.uuid4()),
        host=host,
        vm_state='active',
        task_state=None,
        image_ref='',
        system_metadata={},
        flavor=objects.Flavor(vcpus=2, memory_mb=4096),
    )


def _other_instances(uuids: list[str], own: str) -> str:
    """Whether the host's list has this server, and how many other instances."""
    others = len(set(uuids) - {own})
    mine = 'this server' if own in uuids else 'not this server'
    if not others:
        return mine
    return f'{mine} and {others} other OpenStack partition{"s" if others > 1 else ""} of this host'


def _kernel_cmdline(hmc: SimulatorProcess, instance_uuid: str) -> str:
    """The instance's partition's boot-os-specific-parameters, as the HMC holds it."""
    for cpc in hmc.state()['hmc_definition']['cpcs']:
        for partition in cpc.get('partitions', []):
            if partition['properties']['name'].endswith(instance_uuid):
                return partition['properties'].get('boot-os-specific-parameters', '')
    raise RuntimeError(f'no partition of instance {instance_uuid} on the simulator')


def _lifecycle(
    transcript: Transcript, hmc: SimulatorProcess, host: DemoHost, inventory: dict, state_path: str
) -> None:
    from nova.compute import power_state
    from nova.compute import provider_tree
    from nova.conf import CONF
    from nova.network import model as network_model

    from nova import context as nova_context
    from nova import exception
    from nova import objects
    from nova.virt import driver as virt_driver
    from nova.virt import fake
    from nova.virt import node as virt_node

    objects.register_all()
    name = host.name
    CONF.set_override('host', name)
    # Each nova-compute has its own state_path, where Nova keeps the node's
    # identity (compute_id); Nova caches it per process, and here one process
    # plays every host.
    CONF.set_override('state_path', state_path)
    virt_node.LOCAL_NODE_UUID = None
    drv = virt_driver.load_compute_driver(fake.FakeVirtAPI(), 'dpm.DPMDriver')
    call = transcript.call

    def state(info) -> str:
        return power_state.STATE_MAP.get(info.state)

    transcript.call(f'init_host({name!r})', lambda: drv.init_host(name))
    resources = call(
        'get_available_resource',
        lambda: drv.get_available_resource(name),
        show=lambda r: {k: r[k] for k in ('vcpus', 'memory_mb', 'local_gb', 'hypervisor_type')},
        brief=lambda r: f'{r["vcpus"]} vCPUs, {r["memory_mb"]} MiB',
    )
    tree = provider_tree.ProviderTree()
    tree.new_root(name, resources['uuid'])
    call(
        'update_provider_tree',
        lambda: drv.update_provider_tree(tree, name),
        what='placement inventory; reuses the status just read',
        brief=lambda _: str({rc: inv['total'] for rc, inv in tree.data(name).inventory.items()}),
    )

    instance = _demo_instance(objects, name, transcript)
    transcript.heading(
        f'server {instance.uuid} (2 vCPUs, 4096 MiB, boot from a {BOOT_VOLUME_GIB} GiB '
        'FC volume, 2 ports)'
    )
    made = 'partition + storage group' if host.storage_groups else 'partition + vHBAs'
    call('prepare_for_spawn', lambda: drv.prepare_for_spawn(instance), what=made)
    connector = call('get_volume_connector', lambda: drv.get_volume_connector(instance), show=str)
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
    call(
        'spawn',
        lambda: drv.spawn(None, instance, None, [], None, {}, vifs, block_device_info),
        what=f'NICs, kernel cmdline, {boot}, start',
    )
    if transcript.full:
        cmdline = _kernel_cmdline(hmc, instance.uuid)
        transcript.note(
            f'kernel command line on the HMC (boot-os-specific-parameters): {cmdline!r}'
        )
        transcript.note(f'= {explain_cmdline(cmdline)}')
    info = drv.get_info
    call('get_info', lambda: info(instance), brief=state)
    call(
        'list_instance_uuids',
        drv.list_instance_uuids,
        show=str,
        brief=lambda uuids: _other_instances(uuids, instance.uuid),
    )
    call('power_off', lambda: drv.power_off(instance))
    call('get_info', lambda: info(instance), brief=state)
    call('power_on', lambda: drv.power_on(None, instance, vifs))
    call('reboot', lambda: drv.reboot(None, instance, vifs, 'HARD'), what='HARD')
    call('get_info', lambda: info(instance), brief=state)
    if host.storage_groups:
        data_volume = str(uuid.uuid4())
        connection_info = fc_connection_info(connector['wwpns'], 2, data_volume)
        context = nova_context.get_admin_context()
        transcript.heading(
            f'data volume {data_volume} ({DATA_VOLUME_GIB} GiB, LUN 2). No Nova database '
            'here: objects.BlockDeviceMapping.get_by_volume_and_instance is stubbed to return '
            f'its BDM with volume_size {DATA_VOLUME_GIB} (what attach_volume reads the size from)'
        )
        with bdm_lookup(DATA_VOLUME_GIB):
            call(
                'attach_volume',
                lambda: drv.attach_volume(context, connection_info, instance, '/dev/sdb'),
                what='storage volume in the group, FCP discovery',
            )
        call(
            'detach_volume',
            lambda: drv.detach_volume(context, connection_info, instance, '/dev/sdb'),
            what='the storage volume is deleted',
        )
    gone = 'stop, detach and delete the group, delete' if host.storage_groups else 'stop, delete'
    call('destroy', lambda: drv.destroy(None, instance, vifs, block_device_info), what=gone)
    call(
        'destroy again',
        lambda: drv.destroy(None, instance, vifs, block_device_info),
        what='already gone: succeeds',
    )
    call(
        'get_volume_connector again',
        lambda: drv.get_volume_connector(instance),
        what='after destroy, from system_metadata',
        show=str,
    )

    def info_after_destroy() -> str:
        try:
            info(instance)
        except exception.InstanceNotFound as exc:
            return f'InstanceNotFound: {exc}'
        raise RuntimeError('the destroyed instance is still reported')

    call(
        'get_info again',
        info_after_destroy,
        what='after destroy',
        brief=lambda text: text.partition(':')[0],
        show=str,
    )
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


def _booted(records: list) -> int:
    """Partitions whose Start Partition the HMC accepted."""
    return len(
        {
            r.uri.removesuffix('/operations/start')
            for r in records
            if r.method == 'POST' and r.uri.endswith('/operations/start') and 200 <= r.status < 300
        }
    )


def _refused(records: list) -> list[str]:
    """Requests the HMC refused (status 400 and above) or dropped unanswered (0)."""
    return [
        f'{r.method} {r.uri} -> {r.status},{r.reason}'
        for r in records
        if r.status >= 400 or r.status == 0
    ]


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m demo', description=__doc__.splitlines()[0])
    parser.add_argument(
        '--full',
        choices=[host.name for host in HOSTS],
        default=FULL_HOST,
        help='the host whose calls are shown in full with their HMC requests '
        '(the others get one line per call; default: %(default)s)',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
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
            # Its STOMP broker: the backend follows the HMC's notifications.
            notifications=True,
        )
        try:
            print(hmc.ready_line)
            return _run(workdir, hmc, inventory, args.full)
        finally:
            hmc.terminate()


def _describe(host: DemoHost) -> str:
    return f'{host.name} ({host.cpc}, {"storage groups" if host.storage_groups else "vHBAs"})'


def _heading(host: DemoHost, full: bool) -> str:
    if full:
        return (
            f'\n######## {_describe(host)} in full: each call nova-compute makes through '
            'dpm.DPMDriver,\n   its result and the HMC requests it caused (ids cut to '
            'their last 8 characters, queries decoded; times of 0.1 s and more)'
        )
    return (
        f'\n######## {_describe(host)}: the same calls, one line each '
        '(HMC requests; time if 0.1 s or more; result)'
    )


def _run(workdir: str, hmc: SimulatorProcess, inventory: dict, full: str) -> int:
    socket_path = os.path.join(workdir, 'dpm-backend.sock')
    config_file = os.path.join(workdir, 'dpm-backend.conf')
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as stream:
        stream.write(_config_text(socket_path, hmc, inventory))
    print(
        f'dpm-backend: a process of its own on unix:{socket_path}, '
        f'logging on to the simulator over HTTPS (CA {hmc.ca_file})'
    )
    backend = BackendProcess(config_file)
    by_calls = 0  # HMC requests the driver calls caused
    try:
        backend.wait_for_socket(socket_path)
        # The HMC's notifications flow: the periodic reads below cost no HMC request.
        backend.wait_for_message('HMC notifications flow')
        from nova.conf import CONF

        from dpm_frontend import conf as dpm_conf

        # As nova-compute starts: no config file, the defaults and the overrides here.
        CONF([], project='nova', default_config_files=[])
        dpm_conf.register_opts(CONF)
        CONF.set_override('backend', f'unix:{socket_path}', group='dpm')
        backend.drain_log(0.5)
        partitions_before, groups_before = _names(hmc)
        for host in sorted(HOSTS, key=lambda h: h.name != full):
            transcript = Transcript(backend.hmc_requests, full=host.name == full)
            print(_heading(host, transcript.full))
            state_path = os.path.join(workdir, 'nova-compute', host.name)
            os.makedirs(state_path)
            _lifecycle(transcript, hmc, host, inventory[host.cpc], state_path)
            print(f'   = {transcript.totals(host.name)}')
            by_calls += len(transcript.requests())
    finally:
        backend.process.send_signal(signal.SIGTERM)
        code = backend.process.wait(timeout=30)
    tail = [m for m in backend.messages(backend.drain_log(), '__main__') if 'Stopped' in m]
    records = hmc.requests()
    refused = _refused(records)
    sessions = hmc.session_counts()
    counts = sessions['userids'].get(USERID, {})
    partitions, groups = _names(hmc)
    leftovers = sorted(partitions - partitions_before)
    left_groups = sorted(groups - groups_before)
    print(
        '\n######## summary\n'
        f'   hosts: {len(HOSTS)}, {", ".join(_describe(h) for h in HOSTS)}\n'
        f'   instances booted: {_booted(records)} (partitions the HMC started; '
        'each then stopped, started, rebooted and deleted)\n'
        f'   HMC requests in all: {len(records)} ({by_calls} caused by the calls above, '
        f'{len(records) - by_calls} by the backend starting and stopping: API version, logons, '
        'host checks, one List Partitions per CPC once notifications flow, logoffs)\n'
        f'   requests refused by the HMC: {len(refused)}\n'
        f'   SIGTERM: dpm-backend exited with {code}; {" ".join(tail)}\n'
        f'   simulator: logons {counts.get("logons", 0)}, logoffs {counts.get("logoffs", 0)}, '
        f'sessions open {sessions["open"]}; left by the demo: partitions {leftovers}, '
        f'storage groups {left_groups}'
    )
    for request in refused:
        print(f'   refused: {request}')
    if code != 0 or os.path.exists(socket_path):
        print('the backend did not stop cleanly', file=sys.stderr)
        return 1
    if leftovers or left_groups or sessions['open']:
        print('the backend left partitions, storage groups or HMC sessions behind', file=sys.stderr)
        return 1
    if refused:
        print('the HMC refused requests of the backend', file=sys.stderr)
        return 1
    print('Demo finished: every call answered, nothing left running.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
