"""DPMDriver: Nova's compute driver for IBM Z / LinuxONE partitions in DPM mode.

A thin client: each Nova call becomes one DPMHost call to the dpm-backend that
serves this Nova host (``[DEFAULT]host``), with a deadline. The backend does
all HMC work; this module translates and maps errors. What DPM cannot do keeps
the base class behaviour (NotImplementedError, which the compute manager
handles) and a capability flag of False. Power state changes made outside of
Nova reach it as lifecycle events (dpm_frontend.events).
"""

from __future__ import annotations

import sys
import threading
import time

import os_resource_classes as orc
from nova.compute import task_states
from nova.compute import vm_states
from nova.conf import CONF
from nova.context import get_admin_context
from nova.objects import fields as obj_fields
from nova.volume import cinder
from oslo_log import log as logging
from oslo_serialization import jsonutils

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_frontend import channel as channel_mod
from dpm_frontend import client as client_mod
from dpm_frontend import conf as dpm_conf
from dpm_frontend import events as events_mod
from dpm_frontend import translate
from nova import exception
from nova import objects
from nova.virt import driver
from nova.virt import hardware
from nova.virt import node as virt_node

LOG = logging.getLogger(__name__)
dpm_conf.register_opts(CONF)

# How long a host status read by get_available_resource is reused by the
# update_provider_tree call of the same resource-tracker pass.
STATUS_REUSE_SECONDS = 10

# Task states in which Nova builds the instance on this host from a partition
# that may not exist here yet, and asks for this host's volume connector
# before the driver call that builds it: RESIZE_FINISH on the destination of
# a resize or cold migration (_finish_resize updates the volume attachments
# before finish_migration), and the rebuild states of an evacuation or
# rebuild (the volumes are detached, then attached with this host's
# connector, before spawn). In these states the connector prepares the
# partition, also when WWPNs are stored for this host: a rebuild here destroys
# the partition before it asks, and the new one has initiators of its own. In
# no other state does it create one: after a destroy (delete, a revert on the
# destination, the cleanup of an evacuated instance) Nova asks for the
# connector of the partition just deleted.
BUILDING_HERE = frozenset(
    {
        task_states.RESIZE_FINISH,
        task_states.REBUILDING,
        task_states.REBUILD_BLOCK_DEVICE_MAPPING,
        task_states.REBUILD_SPAWNING,
    }
)


def _eventlet_patched() -> bool:
    """Whether this process runs under eventlet monkey patching."""
    from nova import monkey_patch

    if monkey_patch.is_patched():
        return True
    eventlet = sys.modules.get('eventlet.patcher')
    return bool(eventlet and eventlet.is_monkey_patched('socket'))


class DPMDriver(driver.ComputeDriver):
    """Nova instances as DPM partitions, through dpm-backend."""

    capabilities = {
        **driver.ComputeDriver.capabilities,
        # DPM partitions have no local disk and consume no Glance image.
        'has_imagecache': False,
        'supports_attach_interface': False,
        'supports_multiattach': False,
        'supports_extend_volume': False,
        # The same FC boot volume, attached to a partition on the destination.
        'supports_evacuate': True,
        # A resize moves the partition to another host (see
        # migrate_disk_and_power_off): no COMPUTE_SAME_HOST_COLD_MIGRATE.
        'supports_migrate_to_same_host': False,
        'supports_trusted_certs': False,
    }

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi)
        # Read once: several compute services can run in one process (Nova's
        # functional tests change CONF.host and [dpm] between starting them),
        # each with the Nova host and the backend it was started for.
        self._host: str = CONF.host
        self._transport = channel_mod.Transport.of(CONF.dpm)
        self._client: client_mod.BackendClient | None = None
        self._client_lock = threading.Lock()
        self._status: tuple[float, pb.HostStatus] | None = None
        self._node: str | None = None
        self._stopped_event_delay: float = CONF.dpm.lifecycle_stopped_event_delay
        self._host_ready = False
        self._events = self._new_events()

    # -- plumbing ---------------------------------------------------------

    def _connect(self) -> client_mod.BackendClient:
        """The backend client, built on first use; building it sends nothing.

        Raises DPMConfigError when [dpm] describes no safe transport.
        """
        with self._client_lock:
            if self._client is None:
                self._client = client_mod.BackendClient(
                    client_mod.open_channel(self._transport), CONF, transport=self._transport
                )
            return self._client

    @property
    def client(self) -> client_mod.BackendClient:
        return self._connect()

    def _new_events(self) -> events_mod.InstanceEvents:
        return events_mod.InstanceEvents(
            self._host, self._connect, self.emit_event, self._stopped_event_delay
        )

    def _start_events(self) -> None:
        """Follow the backend's instance changes once the host is usable and Nova listens.

        Nova registers its listener after init_host (ComputeManager.init_host,
        init_virt_events): the first events, those of the current state, must
        not come before it. Without a listener ([workarounds]
        handle_virt_lifecycle_events = false) no stream is opened.
        """
        if self._host_ready and self._compute_event_callback is not None:
            self._events.start()

    def register_event_listener(self, callback):
        super().register_event_listener(callback)
        self._start_events()

    def _call(
        self, method, request, deadline, idempotent=True, instance=None, failure=None, context=None
    ):
        """One DPMHost call; ``context`` is the RequestContext Nova passed, if it passed one."""
        return self.client.call(
            method,
            request,
            deadline,
            idempotent,
            instance_uuid=instance.uuid if instance is not None else None,
            failure_type=failure,
            context=context,
        )

    def _ids(self, instance) -> dict:
        return {'host': self._host, 'instance_uuid': instance.uuid}

    def _host_status(self, reuse: bool = False) -> pb.HostStatus:
        if reuse and self._status and time.monotonic() - self._status[0] < STATUS_REUSE_SECONDS:
            return self._status[1]
        reply = self._call(
            'GetHostStatus', pb.GetHostStatusRequest(host=self._host), CONF.dpm.read_deadline
        )
        self._status = (time.monotonic(), reply.status)
        return reply.status

    @property
    def _node_uuid(self) -> str:
        """Nova's own identity of this compute node ($state_path/compute_id), as libvirt's.

        Nova writes it from the database on the first start after an upgrade
        (so a host the original nova-dpm served keeps its compute node record)
        and creates it on a new host; it is stable across restarts. Read once
        per driver, as libvirt's driver does.
        """
        if self._node is None:
            self._node = virt_node.get_local_node_uuid()
        return self._node

    # -- host -------------------------------------------------------------

    def init_host(self, host):
        if _eventlet_patched():
            raise exception.NovaException(
                'The DPM driver needs nova-compute in native threading mode: gRPC '
                'does not work under eventlet monkey patching. Set [DEFAULT] '
                'concurrency_backend = threading (or OS_NOVA_DISABLE_EVENTLET_PATCHING=1).'
            )
        # The transport and the token file are checked before anything is sent.
        client = self._connect()
        # Several backends: a start during a takeover waits for the new active
        # one (read_deadline at most) rather than failing.
        active = not client.failover or client.wait_for_active(CONF.dpm.read_deadline)
        try:
            status = self._host_status()
        except exception.VirtDriverNotReady:
            if not active:
                raise client_mod.DPMBackendError(
                    reason=f'no dpm-backend at {self._transport.backend} became active '
                    f'(health SERVING) within [dpm] read_deadline = {CONF.dpm.read_deadline} s; '
                    'check that they run, that one of them is active and reaches its HMC, '
                    'and the TLS files and tls_server_name'
                ) from None
            raise client_mod.DPMBackendError(
                reason=f'dpm-backend at {self._transport.backend} (or its HMC) cannot be '
                'reached; check that the backend runs and [dpm] backend names its socket'
            ) from None
        except exception.ComputeResourcesUnavailable as exc:
            raise client_mod.DPMBackendError(
                reason=f'host {host} cannot run instances: {exc}'
            ) from None
        # Nova's node identity, read while the service starts (and kept).
        LOG.debug(
            'DPM host %(host)s: compute node %(node)s', {'host': host, 'node': self._node_uuid}
        )
        LOG.info(
            'DPM host %(host)s: CPC %(cpc)s, %(vcpus)d IFLs, %(mem)d MiB, storage path %(path)s',
            {
                'host': host,
                'cpc': status.cpc_name,
                'vcpus': status.vcpus_total,
                'mem': status.memory_mb_total,
                'path': pb.StoragePath.Name(status.storage_path),
            },
        )
        self._host_ready = True
        self._start_events()

    def cleanup_host(self, host):
        # The stream first: closing the channel would end it as a loss.
        self._host_ready = False
        self._events.stop()
        self._events = self._new_events()
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def get_available_nodes(self, refresh=False):
        return [self._host]

    def node_is_available(self, nodename):
        return nodename == self._host

    def get_nodenames_by_uuid(self, refresh=False):
        return {self._node_uuid: self._host}

    def get_host_ip_addr(self):
        return CONF.my_ip

    def get_available_resource(self, nodename):
        status = self._host_status()
        return {
            'vcpus': status.vcpus_total,
            'memory_mb': status.memory_mb_total,
            'local_gb': 0,
            'vcpus_used': status.vcpus_used,
            'memory_mb_used': status.memory_mb_used,
            'local_gb_used': 0,
            'hypervisor_type': status.hypervisor_type,
            'hypervisor_version': status.hypervisor_version,
            'hypervisor_hostname': nodename,
            'cpu_info': jsonutils.dumps({'arch': status.cpu_arch, 'model': status.cpc_name}),
            'disk_available_least': 0,
            'supported_instances': [
                (
                    obj_fields.Architecture.S390X,
                    obj_fields.HVType.PRSM,
                    obj_fields.VMMode.HVM,
                )
            ],
            'numa_topology': None,
            'uuid': self._node_uuid,
        }

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        status = self._host_status(reuse=True)
        inventory = provider_tree.data(nodename).inventory
        ratios = self._get_allocation_ratios(inventory)
        # No DISK_GB: DPM partitions have no local disk.
        provider_tree.update_inventory(
            nodename,
            {
                orc.VCPU: {
                    'total': status.vcpus_total,
                    'min_unit': 1,
                    'max_unit': status.vcpus_total,
                    'step_size': 1,
                    'allocation_ratio': ratios[orc.VCPU],
                    'reserved': CONF.reserved_host_cpus,
                },
                orc.MEMORY_MB: {
                    'total': status.memory_mb_total,
                    'min_unit': 1,
                    'max_unit': status.memory_mb_total,
                    'step_size': 1,
                    'allocation_ratio': ratios[orc.MEMORY_MB],
                    'reserved': CONF.reserved_host_memory_mb,
                },
            },
        )

    # -- instances: reading ----------------------------------------------

    def _instances(self) -> list[pb.InstanceInfo]:
        reply = self._call(
            'ListInstances', pb.ListInstancesRequest(host=self._host), CONF.dpm.read_deadline
        )
        return list(reply.instances)

    def list_instance_uuids(self):
        return [info.instance_uuid for info in self._instances()]

    def list_instances(self):
        uuids = self.list_instance_uuids()
        if not uuids:
            return []
        # Nova compares these with instance.name, which only Nova's database knows.
        found = objects.InstanceList.get_by_filters(
            get_admin_context(), {'uuid': uuids}, expected_attrs=[]
        )
        return [instance.name for instance in found]

    def get_num_instances(self):
        return len(self.list_instance_uuids())

    def _info(self, instance) -> pb.InstanceInfo:
        reply = self._call(
            'GetInstanceInfo',
            pb.GetInstanceInfoRequest(**self._ids(instance)),
            CONF.dpm.read_deadline,
            instance=instance,
        )
        return reply.info

    def get_info(self, instance, use_cache=True):
        info = self._info(instance)
        if info.power_state == pb.POWER_STATE_CRASHED:
            LOG.warning('Partition status is %s', info.partition_status, instance=instance)
        return hardware.InstanceInfo(state=translate.power_state_of(info))

    def instance_exists(self, instance):
        try:
            self._info(instance)
        except exception.InstanceNotFound:
            return False
        return True

    # -- instances: building ---------------------------------------------

    def prepare_for_spawn(self, instance):
        """Create the partition and its vHBAs: Nova asks for the connector next."""
        translate.refuse_image_boot(instance)
        self._prepare(instance)

    def prepare_networks_before_block_device_mapping(self, instance, network_info):
        translate.check_vifs(instance, network_info)

    def failed_spawn_cleanup(self, instance):
        self._destroy(instance)

    def _prepare(self, instance, context=None) -> list[str]:
        """The instance's stopped partition here with the flavor it has now; its WWPNs, stored.

        Idempotent: an existing partition is reused (and a stopped one
        given the flavor's sizes).
        """
        reply = self._call(
            'PrepareInstance',
            pb.PrepareInstanceRequest(**self._ids(instance), flavor=translate.flavor(instance)),
            CONF.dpm.prepare_deadline,
            instance=instance,
            context=context,
        )
        wwpns = list(reply.wwpns)
        self._store_wwpns(instance, wwpns)
        return wwpns

    def _store_wwpns(self, instance, wwpns: list[str]) -> None:
        key = translate.wwpns_key(self._host)
        value = ','.join(wwpns)
        if instance.system_metadata.get(key) != value:
            instance.system_metadata[key] = value
            instance.save()

    def _forget_wwpns(self, instance, host: str) -> None:
        """Drop the WWPNs stored for ``host``, whose partition is gone and no longer asked for."""
        key = translate.wwpns_key(host)
        if key in instance.system_metadata:
            del instance.system_metadata[key]
            instance.save()

    def _wwpns(self, instance) -> list[str]:
        """This host's WWPNs of the instance: stored, else read from its partition."""
        wwpns = translate.stored_wwpns(instance, self._host)
        if wwpns is None:
            reply = self._call(
                'GetVolumeConnector',
                pb.GetVolumeConnectorRequest(**self._ids(instance)),
                CONF.dpm.read_deadline,
                instance=instance,
            )
            wwpns = list(reply.wwpns)
            self._store_wwpns(instance, wwpns)
        return wwpns

    def get_volume_connector(self, instance):
        """This host's initiators of the instance (another host's partition has its own).

        While Nova builds the instance here from a move or a rebuild
        (BUILDING_HERE), the partition is prepared first: Nova asks before
        the call that builds it. The flavor is the instance's at that point:
        the new one on the destination of a resize (_finish_resize sets it
        before), the unchanged one on an evacuation.
        """
        if instance.task_state in BUILDING_HERE:
            wwpns = self._prepare(instance)
        else:
            wwpns = self._wwpns(instance)
        return translate.connector(instance.uuid, wwpns)

    def _neutron_failed(self, event_name, instance):
        LOG.error('Neutron reported failure on event %s', event_name, instance=instance)
        if CONF.vif_plugging_is_fatal:
            raise exception.VirtualInterfaceCreateException()

    def _spawn_request(
        self, instance, network_info, block_device_info, leave_stopped: bool, fence: bool
    ) -> pb.SpawnRequest:
        """Spawn with this host's initiators, the NICs and volumes Nova gives now.

        ``fence``: the backend stops the instance's partitions on its other
        hosts before this one starts (see SpawnRequest.stop_other_hosts_partitions).
        """
        translate.check_vifs(instance, network_info)
        wwpns = self._wwpns(instance)
        boot_volume = translate.boot_volume(block_device_info, wwpns)
        if boot_volume is None:
            raise exception.InstanceUnacceptable(
                instance_id=instance.uuid,
                reason='no fibre channel boot volume (boot_index 0) in the block device mapping',
            )
        return pb.SpawnRequest(
            **self._ids(instance),
            flavor=translate.flavor(instance),
            nics=translate.nics(network_info),
            boot_volume=boot_volume,
            leave_stopped=leave_stopped,
            data_volumes=translate.data_volumes(block_device_info, wwpns),
            stop_other_hosts_partitions=fence,
        )

    def _spawn(self, context, instance, request: pb.SpawnRequest) -> None:
        self._call('Spawn', request, CONF.dpm.spawn_deadline, instance=instance, context=context)

    def spawn(
        self,
        context,
        instance,
        image_meta,
        injected_files,
        admin_password,
        allocations,
        network_info=None,
        block_device_info=None,
        power_on=True,
        accel_info=None,
    ):
        translate.refuse_image_boot(instance)
        timeout = CONF.vif_plugging_timeout
        events = (
            [
                ('network-vif-plugged', vif['id'])
                for vif in network_info or []
                if vif.get('active', True) is False
            ]
            if power_on and timeout
            else []
        )
        # An evacuation (or rebuild) spawns here: the source's partition may
        # still run on a CPC this backend serves, and must be stopped before
        # this one boots from the same FC volume.
        request = self._spawn_request(
            instance,
            network_info,
            block_device_info,
            leave_stopped=bool(events) or not power_on,
            fence=instance.task_state == task_states.REBUILD_SPAWNING,
        )
        try:
            with self.virtapi.wait_for_instance_event(
                instance, events, timeout=timeout, error_callback=self._neutron_failed
            ):
                # networking-dpm sees the NICs once they exist on the HMC and
                # then reports the ports plugged; the partition starts after.
                self._spawn(context, instance, request)
        except exception.InstanceEventTimeout:
            if CONF.vif_plugging_is_fatal:
                raise exception.VirtualInterfaceCreateException() from None
            LOG.warning('Ports not reported plugged in time; starting anyway', instance=instance)
        if events:
            self.power_on(context, instance, network_info, block_device_info)

    # -- instances: moving ------------------------------------------------
    #
    # A cold move is "stop here, attach the same FC volume there, start
    # there": nothing is copied. Nova's resize and cold migration call, in
    # order: migrate_disk_and_power_off (source), get_volume_connector and
    # finish_migration (destination), then confirm_migration (source) or
    # destroy (destination) and finish_revert_migration (source).

    @staticmethod
    def _migration_of(context, instance):
        """The Migration of the move under way: the destination's claim recorded its id."""
        if instance.migration_context is not None:
            return objects.Migration.get_by_id(context, instance.migration_context.migration_id)
        return objects.Migration.get_by_instance_and_status(context, instance.uuid, 'migrating')

    def migrate_disk_and_power_off(
        self,
        context,
        instance,
        dest,
        flavor,
        network_info,
        block_device_info=None,
        timeout=0,
        retry_interval=0,
    ):
        """Source: stop the partition; there is no disk to copy ('' disk info).

        A resize on the same host is refused before anything changes (``dest``
        is an address, which hosts on one nova-compute machine share: the
        Migration names the hosts). InstanceFaultRollback returns the
        instance to its state with the reason as its fault.
        """
        migration = self._migration_of(context, instance)
        if migration.dest_compute == self._host:
            raise exception.InstanceFaultRollback(
                exception.ResizeError(
                    reason=f'the DPM driver cannot resize an instance on its own host '
                    f'({self._host}): a resize moves the partition to another host. '
                    'Resize again when another host has room, or set '
                    'allow_resize_to_same_host = false so that Nova picks another host.'
                )
            )
        # DPM stops a partition hard: timeout and retry_interval do not apply.
        self.power_off(instance)
        return ''

    def finish_migration(
        self,
        context,
        migration,
        instance,
        disk_info,
        network_info,
        image_meta,
        resize_instance,
        allocations,
        block_device_info=None,
        power_on=True,
        share_info=None,
    ):
        """Destination: the partition with the instance's (new) flavor, booting the same volume.

        The connector Nova asked for before prepared the partition; preparing
        again is idempotent and gives a stopped partition left by an earlier
        attempt the flavor's sizes. ``block_device_info`` carries the
        connection Cinder made for this host's initiators. No wait for
        network-vif-plugged, as libvirt's finish_migration: the ports stay
        active through a move, so Neutron may send no event.
        """
        self._prepare(instance, context)
        request = self._spawn_request(
            instance, network_info, block_device_info, leave_stopped=not power_on, fence=False
        )
        self._spawn(context, instance, request)

    def confirm_migration(self, context, migration, instance, network_info):
        """Source: its partition, stopped since the move, goes, and so do its stored WWPNs.

        Nothing asks for this host's connector afterwards: Nova ended the
        source's volume connections when the move began.
        """
        if not self._destroy(instance, context, keep_wwpns=False):
            LOG.info('Source partition already gone', instance=instance)

    def finish_revert_migration(
        self,
        context,
        instance,
        network_info,
        migration,
        block_device_info=None,
        power_on=True,
        share_info=None,
    ):
        """Source: the partition, stopped since the move, runs again with the old flavor.

        Spawn converges on it: its NICs exist, and the boot volume is the
        connection Cinder made again for this host's initiators. The
        destination destroyed its partition before (Nova's revert_resize
        there), so the WWPNs stored for it are dropped. No wait for
        network-vif-plugged: the NICs never went away.
        """
        request = self._spawn_request(
            instance, network_info, block_device_info, leave_stopped=not power_on, fence=False
        )
        self._spawn(context, instance, request)
        if migration.dest_compute != self._host:
            self._forget_wwpns(instance, migration.dest_compute)

    # -- instances: lifecycle -------------------------------------------

    def _destroy(self, instance, context=None, keep_wwpns: bool = True) -> bool:
        """Destroy this host's partition of the instance; whether there was one.

        Nova asks for the volume connector after destroy (to end the volume
        connections), when the HMC no longer knows the WWPNs: with
        ``keep_wwpns`` they stay stored. An instance whose connector was
        never asked for here (one the original nova-dpm created) has none
        stored: Destroy reads them before it deletes, and they are stored
        before returning. Stored ones are kept, also when a retried Destroy
        finds nothing left. Without ``keep_wwpns`` (nothing will ask for
        this host's connector again) they are dropped.
        """
        known = not keep_wwpns or translate.stored_wwpns(instance, self._host) is not None
        reply = self._call(
            'Destroy',
            pb.DestroyRequest(**self._ids(instance), wwpns_known=known),
            CONF.dpm.power_deadline,
            instance=instance,
            context=context,
        )
        if not keep_wwpns:
            self._forget_wwpns(instance, self._host)
        elif not known and reply.wwpns:
            self._store_wwpns(instance, list(reply.wwpns))
        return reply.existed

    def destroy(
        self,
        context,
        instance,
        network_info,
        block_device_info=None,
        destroy_disks=True,
        destroy_secrets=True,
    ):
        # The WWPNs stay in (or are now stored into) system_metadata: Nova
        # asks for the connector after this to end the volume connections.
        # Except when the instance lives on another host now: Nova removes
        # what an evacuation left here, and its connections were moved
        # already (_destroy_evacuated_instances asks for no connector).
        elsewhere = instance.host is not None and instance.host != self._host
        if not self._destroy(instance, context, keep_wwpns=not elsewhere):
            LOG.info('Partition already gone', instance=instance)

    def cleanup(
        self,
        context,
        instance,
        network_info,
        block_device_info=None,
        destroy_disks=True,
        migrate_data=None,
        destroy_vifs=True,
        destroy_secrets=True,
    ):
        self._destroy(instance, context)

    def power_off(self, instance, timeout=0, retry_interval=0):
        # DPM stops a partition hard: there is no graceful shutdown request.
        self._call(
            'PowerOff',
            pb.PowerOffRequest(**self._ids(instance)),
            CONF.dpm.power_deadline,
            instance=instance,
            failure=lambda m: exception.InstancePowerOffFailure(reason=m),
        )

    def power_on(
        self,
        context,
        instance,
        network_info,
        block_device_info=None,
        accel_info=None,
        share_info=None,
    ):
        self._call(
            'PowerOn',
            pb.PowerOnRequest(**self._ids(instance)),
            CONF.dpm.power_deadline,
            instance=instance,
            failure=lambda m: exception.InstancePowerOnFailure(reason=m),
            context=context,
        )

    def reboot(
        self,
        context,
        instance,
        network_info,
        reboot_type,
        block_device_info=None,
        bad_volumes_callback=None,
        accel_info=None,
        share_info=None,
    ):
        if reboot_type == 'HARD' and instance.vm_state == vm_states.ERROR:
            self._recover(context, instance, network_info, block_device_info)
            return
        if reboot_type != 'HARD':
            LOG.info('DPM has no soft reboot; rebooting hard', instance=instance)
        self._call(
            'Reboot',
            pb.RebootRequest(**self._ids(instance)),
            CONF.dpm.power_deadline,
            idempotent=False,
            instance=instance,
            failure=lambda m: exception.InstanceRebootFailure(reason=m),
            context=context,
        )

    def _recover(self, context, instance, network_info, block_device_info) -> None:
        """A hard reboot of an instance in ERROR: stop, configure as Nova says now, start.

        An operation that failed part way (a move whose finish_migration
        failed, say) can leave the partition without its NICs or boot
        volume, or with other sizes: a plain stop and start would not boot
        it. Spawn converges on it instead, as libvirt's hard reboot rebuilds
        its domain. Nova says the instance lives on this host: the backend
        stops its partitions on other hosts before this one starts.
        """
        LOG.info(
            'Hard reboot of an instance in ERROR: reconfiguring its partition', instance=instance
        )
        try:
            self.power_off(instance)
        except exception.InstanceNotFound:
            # A failed destroy (a revert's, say) took the partition but not all
            # of its storage: Spawn creates it again on what is left (a storage
            # group boots as before; new vHBAs fail on the volume's initiators
            # with BOOT_VOLUME_UNUSABLE, which says what to do).
            LOG.warning('Hard reboot: the partition is gone; creating it again', instance=instance)
        request = self._spawn_request(
            instance, network_info, block_device_info, leave_stopped=False, fence=True
        )
        self._call(
            'Spawn',
            request,
            CONF.dpm.spawn_deadline,
            instance=instance,
            failure=lambda m: exception.InstanceRebootFailure(reason=m),
            context=context,
        )

    # -- volumes --------------------------------------------------------

    @staticmethod
    def _check_fc_volume(connection_info) -> None:
        kind = (connection_info or {}).get('driver_volume_type')
        if kind != translate.FIBRE_CHANNEL:
            raise exception.VolumeDriverNotFound(driver_type=kind)

    def attach_volume(
        self,
        context,
        connection_info,
        instance,
        mountpoint,
        disk_bus=None,
        device_type=None,
        encryption=None,
    ):
        """vHBA CPCs: nothing on the HMC (the guest scans its vHBAs); storage-group
        CPCs: the backend defines the volume in the instance's group and finds it."""
        self._check_fc_volume(connection_info)
        wwpns = self._wwpns(instance)
        volume = translate.fc_volume(
            connection_info, wwpns, self._volume_size(context, connection_info, instance), 'volume'
        )
        self._call(
            'AttachVolume',
            pb.AttachVolumeRequest(**self._ids(instance), volume=volume),
            CONF.dpm.spawn_deadline,
            instance=instance,
            context=context,
        )

    @staticmethod
    def _volume_size(context, connection_info, instance) -> int | None:
        """The volume's size in GiB (Nova passes no BDM to attach_volume).

        From the block device mapping where Nova saved it; a volume attached
        through the API has none yet there (Nova saves it after this call), so
        Cinder is asked then, as other drivers ask it for volume facts.
        """
        volume_id = translate.volume_id_of(connection_info)
        if not volume_id or context is None:
            return None
        try:
            bdm = objects.BlockDeviceMapping.get_by_volume_and_instance(
                context, volume_id, instance.uuid
            )
        except exception.VolumeBDMNotFound:
            bdm = None
        if bdm is not None and bdm.volume_size:
            return bdm.volume_size
        return cinder.API().get(context, volume_id)['size']

    def detach_volume(self, context, connection_info, instance, mountpoint, encryption=None):
        # Succeeds once the partition is gone (Nova's driver_detach re-raises
        # InstanceNotFound): the backend answers existed=false then.
        self._check_fc_volume(connection_info)
        volume_id = translate.volume_id_of(connection_info)
        if not volume_id:
            return
        self._call(
            'DetachVolume',
            pb.DetachVolumeRequest(**self._ids(instance), volume_id=volume_id),
            CONF.dpm.power_deadline,
            instance=instance,
            context=context,
        )
        LOG.debug(
            'Volume detached at %(mountpoint)s', {'mountpoint': mountpoint}, instance=instance
        )
