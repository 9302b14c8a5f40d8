"""Test helpers: configs on the HMC simulator, a running backend, a request log."""

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
from dpm_hmc_sim import definition as sim_definitions

PASSWORD = 'Pa55-never-logged'
USERID = 'openstack'
# The simulator profile of most tests: an HMC 2.15.0 managing a z13 (vHBAs), a
# z14 (storage groups) and a classic-mode CPC.
DEFAULT_PROFILE = '2.15.0'
# The HMC versions that manage a CPC with vHBAs (a z13).
VHBA_PROFILES = ('2.14.1', '2.15.0')


def _inventory() -> dict:
    with open(sim_definitions.resolve(DEFAULT_PROFILE), encoding='utf-8') as stream:
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
        'vswitch_z14': ids('CPCZ14', 'virtual_switches', name='OSA-Z14 port 0')[0],
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
    *,
    hmc=None,
) -> Path:
    """A backend config for ``hmc`` (a simulator endpoint: host, port, ca_file).

    Without ``hmc`` the config names an HMC on loopback that nothing serves:
    enough for tests that only load the config.
    """
    hosts = default_hosts() if hosts is None else hosts
    endpoint = {'hosts': '127.0.0.1'}
    if hmc is not None:
        endpoint = {'hosts': hmc.host, 'port': hmc.port, 'ca_file': hmc.ca_file}
        # The HMC's notifications when the simulator publishes them (its STOMP broker).
        stomp_port = getattr(hmc, 'stomp_port', None)
        if stomp_port:
            endpoint['stomp_port'] = stomp_port
        else:
            endpoint['notifications'] = 'false'

    sections: dict[str, dict[str, object]] = {
        'hmc': {
            **endpoint,
            'userid': USERID,
            'password': PASSWORD,
            'probe_interval': 1,
            # Simulated jobs end at once: check them right away.
            'job_poll_interval': 0.01,
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
    served: object  # dpm_hmc_sim.testing.ServedSimulator

    @property
    def sim(self):
        return self.served.sim

    @property
    def hmc(self):
        """The simulator's faked HMC, for assertions on HMC objects."""
        return self.served.sim.hmc

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


# --- Faults at the session seam, HMC state snapshots (tests/faults, tests/fuzz) ---

HMC_ASSIGNED = frozenset(
    {
        'object-id',
        'object-uri',
        'element-id',
        'element-uri',
        'parent',
        'device-number',
        'wwpn',
        'short-name',
        'partition-id',
    }
)


def differences(got, want, path: str = '') -> list[str]:
    """Where two nested dicts differ, one line per leaf."""
    if isinstance(got, dict) and isinstance(want, dict):
        lines = []
        for key in sorted(set(got) | set(want), key=str):
            if key not in got:
                lines.append(f'{path}/{key}: missing (want {want[key]!r})')
            elif key not in want:
                lines.append(f'{path}/{key}: unexpected {got[key]!r}')
            else:
                lines += differences(got[key], want[key], f'{path}/{key}')
        return lines
    return [] if got == want else [f'{path}: {got!r} (want {want!r})']


def hmc_error(status: int, reason: int, method: str = 'GET', uri: str = '/api') -> Exception:
    import zhmcclient

    return zhmcclient.HTTPError(
        {
            'http-status': status,
            'reason': reason,
            'message': f'injected HTTP {status},{reason}',
            'request-method': method,
            'request-uri': uri,
        }
    )


def snapshot(hmc, exclude: set[str] | frozenset[str] = frozenset()) -> dict:
    """Every partition of every CPC with its NICs and HBAs, deep-copied, by URI.

    Partitions whose name is in ``exclude`` are left out.
    """
    import copy

    state = {}
    for cpc in hmc.cpcs.list():
        for p in cpc.partitions.list():
            if p.properties.get('name') in exclude:
                continue
            state[p.uri] = (
                copy.deepcopy(dict(p.properties)),
                sorted((copy.deepcopy(dict(n.properties)) for n in p.nics.list()), key=repr),
                sorted((copy.deepcopy(dict(h.properties)) for h in p.hbas.list()), key=repr),
            )
    return state


def find_partitions(hmc, name: str) -> list:
    return [p for cpc in hmc.cpcs.list() for p in cpc.partitions.list() if p.name == name]


def instance_state(hmc, name: str) -> dict | None:
    """The partition ``name`` as OpenStack configured it, HMC-assigned ids replaced.

    Object ids, URIs, device numbers and WWPNs are the HMC's choice; they are
    replaced by the names of the objects they designate, so two partitions
    configured alike compare equal, and a command line or boot device that
    points at a missing NIC or HBA does not.
    """
    found = find_partitions(hmc, name)
    if not found:
        return None
    assert len(found) == 1, f'{len(found)} partitions named {name}'
    partition = found[0]
    nics = {n.properties['name']: n.properties for n in partition.nics.list()}
    hbas = {h.properties['name']: h.properties for h in partition.hbas.list()}
    by_devno = {p['device-number'].lower(): n for n, p in nics.items()}
    by_uri = {p['element-uri']: n for n, p in hbas.items()}
    props = {k: v for k, v in partition.properties.items() if k not in HMC_ASSIGNED}
    props.pop('nic-uris', None)
    props.pop('hba-uris', None)
    if props.get('boot-storage-device'):
        props['boot-storage-device'] = by_uri.get(props['boot-storage-device'], 'MISSING HBA')
    tokens = (props.get('boot-os-specific-parameters') or '').split()
    props['boot-os-specific-parameters'] = [
        (by_devno.get(t.split(',')[0].lower(), 'MISSING NIC'), *t.split(',')[1:]) for t in tokens
    ]

    def strip(objects: dict) -> dict:
        return {
            name: {k: v for k, v in p.items() if k not in HMC_ASSIGNED}
            for name, p in sorted(objects.items())
        }

    return {'partition': props, 'nics': strip(nics), 'hbas': strip(hbas)}


class Faults:
    """Interceptor that fails the k-th HMC request of an armed window.

    ``kind`` says how: an HTTP error or connection error before the request
    reaches the HMC, a read timeout after the HMC applied it (the reply is
    lost), or an expired session (403 reason 5). ``outage``: every request
    from the k-th on fails (connection errors) until disarmed.
    """

    KINDS = (
        'http409-state',
        'http409-busy',
        'http500',
        'http503',
        'connection',
        'read-timeout',
        'session-expired',
    )

    def __init__(self) -> None:
        self.armed = False
        self.index = -1
        self.kind = ''
        self.outage = False
        self.seen = 0
        self.hit: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def arm(self, index: int, kind: str, outage: bool = False) -> None:
        with self._lock:
            self.armed, self.index, self.kind, self.outage = True, index, kind, outage
            self.seen, self.hit = 0, None

    def disarm(self) -> None:
        with self._lock:
            self.armed = False

    def _error(self, method: str, uri: str) -> Exception:
        import zhmcclient

        if self.kind == 'connection' or self.outage:
            return zhmcclient.ConnectionError('injected: connection refused', None)
        if self.kind == 'read-timeout':
            return zhmcclient.ReadTimeout('injected: read timeout', None, 1, 0)
        status, reason = {
            'http409-state': (409, 1),
            'http409-busy': (409, 2),
            'http500': (500, 0),
            'http503': (503, 0),
            'session-expired': (403, 5),
        }[self.kind]
        return hmc_error(status, reason, method, uri)

    def __call__(self, method, uri, proceed):
        with self._lock:
            position = self.seen
            self.seen += 1
            fire = self.armed and (
                position == self.index or (self.outage and position > self.index)
            )
            if fire and self.hit is None:
                self.hit = (method, uri)
        if not fire:
            return proceed()
        error = self._error(method, uri)
        if self.kind == 'read-timeout' and not self.outage:
            import contextlib

            import zhmcclient

            # The HMC did it (or refused it); either way the reply is lost.
            with contextlib.suppress(zhmcclient.Error):
                proceed()
        raise error


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError('condition not reached')
        time.sleep(interval)


_SIMULATORS: dict = {}


def simulator(profile: str = DEFAULT_PROFILE, notifications: bool = False):
    """The simulator of an HMC profile, served over HTTPS in this process.

    One per profile (and with or without its STOMP broker for notifications)
    and test process, started on first use (in about 0.1 s, 1 s with the
    broker) and stopped at exit; tests reset it (``pristine``) before use.
    """
    key = (profile, notifications)
    if key not in _SIMULATORS:
        import atexit
        import shutil
        import tempfile

        from dpm_hmc_sim.testing import served

        cert_dir = tempfile.mkdtemp(prefix=f'hmc-sim-{profile}-')
        started = served(
            profile,
            userid=USERID,
            password=PASSWORD,
            cert_dir=cert_dir,
            notifications=notifications,
        )
        _SIMULATORS[key] = started
        atexit.register(shutil.rmtree, cert_dir, True)
        atexit.register(started.stop)
    return _SIMULATORS[key]


SIM_DEFAULTS = {
    'start_seconds': 0,
    'stop_seconds': 0,
    'discover_seconds': 0,
    'latency': 0,
    'session_timeout': 0,
    'logon_refused': False,
    'enabled': True,
}


def pristine(served) -> None:
    """The simulator as a test expects it: the definition's state, jobs ending at once."""
    served.sim.reset()
    served.sim.configure(**SIM_DEFAULTS)
    served.sim.set_fabric({'open': True, 'luns': []})  # every LUN on every target
    served.sim.clear_requests()


def rejected(records) -> list:
    """The requests the HMC refused (status 400 and above, or dropped)."""
    return [r for r in records if r.status >= 400 or r.status == 0]


def count_cases(config, label: str, cases: int) -> None:
    """Add to a case count printed at the end of the run (see report_counts)."""
    counts = config.__dict__.setdefault('dpm_case_counts', {})
    counts[label] = counts.get(label, 0) + cases


def report_counts(terminalreporter, config, prefix: str) -> None:
    """Print the case counts whose label starts with ``prefix`` (a summary line each)."""
    counts = config.__dict__.get('dpm_case_counts', {})
    for label, cases in sorted(counts.items()):
        if label.startswith(prefix):
            terminalreporter.write_line(f'{label}: {cases} cases')
