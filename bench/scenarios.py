"""The benchmark scenarios; each returns a JSON-able dict of its measurements."""

from __future__ import annotations

import pathlib
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent import futures

from bench import rig as rig_mod
from bench.meter import Meter
from bench.rig import HostDef

# Seconds the watcher measures the idle backend before the storm.
IDLE_SECONDS = 4.0

OPERATIONS = (
    'prepare',
    'volume_connector',
    'spawn',
    'get_info',
    'list_instance_uuids',
    'resource_refresh',
    'power_off',
    'power_on',
    'power_on_from_paused',
    'reboot',
    'destroy',
)


def _median(values):
    return statistics.median(values) if values else None


def _percentile(values, q: float):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _set_status(running, instance, status: str) -> None:
    """Change a partition behind the backend's back (an in-guest shutdown)."""
    from dpm_backend import naming

    name = naming.partition_name(instance.host, instance.uuid)
    for partition in running.faked_cpc.partitions.list():
        if partition.properties['name'] == name:
            partition.properties['status'] = status
            return
    raise AssertionError(f'no partition {name}')


def _lifecycle_steps(running, driver, host: str, nics: int):
    """The operations of scenario 1 in order, as (name, callable)."""
    instance = rig_mod.new_instance(host)
    vifs = rig_mod.network_info(nics)
    state = {}

    def connector():
        # Nova's first ask, before the WWPNs are in system_metadata.
        fresh = rig_mod.new_instance(host, instance_uuid=instance.uuid)
        state['wwpns'] = driver.get_volume_connector(fresh)['wwpns']

    def refresh():
        driver.get_available_resource(host)
        driver.update_provider_tree(rig_mod.provider_tree_for(driver, host), host)

    def spawn():
        bdi = rig_mod.block_device_info(state['wwpns'])
        driver.spawn(None, instance, None, [], None, {}, vifs, bdi)

    def paused_then_on():
        driver.power_on(None, instance, vifs)

    return instance, [
        ('prepare', lambda: driver.prepare_for_spawn(instance)),
        ('volume_connector', connector),
        ('spawn', spawn),
        ('get_info', lambda: driver.get_info(instance)),
        ('list_instance_uuids', driver.list_instance_uuids),
        ('resource_refresh', refresh),
        ('power_off', lambda: driver.power_off(instance)),
        ('power_on', lambda: driver.power_on(None, instance, vifs)),
        ('power_on_from_paused', paused_then_on),
        ('reboot', lambda: driver.reboot(None, instance, vifs, 'HARD')),
        ('destroy', lambda: driver.destroy(None, instance, vifs)),
    ]


def requests_per_operation(repeats: int = 3) -> dict:
    """Scenario 1: HMC requests per Nova operation, n NICs x m vHBAs."""
    meter = Meter()
    hosts = [HostDef('m1', vhbas=1), HostDef('m4', vhbas=4)]
    results = {}
    with rig_mod.rig(hosts, meter) as running:
        for host in hosts:  # warm: HMC logon, CPC facts, the driver's channel
            running.drivers[host.name].get_available_resource(host.name)
        for nics in (1, 4):
            for vhbas in (1, 4):
                host = f'm{vhbas}'
                driver = running.drivers[host]
                samples: dict[str, list] = {op: [] for op in OPERATIONS}
                for _ in range(repeats):
                    instance, steps = _lifecycle_steps(running, driver, host, nics)
                    for name, step in steps:
                        if name == 'power_on_from_paused':
                            _set_status(running, instance, 'paused')
                        rig_mod.expire_caches(running.backend)
                        meter.reset()
                        step()
                        samples[name].append(meter.take())
                results[f'n{nics}_m{vhbas}'] = {
                    op: {
                        'work': _median([c.work for c in counts]),
                        'polling': _median([c.polling for c in counts]),
                        'by_class': counts[-1].as_dict()['by_class'],
                    }
                    for op, counts in samples.items()
                }
    return results


def _seed_partitions(running, owners: list[str], foreign: int) -> list:
    """Partitions created behind the backend: one per owner host, and foreign ones."""
    instances = []
    cpc = running.faked_cpc
    for index, host in enumerate(owners):
        instance = rig_mod.new_instance(host)
        cpc.partitions.add(
            {
                'name': f'OpenStack-{host}-{instance.uuid}',
                'description': f'OpenStack CPCSubset={host}',
                'status': 'active' if index % 3 else 'stopped',
                'type': 'linux',
                'ifl-processors': 1,
                'initial-memory': 512,
                'maximum-memory': 512,
            }
        )
        instances.append(instance)
    for index in range(foreign):
        name = f'OpenStack-other-{uuid.uuid4()}' if index % 2 else f'LPAR{index:04d}'
        cpc.partitions.add(
            {
                'name': name,
                'status': 'active',
                'type': 'linux',
                'ifl-processors': 2,
                'initial-memory': 4096,
                'maximum-memory': 4096,
            }
        )
    return instances


def _sync_cycle(running, host: str, instances) -> None:
    """One resource-tracker pass plus one power-state sync, as nova-compute runs them."""
    driver = running.drivers[host]
    driver.get_available_resource(host)
    driver.update_provider_tree(rig_mod.provider_tree_for(driver, host), host)
    driver.list_instance_uuids()
    for instance in instances:
        if instance.host == host:
            driver.get_info(instance)


def power_sync(sizes=(0, 20, 80), repeats: int = 3) -> dict:
    """Scenario 2: requests per power-sync cycle, 1 host and 8 hosts on one CPC."""
    results = {}
    for label, hosts in (
        ('1_host', [HostDef('sync0')]),
        ('8_hosts', [HostDef(f'sync{i}') for i in range(8)]),
    ):
        meter = Meter()
        per_size = {}
        with rig_mod.rig(hosts, meter) as running:
            instances = []
            seeded = 0
            names = [h.name for h in hosts]
            for size in sizes:
                # Half the added partitions are owned by the hosts, half foreign.
                add = size - seeded
                owners = [names[i % len(names)] for i in range(add // 2)]
                instances += _seed_partitions(running, owners, add - len(owners))
                seeded = size
                # Added behind the backend's back: forget what it saw before.
                rig_mod.expire_caches(running.backend)
                _sync_all(running, names, instances)  # warm: CPC facts, channels
                counts = []
                for _ in range(repeats):
                    rig_mod.expire_caches(running.backend)
                    meter.reset()
                    _sync_all(running, names, instances)
                    counts.append(meter.take())
                per_size[str(size)] = {
                    'partitions_added': size,
                    'instances': len(instances),
                    'requests': _median([c.total for c in counts]),
                    'by_class': counts[-1].as_dict()['by_class'],
                }
        results[label] = per_size
    return results


def _sync_all(running, names, instances) -> None:
    for name in names:
        _sync_cycle(running, name, instances)


class _Context:
    """A stand-in grpc.ServicerContext for calling the servicer in-process."""

    def __init__(self) -> None:
        self.code = None
        self.details = ''

    def time_remaining(self):
        return None

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def set_code(self, code) -> None:
        self.code = code

    def set_details(self, details) -> None:
        self.details = details


def _in_process(servicer, method: str, request):
    context = _Context()
    reply = getattr(servicer, method)(request, context)
    if context.code is not None:
        raise RuntimeError(f'{method}: {context.code} {context.details}')
    return reply


def _inproc_steps(running, host: str, nics: int):
    """Scenario 1's operations as the servicer's methods, without gRPC."""
    from dpm_api.v1 import dpm_host_pb2 as pb
    from dpm_frontend import translate

    servicer = running.backend.servicer
    instance = rig_mod.new_instance(host)
    vifs = rig_mod.network_info(nics)
    ids = {'host': host, 'instance_uuid': instance.uuid}
    flavor = translate.flavor(instance)
    state = {}

    def call(method, request):
        return lambda: _in_process(servicer, method, request)

    def connector():
        state['wwpns'] = list(
            _in_process(servicer, 'GetVolumeConnector', pb.GetVolumeConnectorRequest(**ids)).wwpns
        )

    def spawn():
        bdi = rig_mod.block_device_info(state['wwpns'])
        request = pb.SpawnRequest(
            **ids,
            flavor=flavor,
            nics=translate.nics(vifs),
            boot_volume=translate.boot_volume(bdi, state['wwpns']),
        )
        _in_process(servicer, 'Spawn', request)

    return [
        ('prepare', call('PrepareInstance', pb.PrepareInstanceRequest(**ids, flavor=flavor))),
        ('volume_connector', connector),
        ('spawn', spawn),
        ('get_info', call('GetInstanceInfo', pb.GetInstanceInfoRequest(**ids))),
        ('list_instance_uuids', call('ListInstances', pb.ListInstancesRequest(host=host))),
        ('resource_refresh', call('GetHostStatus', pb.GetHostStatusRequest(host=host))),
        ('power_off', call('PowerOff', pb.PowerOffRequest(**ids))),
        ('power_on', call('PowerOn', pb.PowerOnRequest(**ids))),
        ('reboot', call('Reboot', pb.RebootRequest(**ids))),
        ('destroy', call('Destroy', pb.DestroyRequest(**ids))),
    ]


def _timed(running, step, expire: bool = True) -> float:
    if expire:
        rig_mod.expire_caches(running.backend)
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _bare_grpcio(latency: float, repeats: int) -> dict:
    """The floor: a bare grpcio server whose handler sleeps ``latency``, no project code."""
    import grpc
    from grpc_health.v1 import health_pb2
    from grpc_health.v1 import health_pb2_grpc

    class Sleepy(health_pb2_grpc.HealthServicer):
        def Check(self, request, context):
            time.sleep(latency)
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    server = grpc.server(futures.ThreadPoolExecutor(4))
    servicer = Sleepy()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port('127.0.0.1:0')
    server.start()
    channel = grpc.insecure_channel(f'127.0.0.1:{port}')
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    stub.Check(request, timeout=30)
    slot: dict[str, list] = {'grpc': [], 'in_process': []}
    for _ in range(repeats):
        for path, call in (
            ('grpc', lambda: stub.Check(request, timeout=30)),
            ('in_process', lambda: servicer.Check(request, None)),
        ):
            started = time.perf_counter()
            call()
            slot[path].append(time.perf_counter() - started)
    channel.close()
    server.stop(0)
    return slot


def grpc_hop(latency: float = 0.02, job_delay: float = 0.05, repeats: int = 5) -> dict:
    """Scenario 3: each operation through the driver over gRPC vs in-process."""
    meter = Meter(latency=latency, job_delay=job_delay)
    host = 'hop'
    times: dict[str, dict[str, list]] = {}
    with rig_mod.rig([HostDef(host)], meter) as running:
        driver = running.drivers[host]
        for repeat in range(repeats):
            _, over_grpc = _lifecycle_steps(running, driver, host, 1)
            over_grpc = [s for s in over_grpc if s[0] != 'power_on_from_paused']
            in_process = _inproc_steps(running, host, 1)
            for (name, via_grpc), (_, direct) in zip(over_grpc, in_process, strict=True):
                slot = times.setdefault(name, {'grpc': [], 'in_process': []})
                order = [('grpc', via_grpc), ('in_process', direct)]
                for path, step in order if repeat % 2 == 0 else reversed(order):
                    slot[path].append(_timed(running, step))
        # A cheap call, many times, interleaved: with the backend's snapshot
        # expired (one HMC request), and as Nova mostly meets it (answered
        # from the snapshot when the backend has one).
        instance = rig_mod.new_instance(host)
        rig_mod.boot(driver, instance, 1)
        from dpm_api.v1 import dpm_host_pb2 as pb

        request = pb.GetInstanceInfoRequest(host=host, instance_uuid=instance.uuid)
        servicer = running.backend.servicer
        cheap = {}
        for label, expire in (('get_info_one_request', True), ('get_info_from_snapshot', False)):
            slot = cheap[label] = {'grpc': [], 'in_process': []}
            for _ in range(repeats * 6):
                slot['grpc'].append(_timed(running, lambda: driver.get_info(instance), expire))
                slot['in_process'].append(
                    _timed(
                        running,
                        lambda: _in_process(servicer, 'GetInstanceInfo', request),
                        expire,
                    )
                )
        driver.destroy(None, instance, None)
    cheap['bare_grpcio'] = _bare_grpcio(latency, repeats * 6)
    result = {'latency_ms': latency * 1000, 'job_delay_ms': job_delay * 1000, 'operations': {}}
    for name, slot in {**times, **cheap}.items():
        grpc_ms = _median(slot['grpc']) * 1000
        direct_ms = _median(slot['in_process']) * 1000
        result['operations'][name] = {
            'grpc_ms': round(grpc_ms, 2),
            'in_process_ms': round(direct_ms, 2),
            'added_ms': round(grpc_ms - direct_ms, 2),
            'ratio': round(grpc_ms / direct_ms, 4) if direct_ms else None,
        }
    return result


class _Prober:
    """The watcher process (bench.probe) and the latencies it measured."""

    def __init__(self, address: str, host: str, instance_uuid: str, workdir) -> None:
        import subprocess
        import sys

        self._output = workdir / 'probe.json'
        self._process = subprocess.Popen(
            [sys.executable, '-m', 'bench.probe', address, host, instance_uuid, str(self._output)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._process.stdout.readline().strip() != 'ready':
            raise RuntimeError('the probe process did not start')
        self.rows: list = []

    def finish(self) -> None:
        import json

        self._process.stdin.close()
        self._process.wait(timeout=60)
        self.rows = json.loads(self._output.read_text())

    def latencies(self, kind: str, start: float, end: float) -> list[float]:
        return [took for k, started, took in self.rows if k == kind and start <= started < end]


def _storm(running, hosts: list[str], per_host: int, nics: int) -> tuple[float, list]:
    jobs = [(h, rig_mod.new_instance(h)) for h in hosts for _ in range(per_host)]
    started = time.perf_counter()
    with futures.ThreadPoolExecutor(len(jobs)) as pool:
        booted = list(
            pool.map(
                lambda job: (
                    job[1],
                    rig_mod.boot(running.drivers[job[0]], job[1], nics, seed=hash(job[1].uuid)),
                ),
                jobs,
            )
        )
    elapsed = time.perf_counter() - started
    return elapsed, booted


def _destroy_all(running, booted) -> None:
    with futures.ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: running.drivers[item[0].host].destroy(None, item[0], item[1]), booted
            )
        )


def _ms(values) -> dict:
    return {
        'p50_ms': round(_median(values) * 1000, 2),
        'p99_ms': round(_percentile(values, 0.99) * 1000, 2),
        'max_ms': round(max(values) * 1000, 2),
        'samples': len(values),
    }


def many_hosts(
    hosts: int = 8,
    per_host: int = 8,
    latency: float = 0.02,
    job_delay: float = 0.05,
    repeats: int = 3,
) -> dict:
    """Scenario 4: 8 hosts x 8 concurrent boots through one backend (its own process)."""
    defs = [HostDef(f'storm{i}') for i in range(hosts)]
    names = [h.name for h in defs]
    options = {
        'hmc': {'pool_size': 8},
        'backend': {'max_concurrent_operations': hosts * per_host + 16},
    }
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-bench-probe-'))
    with rig_mod.served(defs, latency, job_delay, options) as running:
        # The watched instance, read by a process of its own.
        watched = rig_mod.new_instance(names[0])
        watched_vifs = rig_mod.boot(running.drivers[names[0]], watched, 1)
        prober = _Prober(running.address, names[0], watched.uuid, workdir)
        idle_start = time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle_end = time.monotonic()
        singles, storms, windows = [], [], []
        for _ in range(repeats):
            single, booted = _storm(running, names[1:2], per_host, 1)
            _destroy_all(running, booted)
            singles.append(single)
            start = time.monotonic()
            storm, booted = _storm(running, names, per_host, 1)
            windows.append((start, time.monotonic()))
            storms.append(storm)
            _destroy_all(running, booted)
        prober.finish()
        running.drivers[names[0]].destroy(None, watched, watched_vifs)
    shutil.rmtree(workdir, ignore_errors=True)
    idle_info = prober.latencies('get_info', idle_start, idle_end)
    idle_health = prober.latencies('health', idle_start, idle_end)
    storm_info = [x for w in windows for x in prober.latencies('get_info', *w)]
    storm_health = [x for w in windows for x in prober.latencies('health', *w)]
    single, storm = _median(singles), _median(storms)
    report = running.report
    return {
        'latency_ms': latency * 1000,
        'job_delay_ms': job_delay * 1000,
        'hosts': hosts,
        'boots_per_host': per_host,
        'repeats': repeats,
        'single_host_s': round(single, 3),
        'all_hosts_s': round(storm, 3),
        'ratio_all_vs_single': round(storm / single, 2),
        **{
            k: report.get(k)
            for k in ('pool_size', 'sessions_opened', 'logons', 'logoffs', 'requests')
        },
        'get_info': {'idle': _ms(idle_info), 'storm': _ms(storm_info)},
        'health': {'idle': _ms(idle_health), 'storm': _ms(storm_health)},
    }
