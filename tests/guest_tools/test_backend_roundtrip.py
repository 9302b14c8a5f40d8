"""The command line the backend writes, read by the guest tools: the same NICs come out."""

from __future__ import annotations

from dpmtest import INVENTORY
from dpmtest import boot_volume
from dpmtest import flavor
from dpmtest import new_uuid
from dpmtest import nic

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_backend import naming


def test_spawned_nics_are_configured_in_the_guest_exactly(tmp_path, running, run_guest_tools):
    instance_uuid = new_uuid()
    prepared = running.stub.PrepareInstance(
        pb.PrepareInstanceRequest(host='cpc1', instance_uuid=instance_uuid, flavor=flavor()),
        timeout=10,
    )
    switches = [INVENTORY['vswitch_osa0'], INVENTORY['vswitch_osa1'], INVENTORY['vswitch_hs']]
    nics = [nic(switches[index % 3], f'fa:16:3e:{index:02x}:ab:cd') for index in range(7)]
    running.stub.Spawn(
        pb.SpawnRequest(
            host='cpc1',
            instance_uuid=instance_uuid,
            flavor=flavor(),
            nics=nics,
            boot_volume=boot_volume(list(prepared.wwpns), ['500507680b2142e5']),
        ),
        timeout=10,
    )
    partition = running.partitions()[naming.partition_name('cpc1', instance_uuid)]
    value = partition.properties['boot-os-specific-parameters']
    hmc_nics = {n.properties['name']: n.properties for n in partition.nics.list()}
    ports = {
        v.properties['object-id']: v.properties['port']
        for v in running.cpc().virtual_switches.list()
    }
    expected = {}
    for spec in nics:
        props = hmc_nics[naming.nic_name(spec.port_id)]
        expected[props['device-number'].lower()] = {
            'port': ports[spec.vswitch_object_id],
            'mac': spec.mac,
        }
    assert {entry['port'] for entry in expected.values()} == {0, 1}

    # The guest sees the value as part of a longer kernel command line.
    cmdline = f'root=/dev/disk/by-path/ccw-fcp-lun rd.znet=qeth {value} console=ttysclp0'
    configured = run_guest_tools(tmp_path, cmdline, list(expected))
    assert configured == expected
