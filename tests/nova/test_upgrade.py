"""Upgrade in place from the original nova-dpm: what Nova itself keeps about the host.

The original's nova-compute left a compute node record for the host (node name
= host name) with the random uuid Nova gave it; since Nova 2023.1 Nova also
keeps that uuid in ``$state_path/compute_id`` (written from the database on
the first start after the upgrade: ``ComputeManager._ensure_existing_node_identity``).
"""

from __future__ import annotations

import uuid

import fixtures
from nova.compute import resource_tracker

from dpm_frontend import driver as driver_mod
from nova import context
from nova import objects
from nova import test
from nova.virt import fake
from nova.virt import node as virt_node

HOST = 'cpc1'


class UpgradedHostTest(test.TestCase):
    # Nova's real node identity files, in a temporary state_path.
    STUB_COMPUTE_ID = False

    def setUp(self):
        super().setUp()
        self.state_path = self.useFixture(fixtures.TempDir()).path
        self.flags(host=HOST, state_path=self.state_path, config_file=[])
        virt_node.LOCAL_NODE_UUID = None
        self.addCleanup(setattr, virt_node, 'LOCAL_NODE_UUID', None)

    def test_the_resource_tracker_finds_the_compute_node_the_original_left(self):
        ctxt = context.get_admin_context()
        service = objects.Service(ctxt, host=HOST, binary='nova-compute', topic='compute')
        service.create()
        existing = objects.ComputeNode(
            ctxt,
            uuid=str(uuid.uuid4()),
            host=HOST,
            hypervisor_hostname=HOST,
            service_id=service.id,
            vcpus=8,
            memory_mb=16384,
            local_gb=1024,
            vcpus_used=0,
            memory_mb_used=0,
            local_gb_used=0,
            hypervisor_type='PRSM',
            hypervisor_version=2013001,
            cpu_info='{}',
        )
        existing.create()
        virt_node.write_local_node_uuid(existing.uuid)
        drv = driver_mod.DPMDriver(fake.FakeVirtAPI())
        tracker = resource_tracker.ResourceTracker(HOST, drv)
        tracker.service_ref = service
        (node_uuid,) = drv.get_nodenames_by_uuid()
        resources = {
            'hypervisor_hostname': HOST,
            'uuid': node_uuid,
            'vcpus': 8,
            'memory_mb': 16384,
            'local_gb': 0,
            'vcpus_used': 0,
            'memory_mb_used': 0,
            'local_gb_used': 0,
            'hypervisor_type': 'PRSM',
            'hypervisor_version': 2013001,
            'cpu_info': '{}',
            'disk_available_least': 0,
            'numa_topology': None,
        }
        # No new record: the existing one is the host's node.
        assert tracker._init_compute_node(ctxt, resources) is False
        assert tracker.compute_nodes[HOST].uuid == existing.uuid

    def test_a_new_host_gets_a_node_identity_that_a_restarted_driver_keeps(self):
        (node_uuid,) = driver_mod.DPMDriver(fake.FakeVirtAPI()).get_nodenames_by_uuid()
        with open(f'{self.state_path}/compute_id') as stream:
            assert stream.read().strip() == node_uuid
        virt_node.LOCAL_NODE_UUID = None  # a new nova-compute process
        assert driver_mod.DPMDriver(fake.FakeVirtAPI()).get_nodenames_by_uuid() == {node_uuid: HOST}
