"""The driver inside real Nova: API -> conductor -> scheduler -> placement -> compute.

Nova's in-process functional harness runs every service for real; only Neutron,
Cinder and Glance are Nova's own fixtures. The compute service loads
``compute_driver = dpm.DPMDriver`` through the installed nova/virt/dpm shim and
talks to a real dpm-backend over a unix socket, which talks to the HMC
simulator over HTTPS through a real zhmcclient Session; the boot tests run for
every HMC version that manages a CPC with vHBAs (a z13), and for a host on a
CPC with DPM storage management (a z14: a storage group per instance) on HMC
2.16.0 and 2.15.0.
"""

from __future__ import annotations

import copy
import time

import original_nova_dpm as original
from dpmtest import INVENTORY
from dpmtest import rejected
from fc_cinder import DATA_VOLUME
from fc_cinder import FC_VOLUMES
from fc_cinder import IMAGE
from fc_cinder import LUN
from fc_cinder import TARGET
from fc_cinder import VOLUME
from nova_harness import HOST
from nova_harness import _DPMTestBase
from nova_harness import other_partitions

from dpm_backend import boot
from dpm_backend import correlation
from dpm_backend import naming
from dpm_frontend import translate
from nova import context as nova_context
from nova import objects


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


class DPMRequestIdTest(_DPMTestBase):
    """Each server action's request id (what Nova logs and lists) names its backend calls."""

    def test_the_hmc_requests_of_server_actions_are_made_under_their_request_ids(self):
        made = []

        def record(method, uri, proceed):
            made.append((correlation.current(), method, uri.rsplit('/', 1)[-1]))
            return proceed()

        self.backend.pool.interceptors.append(record)
        server = self.api.post_server({'server': self.server_body([])})
        server = self._wait_for_state_change(server, 'ACTIVE')
        server = self._stop_server(server)  # power_off: Nova passes no context
        server = self._start_server(server)  # power_on: Nova passes its context
        self._wait_for_state_change(server, 'ACTIVE')
        actions = {
            a['action']: a['request_id'] for a in self.api.get_instance_actions(server['id'])
        }
        by_id: dict = {}
        for request_id, method, last in made:
            by_id.setdefault(request_id, set()).add((method, last))
        # Start Partition of the spawn, then Stop and Start Partition.
        self.assertIn(('POST', 'start'), by_id[actions['create']])
        self.assertIn(('POST', 'stop'), by_id[actions['stop']])
        self.assertIn(('POST', 'start'), by_id[actions['start']])
        self.assertNotIn(('POST', 'stop'), by_id[actions['start']])


class DPMServersOnHmc2141Test(DPMServersTest):
    """The same, against an HMC 2.14.1 (API 2.40) managing the z13."""

    PROFILE = '2.14.1'


class _StorageGroupTestBase(_DPMTestBase):
    """A host on a CPC with DPM storage management (a z14): storage groups instead of vHBAs."""

    PROFILE = '2.16.0'
    CPC = 'z14'
    ADAPTERS = 'fcp_z14'

    @staticmethod
    def volumes(group) -> dict:
        return {v.properties['name']: v for v in group.storage_volumes.list()}

    def boot(self, ports=(), data_volumes=()) -> tuple[dict, str]:
        """A server from VOLUME (plus ``data_volumes`` at spawn), ACTIVE; and its partition name."""
        body = self.server_body(list(ports))
        body['block_device_mapping_v2'] += [
            {'uuid': v, 'source_type': 'volume', 'destination_type': 'volume'} for v in data_volumes
        ]
        server = self.api.post_server({'server': body})
        server = self._wait_for_state_change(server, 'ACTIVE')
        return server, naming.partition_name(HOST, server['id'])

    def group_wwpns(self, group) -> list[str]:
        """The storage group's WWPNs: those of its virtual storage resources once attached."""
        return sorted(
            v.properties['world-wide-port-name'].lower()
            for v in group.virtual_storage_resources.list()
        )

    def assert_connector(self, connector: dict, server: dict, wwpns: list[str]) -> None:
        self.assertEqual(server['id'], connector['host'])
        self.assertEqual(wwpns, sorted(w.lower() for w in connector['wwpns']))

    def assert_data_volume(self, group, volume_id: str) -> None:
        data = self.volumes(group)[f'OpenStack-{volume_id}'].properties
        self.assertEqual(
            ('data', FC_VOLUMES[volume_id][1], 'complete'),
            (data['usage'], data['size'], data['fulfillment-state']),
        )
        # Pinned to Cinder's target and LUN (DPM alone would match by size).
        self.assertEqual(
            {(TARGET.lower(), boot.lun_property(FC_VOLUMES[volume_id][0]))},
            {
                (path['target-world-wide-port-name'].lower(), path['logical-unit-number'])
                for path in data['paths']
            },
        )

    def assert_detach_then_delete(self, server, name, group, boot_sv, before) -> None:
        """Detaching DATA_VOLUME through the API removes its storage volume; delete the rest."""
        wwpns = self.group_wwpns(group)
        self.api.delete_server_volume(server['id'], DATA_VOLUME)
        self._wait_for_volume_detach(server['id'], DATA_VOLUME)
        self.assertEqual([boot_sv.uri], [v.uri for v in self.volumes(group).values()])
        props = self.hmc_partitions()[name].properties
        self.assertEqual(
            ('active', [group.uri], boot_sv.uri),
            (props['status'], props['storage-group-uris'], props['boot-storage-volume']),
        )
        (connector,) = [c for v, c, _ in self.cinder.deleted if v == DATA_VOLUME]
        self.assert_connector(connector, server, wwpns)
        self.assertEqual({}, dict(self.cinder.volume_to_attachment[DATA_VOLUME]))
        self._delete_server(server)
        self.assertEqual(before, self.hmc_objects())
        self.assertEqual([], rejected(self.served.sim.requests()))


class DPMStorageGroupServersTest(_StorageGroupTestBase):
    """A server from an FC volume on a storage-group host, through the Nova API."""

    def test_boot_from_fc_volume_with_two_ports_then_delete(self):
        ports = [
            self.dpm_port('fa:16:3e:14:22:01', INVENTORY['vswitch_z14']),
            self.dpm_port('fa:16:3e:14:22:02', INVENTORY['vswitch_z14']),
        ]
        before = self.hmc_objects()
        server, name = self.boot(ports)

        # One partition and one storage group more, both named after the instance.
        self.assertEqual(
            {
                'partitions': before['partitions'] | {name},
                'storage_groups': before['storage_groups'] | {name},
            },
            self.hmc_objects(),
        )
        partition = self.hmc_partitions()[name]
        props = partition.properties
        group = self.storage_groups()[name]
        self.assertEqual('active', props['status'])
        self.assertEqual('OpenStack CPCSubset=compute', props['description'])
        self.assertEqual(
            (2, 2048, 2048),
            (props['ifl-processors'], props['initial-memory'], props['maximum-memory']),
        )
        self.assertEqual([group.uri], props['storage-group-uris'])
        self.assertEqual([], partition.hbas.list())
        self.assertEqual(
            ('OpenStack CPCSubset=compute', 'fcp', False, 1, 2),
            tuple(
                group.properties[k]
                for k in ('description', 'type', 'shared', 'max-partitions', 'connectivity')
            ),
        )
        self.assertEqual(
            self.served.sim.hmc.cpcs.lookup_by_oid(INVENTORY['z14']).uri,
            group.properties['cpc-uri'],
        )
        # Exactly the boot volume, sized as Cinder's volume, fulfilled with
        # Cinder's target WWPN and LUN (as os-brick forms it), and booted from.
        (boot_sv,) = self.volumes(group).values()
        sv = boot_sv.properties
        self.assertEqual(
            (f'OpenStack-{VOLUME}', 'boot', FC_VOLUMES[VOLUME][1], 'complete'),
            (sv['name'], sv['usage'], sv['size'], sv['fulfillment-state']),
        )
        self.assertEqual(
            {(TARGET.lower(), boot.lun_property(LUN))},
            {
                (p['target-world-wide-port-name'].lower(), p['logical-unit-number'])
                for p in sv['paths']
            },
        )
        self.assertEqual('storage-volume', props['boot-device'])
        self.assertEqual(boot_sv.uri, props['boot-storage-volume'])
        # The NICs and their command line, as on the vHBA path.
        nics = {n.properties['name']: n.properties for n in partition.nics.list()}
        self.assertEqual({f'OpenStack_Port_{p}' for p in ports}, set(nics))
        first, second = (nics[f'OpenStack_Port_{p}'] for p in ports)
        self.assertEqual(
            f'{first["device-number"]},0,fa163e142201; {second["device-number"]},0,fa163e142202;',
            props['boot-os-specific-parameters'],
        )
        # The connector Cinder got holds exactly the storage group's WWPNs.
        wwpns = self.group_wwpns(group)
        self.assertEqual(2, len(wwpns))
        (attachment,) = self.cinder.volume_to_attachment[VOLUME].values()
        self.assert_connector(attachment['connector'], server, wwpns)

        self._delete_server(server)
        self.assertEqual(before, self.hmc_objects())
        # Cinder released the boot volume once the partition and its group
        # were gone, from the attachment holding the connector with the group's WWPNs.
        (deleted,) = [(c, held) for v, c, held in self.cinder.deleted if v == VOLUME]
        self.assert_connector(deleted[0], server, wwpns)
        self.assertEqual(before, deleted[1])
        self.assertEqual({}, dict(self.cinder.volume_to_attachment[VOLUME]))
        # The HMC refused none of the requests of the whole lifecycle.
        self.assertEqual([], rejected(self.served.sim.requests()))


class DPMStorageGroupServersOnHmc2150Test(DPMStorageGroupServersTest):
    """The same, against an HMC 2.15.0 managing the z14 (and a z13)."""

    PROFILE = '2.15.0'


class DPMStorageGroupVolumesTest(_StorageGroupTestBase):
    """Data volumes of a server on a storage-group host: a storage volume each."""

    def test_data_volume_at_spawn_then_detached_through_the_api(self):
        before = self.hmc_objects()
        server, name = self.boot(data_volumes=[DATA_VOLUME])
        group = self.storage_groups()[name]
        volumes = self.volumes(group)
        self.assertEqual({f'OpenStack-{VOLUME}', f'OpenStack-{DATA_VOLUME}'}, set(volumes))
        self.assert_data_volume(group, DATA_VOLUME)
        (attachment,) = self.cinder.volume_to_attachment[DATA_VOLUME].values()
        self.assert_connector(attachment['connector'], server, self.group_wwpns(group))
        self.assert_detach_then_delete(server, name, group, volumes[f'OpenStack-{VOLUME}'], before)

    def test_data_volume_attached_then_detached_through_the_api(self):
        before = self.hmc_objects()
        server, name = self.boot()
        group = self.storage_groups()[name]
        (boot_sv,) = self.volumes(group).values()
        self._attach_volume(server, DATA_VOLUME)
        self.assertEqual(
            {f'OpenStack-{VOLUME}', f'OpenStack-{DATA_VOLUME}'}, set(self.volumes(group))
        )
        self.assert_data_volume(group, DATA_VOLUME)
        (attachment,) = self.cinder.volume_to_attachment[DATA_VOLUME].values()
        self.assert_connector(attachment['connector'], server, self.group_wwpns(group))
        self.assert_detach_then_delete(server, name, group, boot_sv, before)


class DPMAdoptedServerTest(_DPMTestBase):
    """Upgrade in place: a server whose partition the original nova-dpm created.

    The original kept no WWPNs with the instance (only in its process's memory),
    so this driver has none stored for it; a volume attached the legacy way (no
    Cinder attachment id) makes Nova ask for the connector after destroy, to
    end the volume connection (terminate_connection).
    """

    def before_nova(self) -> None:
        # The original's HMC session, connected before wsgi_intercept replaces
        # urllib3's connection class (its replacement refuses zhmcclient's
        # HTTPS arguments); its connection is kept and reused.
        self.hmc_client = self.enterContext(original.logged_on(self.served))
        self.hmc_client.query_api_version()

    def adopt(self, server: dict) -> str:
        """Replace the server's partition by the original's, and forget its WWPNs."""
        name = naming.partition_name(HOST, server['id'])
        client = self.hmc_client
        cpc = client.cpcs.find(**{'object-id': INVENTORY[self.CPC]})
        partition = cpc.partitions.find(name=name)
        partition.stop()
        partition.delete()
        original.build(
            client,
            INVENTORY[self.CPC],
            HOST,
            server['id'],
            vcpus=2,
            memory_mb=2048,
            adapter_ports=[(a, 0) for a in INVENTORY[self.ADAPTERS]],
            ports=[],
            boot=original.Boot(TARGET, LUN),
        )
        ctxt = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(
            ctxt, server['id'], expected_attrs=['system_metadata']
        )
        del instance.system_metadata[translate.wwpns_key(HOST)]
        instance.save()
        bdm = objects.BlockDeviceMapping.get_by_volume_and_instance(ctxt, VOLUME, server['id'])
        bdm.attachment_id = None
        bdm.save()
        # The requests above were the original's and this test's, not the driver's.
        self.served.sim.clear_requests()
        return name

    def test_delete_ends_the_volume_connection_with_the_wwpns_destroy_returned(self):
        server = self.api.post_server({'server': self.server_body([])})
        server = self._wait_for_state_change(server, 'ACTIVE')
        name = self.adopt(server)
        wwpns = sorted(
            h.properties['wwpn'].lower() for h in self.hmc_partitions()[name].hbas.list()
        )
        self.assertEqual(len(INVENTORY[self.ADAPTERS]), len(wwpns))
        ended = []

        def terminate_connection(_api, _context, volume_id, connector):
            ended.append((volume_id, connector, name in self.hmc_partitions()))

        self.stub_out('nova.volume.cinder.API.terminate_connection', terminate_connection)
        self.stub_out('nova.volume.cinder.API.detach', lambda *args, **kwargs: None)

        self._delete_server(server)
        # Nova asked for the connector after the partition (and its vHBAs) was
        # deleted, and got the WWPNs Destroy read before deleting them.
        self.assertEqual([(VOLUME, {'wwpns': wwpns, 'host': server['id']}, False)], ended)
        self.assertNotIn(name, self.hmc_partitions())
        self.assertEqual([], rejected(self.served.sim.requests()))
