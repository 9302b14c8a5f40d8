"""Moving servers between Nova hosts through Nova's own flows: resize, cold migration, evacuate.

Several nova-compute services run in one process (Nova's functional harness),
each with a DPMDriver bound to the Nova host and the backend it was started
for, and each with its own compute node identity. "hosta" and "hostb" are
CPC subsets of the z13 of one HMC (2.15.0), "hostz" is its z14 (DPM storage
management), all three served by one backend; "hostc" is the z13 of a second
HMC (2.14.1) with a backend of its own. A server boots from the FC volume
that Cinder's fixture maps to the initiators of the connector it was given,
so a test can tell which host's initiators a volume connection is for.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import shutil
import sys
import tempfile
import threading
from unittest import mock

from dpmtest import DEFAULT_PROFILE
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import hmc_error
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import rejected
from dpmtest import simulator
from dpmtest import write_config
from fc_cinder import LUN
from fc_cinder import TARGET
from fc_cinder import VOLUME
from fc_cinder import storage_of_a_boot_from_volume_cloud
from nova.tests.functional import integrated_helpers
from oslo_utils.fixture import uuidsentinel as uuids

from dpm_backend import boot
from dpm_backend import naming
from dpm_backend.server import Backend
from dpm_frontend import translate
from nova import context as nova_context
from nova import objects

# The HMC (simulator profile) of each backend: two distinct HMCs.
PROFILES = {'one': DEFAULT_PROFILE, 'two': '2.14.1'}


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a Nova host is: its backend, its CPC, its FCP adapters and the
    virtual switch its ports are bound to there (INVENTORY keys)."""

    backend: str
    cpc: str
    adapters: str
    vswitch: str


HOSTS = {
    'hosta': Placement('one', 'z13', 'fcp', 'vswitch_osa0'),
    'hostb': Placement('one', 'z13', 'fcp', 'vswitch_osa0'),
    'hostz': Placement('one', 'z14', 'fcp_z14', 'vswitch_z14'),
    'hostc': Placement('two', 'z13', 'fcp', 'vswitch_osa0'),
}
MACS = ('fa:16:3e:4d:00:01', 'fa:16:3e:4d:00:02')


class _MovesTestBase(integrated_helpers._IntegratedTestBase):
    """Nova with a compute service per host of COMPUTES, on their backends."""

    microversion = 'latest'
    ADMIN_API = True
    # RPC casts stay casts: a failure on a compute reaches Nova's own error
    # handling there, not the API request that started the operation.
    CAST_AS_CALL = False
    COMPUTES: tuple[str, ...] = ('hosta', 'hostb')

    def setUp(self):
        workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-moves-'))
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        self.hmcs = {}
        self.sockets = {}
        self.backends = {}
        for key in sorted({HOSTS[h].backend for h in self.COMPUTES}):
            served = simulator(PROFILES[key])
            pristine(served)
            hosts = [
                HostSpec(
                    name,
                    INVENTORY[HOSTS[name].cpc],
                    max_processors=8,
                    max_memory=16384,
                    mappings=tuple(f'{a}:0' for a in INVENTORY[HOSTS[name].adapters]),
                )
                for name in self.COMPUTES
                if HOSTS[name].backend == key
            ]
            socket_path = workdir / f'{key}.sock'
            config = write_config(workdir / f'{key}.conf', socket_path, hosts, hmc=served)
            backend = Backend(load_config(config))
            backend.start()
            self.addCleanup(backend.stop, 1)
            self.hmcs[key] = served
            self.sockets[key] = socket_path
            self.backends[key] = backend
        self.flags(compute_driver='dpm.DPMDriver')
        self.flags(retry_interval=0.1, group='dpm')
        self.flags(
            api_paste_config=os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
            group='wsgi',
        )
        super().setUp()
        self.cinder = storage_of_a_boot_from_volume_cloud(self)
        self.small = self.admin_api.post_flavor(
            {'flavor': {'name': 'dpm.small', 'ram': 2048, 'vcpus': 2, 'disk': 0}}
        )['id']
        self.big = self.admin_api.post_flavor(
            {'flavor': {'name': 'dpm.big', 'ram': 4096, 'vcpus': 4, 'disk': 0}}
        )['id']
        self._bind_ports_per_host()

    # -- Nova around the backends ----------------------------------------

    def _setup_compute_service(self):
        for host in self.COMPUTES:
            self.start_dpm_compute(host)
        return self.computes[self.COMPUTES[0]]

    def start_dpm_compute(self, host: str):
        """nova-compute for ``host``, with its backend and its own node identity.

        The driver reads the host name and [dpm] when it is created and the
        node identity while the service starts (Nova's is process-wide).
        """
        self.flags(backend=f'unix:{self.sockets[HOSTS[host].backend]}', group='dpm')
        node = getattr(uuids, f'node_{host}')
        with mock.patch('nova.virt.node.get_local_node_uuid', return_value=node):
            return self._start_compute(host)

    def _bind_ports_per_host(self) -> None:
        """A port binding names the virtual switch of its host, as networking-dpm's do."""
        update_port = self.neutron.update_port

        def bind(port_id, body=None):
            host = ((body or {}).get('port') or {}).get('binding:host_id')
            if host in HOSTS:
                vswitch = INVENTORY[HOSTS[host].vswitch]
                self.neutron._ports[port_id]['binding:vif_details'] = {'object_id': vswitch}
            return update_port(port_id, body)

        self.neutron.update_port = bind

    def dpm_port(self, mac: str) -> str:
        port = self.neutron.create_port({'port': {'network_id': self.neutron.network_1['id']}})[
            'port'
        ]
        self.neutron._ports[port['id']].update(
            {
                'mac_address': mac,
                'status': 'ACTIVE',
                'binding:vif_type': 'dpm_vswitch',
                'binding:vif_details': {'object_id': INVENTORY['vswitch_osa0']},
            }
        )
        return port['id']

    def boot(self, host: str, ports: list[str]) -> dict:
        """A server from VOLUME with ``ports`` on ``host``, ACTIVE."""
        body = {
            'name': 'dpm-server',
            'flavorRef': self.small,
            'networks': [{'port': port} for port in ports] if ports else 'none',
            'imageRef': '',
            'host': host,
            'block_device_mapping_v2': [
                {
                    'boot_index': 0,
                    'uuid': VOLUME,
                    'source_type': 'volume',
                    'destination_type': 'volume',
                }
            ],
        }
        server = self.api.post_server({'server': body})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(host, server['OS-EXT-SRV-ATTR:host'])
        return server

    def enable_only(self, *hosts: str) -> None:
        """Let the scheduler choose among ``hosts`` only."""
        for service in self.api.get_services(binary='nova-compute'):
            status = 'enabled' if service['host'] in hosts else 'disabled'
            self.api.put_service(service['id'], {'status': status})

    def sysmeta(self, server: dict) -> dict:
        instance = objects.Instance.get_by_uuid(
            nova_context.get_admin_context(), server['id'], expected_attrs=['system_metadata']
        )
        return dict(instance.system_metadata)

    # -- the HMCs ----------------------------------------------------------

    def cpc(self, host: str):
        placement = HOSTS[host]
        return self.hmcs[placement.backend].sim.hmc.cpcs.lookup_by_oid(INVENTORY[placement.cpc])

    def partition(self, host: str, server: dict):
        """The server's partition on ``host``, or None."""
        name = naming.partition_name(host, server['id'])
        found = [p for p in self.cpc(host).partitions.list() if p.properties['name'] == name]
        return found[0] if found else None

    def partitions_of(self, server: dict) -> dict:
        """The server's partitions on every host of the test: {host: partition}."""
        found = {host: self.partition(host, server) for host in self.COMPUTES}
        return {host: p for host, p in found.items() if p is not None}

    def storage_groups(self, key: str) -> dict:
        console = self.hmcs[key].sim.hmc.consoles.lookup_by_oid(None)
        return {g.properties['name']: g for g in console.storage_groups.list()}

    def hmc_objects(self) -> dict:
        """What the HMCs hold (FCCinderFixture records it with each attachment delete)."""
        return {
            key: {
                'partitions': {
                    p.properties['name']
                    for c in served.sim.hmc.cpcs.list()
                    for p in c.partitions.list()
                },
                'storage_groups': set(self.storage_groups(key)),
            }
            for key, served in self.hmcs.items()
        }

    def vhba_wwpns(self, partition) -> list[str]:
        return sorted(h.properties['wwpn'].lower() for h in partition.hbas.list())

    def connected(self) -> dict:
        """The one attachment of VOLUME that holds a connector (Cinder allows one)."""
        (attachment,) = [
            a for a in self.cinder.volume_to_attachment[VOLUME].values() if a['connector']
        ]
        return attachment['connector']

    def assert_boots_from_volume_through_its_vhbas(self, partition) -> None:
        props = partition.properties
        hbas = {h.properties['element-uri'] for h in partition.hbas.list()}
        self.assertEqual('storage-adapter', props['boot-device'])
        self.assertIn(props['boot-storage-device'], hbas)
        self.assertEqual(TARGET.lower(), props['boot-world-wide-port-name'])
        self.assertEqual(boot.lun_property(LUN), props['boot-logical-unit-number'])

    def assert_nics(self, partition, ports: list[str], host: str) -> None:
        nics = {n.properties['name']: n.properties for n in partition.nics.list()}
        self.assertEqual({naming.nic_name(p) for p in ports}, set(nics))
        for port, mac in zip(ports, MACS, strict=True):
            self.assertEqual(
                naming.nic_description(host, mac), nics[naming.nic_name(port)]['description']
            )
        tokens = partition.properties['boot-os-specific-parameters'].split()
        self.assertEqual(
            [mac.replace(':', '') for mac in MACS], [t.rstrip(';').split(',')[2] for t in tokens]
        )

    def sizes(self, partition) -> tuple[int, int, int]:
        props = partition.properties
        return props['ifl-processors'], props['initial-memory'], props['maximum-memory']

    def assert_nothing_refused(self) -> None:
        for served in self.hmcs.values():
            self.assertEqual([], rejected(served.sim.requests()))


class DPMResizeTest(_MovesTestBase):
    """Resize between two hosts on one CPC of one backend: confirm, revert, a failed finish."""

    def resize_to_hostb(self) -> tuple[dict, list[str], dict]:
        """A server with two ports on hosta, resized to the big flavor on hostb."""
        ports = [self.dpm_port(mac) for mac in MACS]
        server = self.boot('hosta', ports)
        source = self.partition('hosta', server)
        before = copy.deepcopy(dict(source.properties))
        self.assertEqual(
            {translate.wwpns_key('hosta'): ','.join(self.vhba_wwpns(source))},
            {k: v for k, v in self.sysmeta(server).items() if k.startswith(translate.WWPNS_KEY)},
        )
        self.enable_only('hostb')
        server = self._resize_server(server, self.big)
        self.assertEqual('hostb', server['OS-EXT-SRV-ATTR:host'])
        return server, ports, before

    def test_resize_to_a_bigger_flavor_then_confirm(self):
        # Each compute service reports its own node, named after its own host.
        hypervisors = self.api.api_get('/os-hypervisors/detail').body['hypervisors']
        self.assertEqual(
            {('hosta', uuids.node_hosta), ('hostb', uuids.node_hostb)},
            {(h['hypervisor_hostname'], h['id']) for h in hypervisors},
        )
        server, ports, before = self.resize_to_hostb()
        # VERIFY_RESIZE: the destination runs with the new sizes, the source is stopped.
        source, dest = self.partition('hosta', server), self.partition('hostb', server)
        self.assertEqual('stopped', source.properties['status'])
        self.assertEqual('active', dest.properties['status'])
        self.assertEqual((4, 4096, 4096), self.sizes(dest))
        dest_wwpns = self.vhba_wwpns(dest)
        self.assertEqual(
            {'wwpns': dest_wwpns, 'host': server['id']},
            {'wwpns': sorted(self.connected()['wwpns']), 'host': self.connected()['host']},
        )

        server = self._confirm_resize(server)
        (host,) = self.partitions_of(server)
        self.assertEqual('hostb', host)
        dest = self.partition('hostb', server)
        self.assertEqual('active', dest.properties['status'])
        self.assertEqual((4, 4096, 4096), self.sizes(dest))
        self.assertEqual('OpenStack CPCSubset=hostb', dest.properties['description'])
        # The same NICs (ports, MACs) and the same kernel command line.
        self.assert_nics(dest, ports, 'hostb')
        self.assertEqual(
            before['boot-os-specific-parameters'], dest.properties['boot-os-specific-parameters']
        )
        # The same volume, through the destination's vHBAs, which Cinder's
        # connection is for; only the destination's WWPNs stay stored.
        self.assert_boots_from_volume_through_its_vhbas(dest)
        self.assertEqual(dest_wwpns, sorted(self.connected()['wwpns']))
        self.assertEqual(
            {translate.wwpns_key('hostb'): ','.join(dest_wwpns)},
            {k: v for k, v in self.sysmeta(server).items() if k.startswith(translate.WWPNS_KEY)},
        )
        self.assert_nothing_refused()

    def test_resize_then_revert(self):
        server, ports, before = self.resize_to_hostb()
        source_wwpns = self.vhba_wwpns(self.partition('hosta', server))
        server = self._revert_resize(server)
        self.assertEqual('hosta', server['OS-EXT-SRV-ATTR:host'])
        (host,) = self.partitions_of(server)
        self.assertEqual('hosta', host)
        source = self.partition('hosta', server)
        self.assertEqual('active', source.properties['status'])
        self.assertEqual((2, 2048, 2048), self.sizes(source))
        self.assert_nics(source, ports, 'hosta')
        self.assertEqual(
            before['boot-os-specific-parameters'],
            source.properties['boot-os-specific-parameters'],
        )
        self.assert_boots_from_volume_through_its_vhbas(source)
        self.assertEqual(source_wwpns, sorted(self.connected()['wwpns']))
        self.assertEqual(
            {translate.wwpns_key('hosta'): ','.join(source_wwpns)},
            {k: v for k, v in self.sysmeta(server).items() if k.startswith(translate.WWPNS_KEY)},
        )
        self.assert_nothing_refused()

    def test_a_failed_finish_leaves_an_error_a_hard_reboot_recovers(self):
        """The destination's start fails: ERROR there; a hard reboot reconfigures and starts it.

        Nova puts the old flavor back on the instance when finish_migration
        fails, so the partition prepared with the new one is resized by the
        recovering spawn (the backend resizes a stopped partition).
        """
        ports = [self.dpm_port(mac) for mac in MACS]
        server = self.boot('hosta', ports)
        armed = threading.Event()

        def fail_a_start(method, uri, proceed):
            if armed.is_set() and method == 'POST' and uri.endswith('/operations/start'):
                armed.clear()
                raise hmc_error(409, 2, method, uri)
            return proceed()

        self.backends['one'].pool.interceptors.insert(0, fail_a_start)
        self.enable_only('hostb')
        armed.set()
        self.api.post_server_action(server['id'], {'resize': {'flavorRef': self.big}})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertEqual('hostb', server['OS-EXT-SRV-ATTR:host'])
        self.assertIn('HMC 409,2', server['fault']['message'])
        dest = self.partition('hostb', server)
        self.assertEqual('stopped', dest.properties['status'])
        # Spawn took back the NICs it had created.
        self.assertEqual([], dest.nics.list())

        self._reboot_server(server, hard=True)
        server = self._wait_for_state_change(server, 'ACTIVE')
        dest = self.partition('hostb', server)
        self.assertEqual('active', dest.properties['status'])
        self.assert_nics(dest, ports, 'hostb')
        self.assert_boots_from_volume_through_its_vhbas(dest)
        self.assertEqual(self.vhba_wwpns(dest), sorted(self.connected()['wwpns']))
        self.assertEqual('stopped', self.partition('hosta', server).properties['status'])
        self.assertEqual((2, 2048), (server['flavor']['vcpus'], server['flavor']['ram']))
        # Reconciled to the flavor Nova holds now.
        self.assertEqual((2, 2048, 2048), self.sizes(dest))


class DPMEvacuateTest(_MovesTestBase):
    """Evacuate from a host whose nova-compute is down to another host of the same backend."""

    def evacuate_to_hostb(self) -> tuple[dict, list[str], str]:
        """A server on hosta, evacuated to hostb once hosta's compute is down; its
        ports and the URI of its partition on hosta."""
        ports = [self.dpm_port(mac) for mac in MACS]
        server = self.boot('hosta', ports)
        source = self.partition('hosta', server)
        self.computes['hosta'].stop()
        (service,) = self.api.get_services(binary='nova-compute', host='hosta')
        self.api.put_service(service['id'], {'forced_down': True})
        for served in self.hmcs.values():
            served.sim.clear_requests()
        client = self.computes['hostb'].manager.driver.client
        # Before 2.95 an evacuated server comes up ACTIVE (then: stopped).
        self.api.microversion = '2.94'
        try:
            with mock.patch.object(client, 'call', wraps=client.call) as calls:
                server = self._evacuate_server(
                    server, {'host': 'hostb'}, expected_host='hostb', expected_state='ACTIVE'
                )
        finally:
            self.api.microversion = self.microversion
        # The destination's driver asked its backend to stop the other hosts' partitions.
        (spawn,) = [c.args[1] for c in calls.call_args_list if c.args[0] == 'Spawn']
        self.assertEqual(('hostb', True), (spawn.host, spawn.stop_other_hosts_partitions))
        return server, ports, source.uri

    def test_evacuate_then_the_source_cleans_up_when_its_compute_returns(self):
        server, ports, _ = self.evacuate_to_hostb()
        dest = self.partition('hostb', server)
        self.assertEqual('active', dest.properties['status'])
        self.assertEqual((2, 2048, 2048), self.sizes(dest))
        self.assert_nics(dest, ports, 'hostb')
        self.assert_boots_from_volume_through_its_vhbas(dest)
        self.assertEqual(self.vhba_wwpns(dest), sorted(self.connected()['wwpns']))
        self.assertIsNotNone(self.partition('hosta', server))

        # hosta's compute comes back and removes what the evacuation left there.
        self.flags(backend=f'unix:{self.sockets["one"]}', group='dpm')
        with mock.patch('nova.virt.node.get_local_node_uuid', return_value=uuids.node_hosta):
            self.restart_compute_service(self.computes['hosta'], keep_hypervisor_state=False)
        self.assertEqual({'hostb'}, set(self.partitions_of(server)))
        self.assertEqual('active', self.partition('hostb', server).properties['status'])
        self.assertEqual(
            [translate.wwpns_key('hostb')],
            [k for k in self.sysmeta(server) if k.startswith(translate.WWPNS_KEY)],
        )
        self.assert_nothing_refused()

    def test_evacuate_stops_the_source_partition_before_the_destination_starts(self):
        server, _, source_uri = self.evacuate_to_hostb()
        dest_uri = self.partition('hostb', server).uri
        posts = [
            (r.uri.rsplit('/', 1)[-1], r.uri.split('/operations/')[0])
            for r in self.hmcs['one'].sim.requests()
            if r.method == 'POST' and '/operations/' in r.uri
        ]
        self.assertEqual([('stop', source_uri), ('start', dest_uri)], posts)
        self.assertEqual('stopped', self.partition('hosta', server).properties['status'])


class DPMMigrateAcrossTest(_MovesTestBase):
    """Cold migration from a vHBA host to a storage-group host, then to another HMC."""

    COMPUTES = ('hosta', 'hostz', 'hostc')

    def test_cold_migrate_to_a_storage_group_host_then_to_another_hmc(self):
        port = self.dpm_port(MACS[0])
        server = self.boot('hosta', [port])
        before = self.hmc_objects()

        server = self._migrate_server(server, host='hostz')
        server = self._confirm_resize(server)
        self.assertEqual({'hostz'}, set(self.partitions_of(server)))
        dest = self.partition('hostz', server)
        name = naming.partition_name('hostz', server['id'])
        group = self.storage_groups('one')[name]
        (volume,) = group.storage_volumes.list()
        self.assertEqual(
            ('active', [group.uri], 'storage-volume', volume.uri),
            (
                dest.properties['status'],
                dest.properties['storage-group-uris'],
                dest.properties['boot-device'],
                dest.properties['boot-storage-volume'],
            ),
        )
        # The port's NIC, on the z14's virtual switch (the binding names it there).
        (nic,) = dest.nics.list()
        self.assertEqual(
            naming.virtual_switch_uri(INVENTORY['vswitch_z14']),
            nic.properties['virtual-switch-uri'],
        )
        group_wwpns = sorted(
            v.properties['world-wide-port-name'].lower()
            for v in group.virtual_storage_resources.list()
        )
        self.assertEqual(group_wwpns, sorted(self.connected()['wwpns']))

        server = self._migrate_server(server, host='hostc')
        server = self._confirm_resize(server)
        self.assertEqual('hostc', server['OS-EXT-SRV-ATTR:host'])
        self.assertEqual({'hostc'}, set(self.partitions_of(server)))
        dest = self.partition('hostc', server)
        self.assertEqual('active', dest.properties['status'])
        self.assert_boots_from_volume_through_its_vhbas(dest)
        self.assertEqual(self.vhba_wwpns(dest), sorted(self.connected()['wwpns']))
        # Nothing of the server is left on the first HMC: no partition, no group.
        after = self.hmc_objects()
        self.assertEqual(
            {
                'partitions': before['one']['partitions']
                - {naming.partition_name('hosta', server['id'])},
                'storage_groups': before['one']['storage_groups'],
            },
            after['one'],
        )
        self.assertEqual(
            before['two']['partitions'] | {naming.partition_name('hostc', server['id'])},
            after['two']['partitions'],
        )
        self.assert_nothing_refused()


class DPMSameHostResizeTest(_MovesTestBase):
    """A resize Nova sends to the server's own host is refused; the server keeps running."""

    COMPUTES = ('hosta',)

    def test_same_host_resize_is_refused_and_the_server_stays_active(self):
        self.flags(allow_resize_to_same_host=True)
        server = self.boot('hosta', [self.dpm_port(MACS[0])])
        self.hmcs['one'].sim.clear_requests()
        self.api.post_server_action(server['id'], {'resize': {'flavorRef': self.big}})
        event = self._wait_for_instance_action_event(
            server, 'resize', 'compute_resize_instance', 'Error'
        )
        self.assertIn('cannot resize an instance on its own host (hosta)', event['details'])
        server = self._wait_for_state_change(server, 'ACTIVE')
        self._wait_for_migration_status(server, ['error'])
        self.assertEqual((2, 2048), (server['flavor']['vcpus'], server['flavor']['ram']))
        partition = self.partition('hosta', server)
        self.assertEqual('active', partition.properties['status'])
        self.assertEqual((2, 2048, 2048), self.sizes(partition))
        # Refused before anything reached the HMC but reads.
        self.assertEqual([], [r for r in self.hmcs['one'].sim.requests() if r.method != 'GET'])
