"""Nova's driver conformance suite (test_virt_drivers._VirtDriverTestCase) for DPMDriver.

The suite's tests catch NotImplementedError and pass, so passing proves nothing
by itself. Here every inherited test is either

- SUPPORTED: run without that catch, so a NotImplementedError fails it, and
  against a real dpm-backend on the HMC simulator (spawn boots from an FC volume
  with dpm_vswitch ports, as DPM requires); or
- NOT APPLICABLE (below, with the reason): replaced by a test asserting that the
  driver raises NotImplementedError, which is what Nova's compute manager
  expects from a driver without the feature (never a silent no-op).

The suite runs twice: for a host on a z13 (storage through vHBAs) and for a
host on a z14 (DPM storage management: a storage group per instance). Every
inherited test applies to both hosts alike: none is storage-path specific
beyond the replaced volume tests, which check each path's HMC objects.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

from dpmtest import DEFAULT_PROFILE
from dpmtest import INVENTORY
from dpmtest import HostSpec
from dpmtest import load_config
from dpmtest import pristine
from dpmtest import simulator
from dpmtest import write_config
from nova.network import model as network_model
from nova.tests.unit import utils as test_utils
from nova.tests.unit.virt import test_virt_drivers

from dpm_backend import naming
from dpm_backend.server import Backend
from nova import objects
from nova import test

Base = test_virt_drivers._VirtDriverTestCase
TARGET = '500507680b2142e5'

# Inherited tests that exercise behaviour DPM has. Each runs unwrapped.
SUPPORTED = {
    'test_init_host',
    'test_list_instances',
    'test_list_instance_uuids',
    'test_spawn',
    'test_reboot',
    'test_get_host_ip_addr',
    'test_power_off',
    'test_power_on_running',
    'test_power_on_powered_off',
    'test_destroy_instance_nonexistent',
    'test_destroy_instance',
    'test_get_info',
    'test_get_info_for_unknown_instance',
    'test_get_available_resource',
    'test_get_available_nodes',
    'test_events',
    'test_event_bad_object',
    'test_event_bad_callback',
    'test_emit_unicode_event',
    'test_network_binding_host_id',
    'test_get_allocation_ratio',
}

# Inherited tests of features DPM does not have, and why.
NOT_APPLICABLE = {
    'test_snapshot_not_running': 'no image snapshots: volume-backed servers are '
    'snapshotted by Nova through Cinder, without the driver',
    'test_snapshot_running': 'as test_snapshot_not_running',
    'test_set_admin_password': 'no guest agent channel to the partition',
    'test_resume_state_on_host_boot': 'partitions run on the CPC and survive a '
    'nova-compute host reboot; nothing to resume',
    'test_rescue': 'no rescue image boot for FC-volume partitions',
    'test_unrescue_unrescued_instance': 'as test_rescue',
    'test_unrescue_rescued_instance': 'as test_rescue',
    'test_poll_rebooting_instances': 'reboots are synchronous HMC jobs',
    'test_trigger_crash_dump': 'no NMI / dump trigger through the driver',
    'test_soft_delete': 'no soft delete: a stopped partition keeps its resources',
    'test_restore_running': 'as test_soft_delete',
    'test_restore_soft_deleted': 'as test_soft_delete',
    'test_pause': 'DPM cannot pause a partition from the HMC',
    'test_unpause_unpaused_instance': 'as test_pause',
    'test_unpause_paused_instance': 'as test_pause',
    'test_suspend': 'no suspend to disk: partitions have no local disk',
    'test_resume_unsuspended_instance': 'as test_suspend',
    'test_resume_suspended_instance': 'as test_suspend',
    'test_get_diagnostics': 'no diagnostics from the HMC yet',
    'test_get_instance_diagnostics': 'as test_get_diagnostics',
    'test_block_stats': 'no block statistics: storage is FC through vHBAs or storage groups',
    'test_get_console_output': 'the OS console is an HMC websocket, not a log',
    'test_get_vnc_console': 'no graphical console',
    'test_get_spice_console': 'no graphical console',
    'test_get_serial_console': 'no serial console proxy',
    'test_get_mks_console': 'no graphical console',
    'test_live_migration': 'no live migration between CPCs',
    'test_live_migration_abort': 'as test_live_migration',
    'test_get_host_cpu_stats': 'no per-host CPU statistics from the HMC yet',
    'test_set_host_enabled': 'the host is a CPC subset; it is not switched on or off',
    'test_get_host_uptime': 'as test_set_host_enabled',
    'test_host_power_action_reboot': 'Nova never powers a CPC',
    'test_host_power_action_shutdown': 'as test_host_power_action_reboot',
    'test_host_power_action_startup': 'as test_host_power_action_reboot',
    'test_get_instance_disk_info': 'no local disk',
    'test_get_device_name_for_instance': "device names are Nova's defaults",
}

# Inherited tests replaced by DPM-shaped versions below, and why.
REPLACED = {
    'test_get_volume_connector': 'the FC connector of the original nova-dpm is '
    "{'wwpns', 'host': <instance uuid>}, per instance; the suite asks for iSCSI "
    "keys ('ip', 'initiator') of a host-wide connector",
    'test_get_volume_connector_storage_ip': 'as test_get_volume_connector',
    'test_attach_detach_volume': 'the suite attaches a "fake" volume type; DPM '
    'attaches fibre_channel volumes (and refuses others)',
    'test_attach_detach_different_power_states': 'as test_attach_detach_volume',
    'test_swap_volume': 'no volume swap; the suite first attaches a "fake" volume, '
    'which DPM refuses before swap_volume is reached',
    'test_live_migration_force_complete': 'no live migration; the suite touches the '
    "libvirt driver's active_migrations before calling the driver",
    'test_migrate_disk_and_power_off': 'the suite moves an instance without a migration; '
    "Nova's always has one (the destination's claim records it in the instance's "
    'migration context), and the driver reads it to refuse a resize on its own host',
}


def _unwrapped(name):
    body = (
        getattr(Base, name).__wrapped__
        if hasattr(getattr(Base, name), '__wrapped__')
        else (getattr(Base, name))
    )

    def test(self):
        return body(self)

    test.__name__ = name
    test.__doc__ = f'{name}, with NotImplementedError counted as a failure.'
    return test


def _not_applicable(name, reason):
    body = getattr(Base, name).__wrapped__

    def test(self):
        self.assertRaises(NotImplementedError, body, self)

    test.__name__ = name
    test.__doc__ = f'Not applicable to DPM ({reason}): the driver must raise NotImplementedError.'
    return test


class DPMDriverConformanceTest(Base, test.TestCase):
    """The conformance suite against DPMDriver and a real backend on the HMC simulator.

    The host is on a z13: storage through the partition's vHBAs.
    """

    # The HMC version the simulator answers as.
    PROFILE = DEFAULT_PROFILE
    # The host's CPC, the FCP adapters of its storage mappings and the
    # virtual switch of its ports (INVENTORY keys).
    CPC = 'z13'
    ADAPTERS = 'fcp'
    VSWITCH = 'vswitch_osa0'

    def setUp(self):
        self.served = simulator(self.PROFILE)
        pristine(self.served)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-conf-'))
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        socket_path = workdir / 'b.sock'
        host = HostSpec(
            'fake-mini',
            INVENTORY[self.CPC],
            max_processors=16,
            max_memory=65536,
            mappings=tuple(f'{a}:0' for a in INVENTORY[self.ADAPTERS]),
        )
        config = write_config(workdir / 'b.conf', socket_path, [host], hmc=self.served)
        self.backend = Backend(load_config(config))
        self.backend.start()
        self.addCleanup(self.backend.stop, 1)
        self.flags(backend=f'unix:{socket_path}', retry_interval=0.1, group='dpm')
        self.driver_module = 'nova.virt.dpm.DPMDriver'
        super().setUp()
        self.addCleanup(self.connection.cleanup_host, 'fake-mini')

    def _partition(self, instance):
        cpc = self.served.sim.hmc.cpcs.lookup_by_oid(INVENTORY[self.CPC])
        name = naming.partition_name('fake-mini', instance.uuid)
        return next((p for p in cpc.partitions.list() if p.properties['name'] == name), None)

    def _network_info(self):
        vif = network_model.VIF(
            id='5f0a3a1e-8d4b-4b8e-9a43-2c6f0e4d1a01',
            address='fa:16:3e:00:aa:01',
            type='dpm_vswitch',
            details={'object_id': INVENTORY[self.VSWITCH]},
            network=network_model.Network(id='net', bridge=None, label='flat'),
            active=True,
        )
        return network_model.NetworkInfo([vif])

    def _fc_connection_info(self, instance, serial='fc-volume', lun=1):
        wwpns = self.connection.get_volume_connector(instance)['wwpns']
        return {
            'driver_volume_type': 'fibre_channel',
            'serial': serial,
            'data': {
                'target_lun': lun,
                'target_wwn': [TARGET],
                'initiator_target_map': {w: [TARGET] for w in wwpns},
            },
        }

    def _get_running_instance(self, obj=True):
        """Boot as nova-compute does for DPM: prepare, connector, spawn from FC."""
        instance = test_utils.get_test_instance(obj=True)
        instance.image_ref = ''  # boot from volume
        instance.save()
        network_info = self._network_info()
        self.connection.prepare_for_spawn(instance)
        block_device_info = {
            'block_device_mapping': [
                {
                    'boot_index': 0,
                    'connection_info': self._fc_connection_info(instance),
                    'volume_size': 10,
                }
            ]
        }
        # Booted from a volume: the image metadata comes from the volume.
        image_meta = objects.ImageMeta.from_dict({'properties': {'hw_architecture': 's390x'}})
        self.connection.spawn(
            self.ctxt,
            instance,
            image_meta,
            [],
            'herp',
            {},
            network_info=network_info,
            block_device_info=block_device_info,
        )
        self.last_instance = instance
        return instance, network_info

    def _data_volume(self, instance):
        """connection_info of a data volume, whose block device mapping Nova saved.

        The driver reads the volume's size from that mapping (a storage volume
        is defined with it). A volume attached through the API has no size
        there yet when Nova calls attach_volume: test_functional covers that.
        """
        objects.BlockDeviceMapping(
            self.ctxt,
            instance_uuid=instance.uuid,
            volume_id='fc-data-volume',
            source_type='volume',
            destination_type='volume',
            boot_index=None,
            device_name='/dev/sdb',
            volume_size=5,
        ).create()
        return self._fc_connection_info(instance, 'fc-data-volume', 2)

    def _storage_wwpns(self, instance) -> list[str]:
        """The WWPNs of the instance's storage on the HMC: its vHBAs'."""
        return sorted(h.properties['wwpn'].lower() for h in self._partition(instance).hbas.list())

    def _assert_attached(self, instance, volume_id: str, attached: bool) -> None:
        """vHBAs: nothing on the HMC follows a volume (the SAN maps it to the vHBAs)."""
        self.assertEqual([], self._partition(instance).properties.get('storage-group-uris') or [])

    # DPM-shaped replacements -------------------------------------------

    def test_spawn_builds_the_partition(self):
        instance, _ = self._get_running_instance()
        partition = self._partition(instance)
        self.assertEqual('active', partition.properties['status'])
        self.assertEqual(instance.flavor.vcpus, partition.properties['ifl-processors'])
        self.assertEqual(1, len(partition.nics.list()))

    def test_get_volume_connector(self):
        instance = test_utils.get_test_instance(obj=True)
        instance.image_ref = ''
        self.connection.prepare_for_spawn(instance)
        connector = self.connection.get_volume_connector(instance)
        self.assertEqual(instance.uuid, connector['host'])
        wwpns = self._storage_wwpns(instance)
        self.assertEqual(2, len(wwpns))
        self.assertEqual(wwpns, sorted(connector['wwpns']))

    def test_get_volume_connector_storage_ip(self):
        # The FC connector carries no IP; the storage IP option changes nothing.
        self.flags(my_block_storage_ip='192.0.2.9')
        instance = test_utils.get_test_instance(obj=True)
        instance.image_ref = ''
        self.connection.prepare_for_spawn(instance)
        self.assertNotIn('ip', self.connection.get_volume_connector(instance))

    def test_volume_connector_survives_destroy_and_a_driver_restart(self):
        instance, network_info = self._get_running_instance()
        before = self.connection.get_volume_connector(instance)
        self.connection.destroy(self.ctxt, instance, network_info)
        self.assertIsNone(self._partition(instance))
        self.connection.cleanup_host('fake-mini')
        restarted = type(self.connection)(self.connection.virtapi)
        reloaded = type(instance).get_by_uuid(self.ctxt, instance.uuid)
        self.assertEqual(before, restarted.get_volume_connector(reloaded))

    def test_attach_detach_volume(self):
        instance, _ = self._get_running_instance()
        connection_info = self._data_volume(instance)
        self.assertIsNone(
            self.connection.attach_volume(self.ctxt, connection_info, instance, '/dev/sdb')
        )
        self._assert_attached(instance, 'fc-data-volume', True)
        self.assertIsNone(
            self.connection.detach_volume(self.ctxt, connection_info, instance, '/dev/sdb')
        )
        self._assert_attached(instance, 'fc-data-volume', False)
        from nova import exception

        self.assertRaises(
            exception.VolumeDriverNotFound,
            self.connection.attach_volume,
            None,
            {'driver_volume_type': 'iscsi', 'data': {}},
            instance,
            '/dev/sdc',
        )

    def test_attach_detach_different_power_states(self):
        instance, network_info = self._get_running_instance()
        connection_info = self._data_volume(instance)
        self.connection.power_off(instance)
        self.connection.attach_volume(self.ctxt, connection_info, instance, '/dev/sdb')
        self._assert_attached(instance, 'fc-data-volume', True)
        self.connection.power_on(self.ctxt, instance, network_info, None)
        self.assertEqual('active', self._partition(instance).properties['status'])
        self.connection.detach_volume(self.ctxt, connection_info, instance, '/dev/sdb')
        self._assert_attached(instance, 'fc-data-volume', False)

    def test_swap_volume(self):
        instance, _ = self._get_running_instance()
        info = self._fc_connection_info(instance)
        self.assertRaises(
            NotImplementedError,
            self.connection.swap_volume,
            None,
            info,
            info,
            instance,
            '/dev/sdb',
            2,
        )

    def test_live_migration_force_complete(self):
        instance, _ = self._get_running_instance()
        self.assertRaises(
            NotImplementedError, self.connection.live_migration_force_complete, instance
        )

    def _migrating(self, instance, dest: str) -> None:
        """The Migration of a resize to ``dest`` under way, as Nova records it."""
        migration = objects.Migration(
            self.ctxt,
            instance_uuid=instance.uuid,
            source_compute='fake-mini',
            dest_compute=dest,
            migration_type='resize',
            status='migrating',
        )
        migration.create()
        instance.migration_context = objects.MigrationContext(
            instance_uuid=instance.uuid, migration_id=migration.id
        )

    def test_migrate_disk_and_power_off(self):
        instance, network_info = self._get_running_instance()
        self._migrating(instance, 'other-host')
        flavor = test_utils.get_test_flavor()
        disk_info = self.connection.migrate_disk_and_power_off(
            self.ctxt, instance, '192.0.2.1', flavor, network_info
        )
        # Nothing to copy: the FC volume is attached to the destination's partition.
        self.assertEqual('', disk_info)
        self.assertEqual('stopped', self._partition(instance).properties['status'])

    def test_migrate_disk_and_power_off_to_the_same_host_is_refused(self):
        instance, network_info = self._get_running_instance()
        self._migrating(instance, 'fake-mini')
        from nova import exception

        caught = self.assertRaises(
            exception.InstanceFaultRollback,
            self.connection.migrate_disk_and_power_off,
            self.ctxt,
            instance,
            '192.0.2.1',
            test_utils.get_test_flavor(),
            network_info,
        )
        self.assertIsInstance(caught.inner_exception, exception.ResizeError)
        self.assertIn('on its own host (fake-mini)', str(caught.inner_exception))
        self.assertEqual('active', self._partition(instance).properties['status'])

    def test_power_states_reach_the_partition(self):
        instance, network_info = self._get_running_instance()
        self.connection.power_off(instance)
        self.assertEqual('stopped', self._partition(instance).properties['status'])
        self.assertEqual(4, self.connection.get_info(instance).state)  # SHUTDOWN
        self.connection.reboot(self.ctxt, instance, network_info, 'HARD')
        self.assertEqual('active', self._partition(instance).properties['status'])
        self.assertEqual(1, self.connection.get_info(instance).state)  # RUNNING


class DPMDriverConformanceOnStorageGroupsTest(DPMDriverConformanceTest):
    """The same suite for a host on a z14 (HMC 2.16.0): a storage group per instance."""

    PROFILE = '2.16.0'
    CPC = 'z14'
    ADAPTERS = 'fcp_z14'
    VSWITCH = 'vswitch_z14'

    def _group(self, instance):
        console = self.served.sim.hmc.consoles.lookup_by_oid(None)
        name = naming.partition_name('fake-mini', instance.uuid)
        return next(
            (g for g in console.storage_groups.list() if g.properties['name'] == name), None
        )

    def _storage_wwpns(self, instance) -> list[str]:
        """The instance's storage group's WWPNs (unassigned until it is attached)."""
        group = self._group(instance)
        self.assertEqual([], self._partition(instance).hbas.list())
        found = [
            e['world-wide-port-name'] for e in group.properties['unassigned-world-wide-port-names']
        ]
        found += [
            v.properties['world-wide-port-name'] for v in group.virtual_storage_resources.list()
        ]
        return sorted(w.lower() for w in found)

    def _assert_attached(self, instance, volume_id: str, attached: bool) -> None:
        """A storage volume of the instance's group follows the volume; the boot one stays."""
        group = self._group(instance)
        self.assertEqual([group.uri], self._partition(instance).properties['storage-group-uris'])
        volumes = {v.properties['name']: v.properties for v in group.storage_volumes.list()}
        expected = {'OpenStack-fc-volume'} | ({f'OpenStack-{volume_id}'} if attached else set())
        self.assertEqual(expected, set(volumes))
        self.assertEqual('boot', volumes['OpenStack-fc-volume']['usage'])
        if attached:
            data = volumes[f'OpenStack-{volume_id}']
            self.assertEqual(('data', 5), (data['usage'], data['size']))

    def test_spawn_builds_the_partition(self):
        super().test_spawn_builds_the_partition()
        instance = self.last_instance
        partition, group = self._partition(instance), self._group(instance)
        self.assertEqual([group.uri], partition.properties['storage-group-uris'])
        self.assertEqual('storage-volume', partition.properties['boot-device'])
        (boot_sv,) = group.storage_volumes.list()
        self.assertEqual(boot_sv.uri, partition.properties['boot-storage-volume'])
        self.assertEqual(
            ('OpenStack-fc-volume', 10), (boot_sv.properties['name'], boot_sv.properties['size'])
        )

    def test_volume_connector_survives_destroy_and_a_driver_restart(self):
        super().test_volume_connector_survives_destroy_and_a_driver_restart()
        self.assertIsNone(self._group(self.last_instance))


# Set on the z13 class; the storage-group class inherits them.
for _name in SUPPORTED:
    setattr(DPMDriverConformanceTest, _name, _unwrapped(_name))
for _name, _reason in NOT_APPLICABLE.items():
    setattr(DPMDriverConformanceTest, _name, _not_applicable(_name, _reason))


def test_every_inherited_test_is_accounted_for():
    inherited = {name for name in dir(Base) if name.startswith('test_')}
    accounted = SUPPORTED | set(NOT_APPLICABLE) | set(REPLACED)
    assert inherited == accounted, inherited ^ accounted
    assert not (SUPPORTED & set(NOT_APPLICABLE))
