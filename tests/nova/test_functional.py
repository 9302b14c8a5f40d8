"""The driver inside real Nova: API -> conductor -> scheduler -> placement -> compute.

Nova's in-process functional harness runs every service for real; only Neutron,
Cinder and Glance are Nova's own fixtures. The compute service loads
``compute_driver = dpm.DPMDriver`` through the installed nova/virt/dpm shim and
talks to a real dpm-backend over a unix socket, which talks to the HMC
simulator over HTTPS through a real zhmcclient Session; the boot tests run for
every HMC version that manages a CPC with vHBAs.
"""

from __future__ import annotations

import copy
import os
import pathlib
import shutil
import sys
import tempfile
import time

from dpmtest import DEFAULT_PROFILE
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import RequestLog
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import rejected
from dpmtest import simulator
from dpmtest import write_config
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers

from dpm_backend import boot
from dpm_backend import naming
from dpm_backend.server import Backend

HOST = 'compute'
VOLUME = '9a1f5b3c-2d4e-4f60-8a7b-1c2d3e4f5a6b'
IMAGE = 'c0ffee00-5390-4d00-8000-000000000390'
TARGET = '500507680B2142E5'
LUN = 3


class FCCinderFixture(nova_fixtures.CinderFixture):
    """Cinder with one bootable FC volume, mapped like an FC driver maps it."""

    def fake_get(self, context, volume_id, microversion=None):
        volume = super().fake_get(context, volume_id, microversion)
        if volume_id == VOLUME:
            volume['bootable'] = True
            volume['volume_image_metadata'] = {'image_id': IMAGE, 'hw_architecture': 's390x'}
        return volume

    def _find_connection_info(self, volume_id, attachment_id):
        if volume_id != VOLUME:
            return super()._find_connection_info(volume_id, attachment_id)
        connector = self.volume_to_attachment[volume_id][attachment_id]['connector'] or {}
        return {
            'driver_volume_type': 'fibre_channel',
            'data': {
                'volume_id': volume_id,
                'attachment_id': attachment_id,
                'target_discovered': False,
                'target_lun': LUN,
                'target_wwn': [TARGET],
                'initiator_target_map': {w: [TARGET] for w in connector.get('wwpns', [])},
            },
        }


def other_partitions(served, mine: str) -> dict:
    cpc = served.sim.hmc.cpcs.lookup_by_oid(INVENTORY['z13'])
    return {
        p.properties['name']: copy.deepcopy(dict(p.properties))
        for p in cpc.partitions.list()
        if p.properties['name'] != mine
    }


class _DPMTestBase(integrated_helpers._IntegratedTestBase):
    """A backend on the HMC simulator serving host "compute", and Nova around it."""

    microversion = 'latest'
    ADMIN_API = True
    # The HMC version the simulator answers as.
    PROFILE = DEFAULT_PROFILE

    def setUp(self):
        self.served = simulator(self.PROFILE)
        pristine(self.served)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-nova-'))
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        socket_path = workdir / 'b.sock'
        hosts = [
            HostSpec(
                HOST,
                INVENTORY['z13'],
                max_processors=8,
                max_memory=16384,
                mappings=tuple(f'{a}:0' for a in INVENTORY['fcp']),
            )
        ]
        config = load_config(write_config(workdir / 'b.conf', socket_path, hosts, hmc=self.served))
        self.hmc_log = RequestLog()
        self.backend = Backend(config, interceptors=[self.hmc_log])
        self.backend.start()
        self.addCleanup(self.backend.stop, 1)
        self.flags(compute_driver='dpm.DPMDriver')
        self.flags(backend=f'unix:{socket_path}', retry_interval=0.1, group='dpm')
        self.flags(
            api_paste_config=os.path.join(sys.prefix, 'etc', 'nova', 'api-paste.ini'),
            group='wsgi',
        )
        super().setUp()
        self.cinder = self.useFixture(FCCinderFixture(self))
        self.glance.create(
            None,
            {
                'id': IMAGE,
                'name': 'rhel-s390x',
                'status': 'active',
                'disk_format': 'raw',
                'container_format': 'bare',
                'properties': {'hw_architecture': 's390x'},
            },
        )
        self.flavor = self.admin_api.post_flavor(
            {'flavor': {'name': 'dpm.small', 'ram': 2048, 'vcpus': 2, 'disk': 0}}
        )['id']

    def hmc_partitions(self) -> dict:
        cpc = self.served.sim.hmc.cpcs.lookup_by_oid(INVENTORY['z13'])
        return {p.properties['name']: p for p in cpc.partitions.list()}

    def dpm_port(self, mac: str, vswitch: str, status: str = 'ACTIVE') -> str:
        port = self.neutron.create_port({'port': {'network_id': self.neutron.network_1['id']}})[
            'port'
        ]
        stored = self.neutron._ports[port['id']]
        stored.update(
            {
                'mac_address': mac,
                'status': status,
                'binding:vif_type': 'dpm_vswitch',
                'binding:vif_details': {'object_id': vswitch},
            }
        )
        return port['id']

    def server_body(self, ports, flavor=None, image=None) -> dict:
        server = {
            'name': 'dpm-server',
            'flavorRef': flavor or self.flavor,
            'networks': [{'port': port} for port in ports] if ports else 'none',
        }
        if image:
            server['imageRef'] = image
        else:
            server['imageRef'] = ''
            server['block_device_mapping_v2'] = [
                {
                    'boot_index': 0,
                    'uuid': VOLUME,
                    'source_type': 'volume',
                    'destination_type': 'volume',
                }
            ]
        return server


class DPMServersTest(_DPMTestBase):
    """Servers through the Nova API end up as exactly the right partitions."""

    def test_boot_from_fc_volume_with_two_ports_then_stop_start_reboot_delete(self):
        ports = [
            self.dpm_port('fa:16:3e:11:22:01', INVENTORY['vswitch_osa1']),
            self.dpm_port('fa:16:3e:11:22:02', INVENTORY['vswitch_hs']),
        ]
        before = {n: copy.deepcopy(dict(p.properties)) for n, p in self.hmc_partitions().items()}
        server = self.api.post_server({'server': self.server_body(ports)})
        server = self._wait_for_state_change(server, 'ACTIVE')

        name = naming.partition_name(HOST, server['id'])
        partitions = self.hmc_partitions()
        self.assertEqual(set(before) | {name}, set(partitions))
        props = partitions[name].properties
        self.assertEqual('OpenStack CPCSubset=compute', props['description'])
        self.assertEqual(
            (2, 2048, 2048),
            (props['ifl-processors'], props['initial-memory'], props['maximum-memory']),
        )
        self.assertEqual('active', props['status'])
        nics = {n.properties['name']: n.properties for n in partitions[name].nics.list()}
        self.assertEqual({f'OpenStack_Port_{p}' for p in ports}, set(nics))
        first, second = (nics[f'OpenStack_Port_{p}'] for p in ports)
        self.assertEqual('OpenStack mac=fa:16:3e:11:22:01, CPCSubset=compute', first['description'])
        self.assertEqual(
            'OpenStack mac=fa:16:3e:11:22:02, CPCSubset=compute', second['description']
        )
        self.assertEqual(
            f'{first["device-number"]},1,fa163e112201; {second["device-number"]},0,fa163e112202;',
            props['boot-os-specific-parameters'],
        )
        hbas = {h.properties['name']: h.properties for h in partitions[name].hbas.list()}
        boot_hba = hbas[naming.hba_name(INVENTORY['fcp'][0], 0)]
        self.assertEqual('storage-adapter', props['boot-device'])
        self.assertEqual(boot_hba['element-uri'], props['boot-storage-device'])
        self.assertEqual(TARGET.lower(), props['boot-world-wide-port-name'])
        self.assertEqual(boot.lun_property(LUN), props['boot-logical-unit-number'])
        # The connector Cinder got holds exactly the partition's vHBA WWPNs.
        attachment = next(iter(self.cinder.volume_to_attachment[VOLUME].values()))
        connector = attachment['connector']
        self.assertEqual(server['id'], connector['host'])
        self.assertEqual(
            sorted(h['wwpn'].lower() for h in hbas.values()), sorted(connector['wwpns'])
        )

        server = self._stop_server(server)
        self.assertEqual('stopped', self.hmc_partitions()[name].properties['status'])
        server = self._start_server(server)
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('active', self.hmc_partitions()[name].properties['status'])
        self.hmc_log.clear()
        self._reboot_server(server, hard=True)
        posts = [uri.rsplit('/', 1)[-1] for m, uri in self.hmc_log.requests if m == 'POST']
        self.assertEqual(['stop', 'start'], posts)
        self.assertEqual('active', self.hmc_partitions()[name].properties['status'])

        others = other_partitions(self.served, name)
        self._delete_server(server)
        self.assertNotIn(name, self.hmc_partitions())
        self.assertEqual(others, other_partitions(self.served, name))
        # Cinder got the connector after the partition (and its WWPNs) was gone.
        self.assertEqual(
            {},
            {k: v for k, v in self.cinder.volume_to_attachment[VOLUME].items() if v['connector']},
        )
        # The HMC refused none of the requests of the whole lifecycle.
        self.assertEqual([], rejected(self.served.sim.requests()))

    def test_server_larger_than_the_cpc_subset_is_refused_by_the_scheduler(self):
        big = self.admin_api.post_flavor(
            {'flavor': {'name': 'dpm.huge', 'ram': 2048, 'vcpus': 9, 'disk': 0}}
        )['id']
        before = set(self.hmc_partitions())
        server = self.api.post_server({'server': self.server_body([], flavor=big)})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('No valid host', server['fault']['message'])
        self.assertEqual(before, set(self.hmc_partitions()))

    def test_image_booted_server_fails_with_a_clear_error(self):
        before = set(self.hmc_partitions())
        server = self.api.post_server({'server': self.server_body([], image=IMAGE)})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('boot from a fibre channel volume', server['fault']['message'])
        self.assertEqual(before, set(self.hmc_partitions()))

    def test_port_that_is_not_a_dpm_vswitch_fails_with_a_clear_error(self):
        port = self.dpm_port('fa:16:3e:11:22:09', INVENTORY['vswitch_osa0'])
        self.neutron._ports[port]['binding:vif_type'] = 'ovs'
        before = set(self.hmc_partitions())
        server = self.api.post_server({'server': self.server_body([port])})
        server = self._wait_for_state_change(server, 'ERROR')
        self.assertIn('dpm_vswitch', server['fault']['message'])
        # The partition prepared for it is gone again.
        self.assertEqual(before, set(self.hmc_partitions()))


class DPMVifPluggedTest(_DPMTestBase):
    """The partition starts only after Neutron reports the ports plugged."""

    CAST_AS_CALL = False

    def test_partition_starts_after_network_vif_plugged(self):
        self.flags(vif_plugging_timeout=30, vif_plugging_is_fatal=True)
        port = self.dpm_port('fa:16:3e:11:22:05', INVENTORY['vswitch_osa0'], status='DOWN')
        server = self.api.post_server({'server': self.server_body([port])})
        name = naming.partition_name(HOST, server['id'])

        def nic_created():
            partition = self.hmc_partitions().get(name)
            return partition is not None and partition.nics.list()

        deadline = time.monotonic() + 60
        while not nic_created():
            self.assertLess(time.monotonic(), deadline, 'the NIC was never created')
            time.sleep(0.05)
        # The NIC exists (networking-dpm would now see it) but nothing started.
        self.assertEqual('stopped', self.hmc_partitions()[name].properties['status'])
        event_sent = time.time()
        self.admin_api.api_post(
            '/os-server-external-events',
            {
                'events': [
                    {
                        'name': 'network-vif-plugged',
                        'server_uuid': server['id'],
                        'tag': port,
                        'status': 'completed',
                    }
                ]
            },
        )
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('active', self.hmc_partitions()[name].properties['status'])
        # Start Partition reached the HMC once, and only after the event.
        starts = [
            r.time
            for r in self.served.sim.requests()
            if r.method == 'POST' and r.uri.endswith('/operations/start')
        ]
        self.assertEqual(1, len(starts))
        self.assertGreaterEqual(starts[0], event_sent)

    def test_missing_vif_plugged_event_fails_the_build_when_fatal(self):
        self.flags(vif_plugging_timeout=1, vif_plugging_is_fatal=True)
        port = self.dpm_port('fa:16:3e:11:22:06', INVENTORY['vswitch_osa0'], status='DOWN')
        server = self.api.post_server({'server': self.server_body([port])})
        server = self._wait_for_state_change(server, 'ERROR')
        name = naming.partition_name(HOST, server['id'])
        self.assertNotIn(name, self.hmc_partitions())


class DPMServersOnHmc2141Test(DPMServersTest):
    """The same, against an HMC 2.14.1 (API 2.40) managing the z13."""

    PROFILE = '2.14.1'
