"""`make demo`: the backend on the shipped mock HMC, driven over gRPC for two hosts.

Starts a real ``dpm-backend`` process on a unix socket with HMC request
logging on, runs a whole instance lifecycle for each host as nova-compute
would, prints each step with the HMC requests it caused, then stops the
backend with SIGTERM and checks that it drained and left nothing behind.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import grpc
import yaml
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import config as config_mod

CPC_NAME = 'CPCZ13'
HOSTS = ('cpc1', 'cpc10')
DEADLINE = 30
BOOT_TARGET_WWPN = '500507680B2142E5'


def _inventory() -> dict:
    """Object ids of the demo CPC, its FCP adapters and virtual switches."""
    with open(config_mod.BUILTIN_MOCK_PATH, encoding='utf-8') as stream:
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


def _config_text(socket_path: str, inventory: dict) -> str:
    lines = [
        '[hmc]',
        f'mock_definition = {config_mod.BUILTIN_MOCK}',
        'userid = demo',
        'password = demo-password',
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
    """A dpm-backend child process whose HMC request log lines are collected."""

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


def _hmc_requests(lines: list[str]) -> list[str]:
    return [line.split('dpm_backend.hmc [-] ', 1)[1] for line in lines if '] HMC ' in line]


def _wait_serving(channel: grpc.Channel, timeout: float) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    end = time.monotonic() + timeout
    while True:
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > end:
            raise RuntimeError('the backend did not become SERVING')
        time.sleep(0.1)


def _step(backend: BackendProcess, title: str, call, *args) -> object:
    reply = call(*args, timeout=DEADLINE)
    print(f'\n== {title}')
    for line in textwrap.dedent(str(reply)).strip().splitlines():
        print(f'   {line}')
    for request in _hmc_requests(backend.drain_log()):
        print(f'   | {request}')
    return reply


def _lifecycle(stub: pb_grpc.DPMHostStub, backend: BackendProcess, host: str, inv: dict) -> None:
    instance_uuid = str(uuid.uuid4())
    flavor = pb.Flavor(vcpus=2, memory_mb=4096)
    print(f'\n######## host {host}: instance {instance_uuid}')
    _step(backend, 'GetHostStatus', stub.GetHostStatus, pb.GetHostStatusRequest(host=host))
    _step(
        backend,
        'PrepareInstance (partition + vHBAs)',
        stub.PrepareInstance,
        pb.PrepareInstanceRequest(host=host, instance_uuid=instance_uuid, flavor=flavor),
    )
    connector = _step(
        backend,
        'GetVolumeConnector',
        stub.GetVolumeConnector,
        pb.GetVolumeConnectorRequest(host=host, instance_uuid=instance_uuid),
    )
    nics = [
        pb.Nic(
            port_id=str(uuid.uuid4()),
            mac=f'fa:16:3e:00:{index:02x}:{HOSTS.index(host):02x}',
            vif_type='dpm_vswitch',
            vswitch_object_id=vswitch,
        )
        for index, vswitch in enumerate(inv['vswitches'][:2])
    ]
    boot_volume = pb.FcBootVolume(
        target_lun=1,
        initiator_target_map=[
            pb.InitiatorTargets(initiator_wwpn=wwpn, target_wwpns=[BOOT_TARGET_WWPN])
            for wwpn in connector.wwpns
        ],
    )
    spawn = pb.SpawnRequest(
        host=host, instance_uuid=instance_uuid, flavor=flavor, nics=nics, boot_volume=boot_volume
    )
    _step(backend, 'Spawn (2 NICs, FC boot)', stub.Spawn, spawn)
    ids = {'host': host, 'instance_uuid': instance_uuid}
    _step(backend, 'GetInstanceInfo', stub.GetInstanceInfo, pb.GetInstanceInfoRequest(**ids))
    _step(backend, 'ListInstances', stub.ListInstances, pb.ListInstancesRequest(host=host))
    _step(backend, 'PowerOff', stub.PowerOff, pb.PowerOffRequest(**ids))
    _step(backend, 'PowerOn', stub.PowerOn, pb.PowerOnRequest(**ids))
    _step(backend, 'Reboot (hard)', stub.Reboot, pb.RebootRequest(**ids))
    _step(backend, 'Destroy', stub.Destroy, pb.DestroyRequest(**ids))
    _step(backend, 'Destroy again (idempotent)', stub.Destroy, pb.DestroyRequest(**ids))
    try:
        stub.GetInstanceInfo(pb.GetInstanceInfoRequest(**ids), timeout=DEADLINE)
    except grpc.RpcError as exc:
        print(f'\n== GetInstanceInfo after destroy\n   {exc.code().name}: {exc.details()}')
        backend.drain_log()
    else:
        raise RuntimeError('the destroyed instance is still reported')


def main() -> int:
    inventory = _inventory()
    with tempfile.TemporaryDirectory(prefix='dpm-demo-') as workdir:
        socket_path = os.path.join(workdir, 'dpm-backend.sock')
        config_file = os.path.join(workdir, 'dpm-backend.conf')
        with open(config_file, 'w', encoding='utf-8') as stream:
            stream.write(_config_text(socket_path, inventory))
        print(f'Starting dpm-backend on the mock HMC ({config_mod.BUILTIN_MOCK_PATH})')
        backend = BackendProcess(config_file)
        try:
            with grpc.insecure_channel(f'unix:{socket_path}') as channel:
                _wait_serving(channel, timeout=30)
                backend.drain_log(0)
                stub = pb_grpc.DPMHostStub(channel)
                for host in HOSTS:
                    _lifecycle(stub, backend, host, inventory)
        finally:
            backend.process.send_signal(signal.SIGTERM)
            code = backend.process.wait(timeout=30)
        tail = [line for line in backend.drain_log() if 'Stopped' in line]
        print(f'\n== SIGTERM: backend exited with {code}; {" ".join(tail)}')
        if code != 0 or os.path.exists(socket_path):
            print('the backend did not stop cleanly', file=sys.stderr)
            return 1
    print('Demo finished: every step answered, nothing left running.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
