"""Nova's driver conformance suite (test_virt_drivers._VirtDriverTestCase) for DPMDriver.

The suite's tests catch NotImplementedError and pass, so passing proves nothing
by itself. Here every inherited test is either

- SUPPORTED: run without that catch, so a NotImplementedError fails it, and
  against a real dpm-backend on the HMC simulator (spawn boots from an FC volume
  with dpm_vswitch ports, as DPM requires); or
- NOT APPLICABLE (below, with the reason): replaced by a test asserting that the
  driver raises NotImplementedError, which is what Nova's compute manager
  expects from a driver without the feature (never a silent no-op).
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

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
from dpm_frontend import translate
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
    'test_migrate_disk_and_power_off': 'no resize or cold migration between CPCs',
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
    'test_block_stats': 'no block statistics: storage is FC through vHBAs',
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
    """The conformance suite against DPMDriver and a real backend on the HMC simulator."""

    def setUp(self):
        self.served = simulator()
        pristine(self.served)
        workdir = pathlib.Path(tempfile.mkdtemp(prefix='dpm-conf-'))
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        socket_path = workdir / 'b.sock'
        host = HostSpec(
            'fake-mini',
            INVENTORY['z13'],
            max_processors=16,
            max_memory=65536,
            mappings=tuple(f'{a}:0' for a in INVENTORY['fcp']),
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
        cpc = self.served.sim.hmc.cpcs.lookup_by_oid(INVENTORY['z13'])
        name = naming.partition_name('fake-mini', instance.uuid)
        return next((p for p in cpc.partitions.list() if p.properties['name'] == name), None)

    def _network_info(self):
        vif = network_model.VIF(
            id='5f0a3a1e-8d4b-4b8e-9a43-2c6f0e4d1a01',
            address='fa:16:3e:00:aa:01',
            type='dpm_vswitch',
            details={'object_id': INVENTORY['vswitch_osa0']},
            network=network_model.Network(id='net', bridge=None, label='flat'),
            active=True,
        )
        return network_model.NetworkInfo([vif])

    def _fc_connection_info(self, instance):
        wwpns = self.connection.get_volume_connector(instance)['wwpns']
        return {
            'driver_volume_type': 'fibre_channel',
            'serial': 'fc-volume',
            'data': {
                'target_lun': 1,
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
                {'boot_index': 0, 'connection_info': self._fc_connection_info(instance)}
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
        return instance, network_info

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
        hbas = self._partition(instance).hbas.list()
        self.assertEqual(instance.uuid, connector['host'])
        self.assertEqual(
            sorted(h.properties['wwpn'].lower() for h in hbas), sorted(connector['wwpns'])
        )

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
        connection_info = self._fc_connection_info(instance)
        self.assertIsNone(
            self.connection.attach_volume(None, connection_info, instance, '/dev/sdb')
        )
        self.assertIsNone(
            self.connection.detach_volume(None, connection_info, instance, '/dev/sdb')
        )
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
        connection_info = self._fc_connection_info(instance)
        self.connection.power_off(instance)
        self.connection.attach_volume(None, connection_info, instance, '/dev/sdb')
        self.connection.power_on(self.ctxt, instance, network_info, None)
        self.assertEqual('active', self._partition(instance).properties['status'])
        self.connection.detach_volume(None, connection_info, instance, '/dev/sdb')

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

    def test_power_states_reach_the_partition(self):
        instance, network_info = self._get_running_instance()
        self.connection.power_off(instance)
        self.assertEqual('stopped', self._partition(instance).properties['status'])
        self.assertEqual(4, self.connection.get_info(instance).state)  # SHUTDOWN
        self.connection.reboot(self.ctxt, instance, network_info, 'HARD')
        self.assertEqual('active', self._partition(instance).properties['status'])
        self.assertEqual(1, self.connection.get_info(instance).state)  # RUNNING


for _name in SUPPORTED:
    setattr(DPMDriverConformanceTest, _name, _unwrapped(_name))
for _name, _reason in NOT_APPLICABLE.items():
    setattr(DPMDriverConformanceTest, _name, _not_applicable(_name, _reason))


def test_every_inherited_test_is_accounted_for():
    inherited = {name for name in dir(Base) if name.startswith('test_')}
    accounted = SUPPORTED | set(NOT_APPLICABLE) | set(REPLACED)
    assert inherited == accounted, inherited ^ accounted
    assert not (SUPPORTED & set(NOT_APPLICABLE))
    assert translate.WWPNS_KEY  # the connector is persisted under this key
