"""Test helpers: configs on the shipped mock HMC, a running backend, a request log."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from pathlib import Path

import grpc
import yaml
from oslo_config import cfg

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import config as config_mod
from dpm_backend.server import Backend

PASSWORD = 'Pa55-never-logged'


def _inventory() -> dict:
    with open(config_mod.BUILTIN_MOCK_PATH, encoding='utf-8') as stream:
        definition = yaml.safe_load(stream)['hmc_definition']
    cpcs = {c['properties']['name']: c for c in definition['cpcs']}

    def ids(cpc: str, kind: str, **match) -> list[str]:
        return [
            item['properties']['object-id']
            for item in cpcs[cpc].get(kind, [])
            if all(item['properties'].get(k) == v for k, v in match.items())
        ]

    return {
        'z13': cpcs['CPCZ13']['properties']['object-id'],
        'z14': cpcs['CPCZ14']['properties']['object-id'],
        'classic': cpcs['CPCCLAS']['properties']['object-id'],
        'fcp': ids('CPCZ13', 'adapters', type='fcp'),
        'fcp_z14': ids('CPCZ14', 'adapters', type='fcp'),
        'vswitch_osa0': ids('CPCZ13', 'virtual_switches', name='OSA-A port 0')[0],
        'vswitch_osa1': ids('CPCZ13', 'virtual_switches', name='OSA-A port 1')[0],
        'vswitch_hs': ids('CPCZ13', 'virtual_switches', name='HIPERSOCKETS-1')[0],
    }


INVENTORY = _inventory()


@dataclasses.dataclass
class HostSpec:
    name: str
    cpc: str
    max_processors: int = 8
    max_memory: int = 16384
    mappings: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


def default_hosts() -> list[HostSpec]:
    fcp = tuple(f'{a}:0' for a in INVENTORY['fcp'])
    return [
        HostSpec('cpc1', INVENTORY['z13'], mappings=fcp),
        HostSpec('cpc10', INVENTORY['z13'], max_processors=4, max_memory=8192, mappings=fcp),
        HostSpec('z14host', INVENTORY['z14'], mappings=(f'{INVENTORY["fcp_z14"][0]}:0',)),
        HostSpec(
            'classic', INVENTORY['classic'], max_processors=2, max_memory=1024, mappings=fcp[:1]
        ),
    ]


def write_config(
    path: Path,
    socket_path: Path,
    hosts: list[HostSpec] | None = None,
    extra: dict[str, dict[str, str]] | None = None,
) -> Path:
    hosts = default_hosts() if hosts is None else hosts
    sections: dict[str, dict[str, object]] = {
        'hmc': {
            'mock_definition': config_mod.BUILTIN_MOCK,
            'userid': 'openstack',
            'password': PASSWORD,
            'probe_interval': 1,
        },
        'backend': {
            'listen': f'unix:{socket_path}',
            'hosts': ','.join(h.name for h in hosts),
            'grace_period': 2,
        },
    }
    for host in hosts:
        sections[f'host:{host.name}'] = {
            'cpc_object_id': host.cpc,
            'max_processors': host.max_processors,
            'max_memory': host.max_memory,
            'physical_storage_adapter_mappings': list(host.mappings),
            'target_wwpn_ignore_list': ','.join(host.ignore),
        }
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f'[{section}]')
        for key, value in values.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f'{key} = {item}')
    path.write_text('\n'.join(lines) + '\n')
    return path


def load_config(path: Path) -> config_mod.BackendConfig:
    return config_mod.load(['--config-file', str(path)], cfg.ConfigOpts())


class RequestLog:
    """Interceptor recording every HMC request as (method, uri)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, method, uri, proceed):
        with self._lock:
            self.requests.append((method, uri))
        return proceed()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self) -> int:
        return len(self.requests)


@dataclasses.dataclass
class RunningBackend:
    backend: Backend
    stub: pb_grpc.DPMHostStub
    channel: grpc.Channel
    log: RequestLog

    @property
    def hmc(self):
        """The faked HMC below the session, for assertions on HMC objects."""
        return self.backend.pool.mock.hmc

    def cpc(self, key: str = 'z13'):
        return self.hmc.cpcs.lookup_by_oid(INVENTORY[key])

    def partitions(self, key: str = 'z13') -> dict[str, dict]:
        return {p.properties['name']: p for p in self.cpc(key).partitions.list()}


def new_uuid() -> str:
    return str(uuid.uuid4())


def flavor(vcpus: int = 2, memory_mb: int = 2048) -> pb.Flavor:
    return pb.Flavor(vcpus=vcpus, memory_mb=memory_mb)


def nic(vswitch: str, mac: str = 'fa:16:3e:00:00:01', port_id: str | None = None, **kw) -> pb.Nic:
    return pb.Nic(
        port_id=port_id or new_uuid(),
        mac=mac,
        vif_type=kw.pop('vif_type', 'dpm_vswitch'),
        vswitch_object_id=vswitch,
        **kw,
    )


def boot_volume(initiators: list[str], targets: list[str], lun: int = 1) -> pb.FcBootVolume:
    return pb.FcBootVolume(
        target_lun=lun,
        initiator_target_map=[
            pb.InitiatorTargets(initiator_wwpn=w, target_wwpns=targets) for w in initiators
        ],
    )
