"""Partitions exactly as the original nova-dpm left them on the HMC, for adoption tests.

An operator who replaces the original driver (openstack/nova-dpm 3.0.0, last
code at 2fd255b) keeps its partitions; this project must adopt them. This
module makes the HMC requests the original's driver made, in its order and
with its values, through a real zhmcclient Session to the simulator. Sources,
all under ``nova_dpm/virt/dpm/`` at 2fd255b:

- ``driver.py`` ``default_device_names_for_instance`` -> ``_prep_for_spawn``:
  the partition, then its vHBAs, before Nova asks for the connector;
  ``spawn``: the NICs, the boot properties, then ``launch``.
- ``vm.py`` ``PartitionInstance.partition_name`` / ``partition_description`` /
  ``properties``: ``OpenStack-<host>-<uuid>``, ``OpenStack CPCSubset=<host>``,
  ``ifl-processors`` = vcpus, ``initial-memory`` = ``maximum-memory`` = memory.
- ``vm.py`` ``attach_hbas``: per ``physical_storage_adapter_mappings`` entry a
  vHBA ``OpenStack_Port_<adapter id>_<port>``, description
  ``"OpenStack CPCSubset= " + host`` (a space after ``=``), adapter port
  ``/api/adapters/<id>/storage-ports/<port>``; the HMC assigns WWPN and
  device number.
- ``vm.py`` ``_get_nic_properties_dict`` / ``attach_nic``: NIC
  ``OpenStack_Port_<port id>``, description ``OpenStack mac=<mac>,
  CPCSubset=<host>``, ``/api/virtual-switches/<object id>``; the HMC assigns
  the device number.
- ``vm.py`` ``_set_nic_string_in_os_specific_parameters`` and
  ``append_to_boot_os_specific_parameters``: after each NIC, the token
  ``<devno>,0,<mac without colons>;`` (port always 0, the devno as the HMC
  reports it) appended as ``"%(current)s %(data)s"``, so the value starts with
  a space.
- ``vm.py`` ``set_boot_properties`` with ``block_device.py``
  ``BlockDevice.lun``: ``boot-device: storage-adapter``,
  ``boot-storage-device`` = the element URI of the vHBA on the first mapping,
  ``boot-world-wide-port-name`` = the target, ``boot-logical-unit-number`` =
  ``str(target_lun)``.
- ``vm.py`` ``launch``: ``partition.start(True)``, then wait for ``active``.
"""

from __future__ import annotations

import contextlib
import dataclasses

import zhmcclient

CMDLINE = 'boot-os-specific-parameters'


def logged_on(served) -> contextlib.AbstractContextManager[zhmcclient.Client]:
    """A zhmcclient Client logged on to the simulator ``served`` (logged off afterwards)."""
    return served.logged_on()


@dataclasses.dataclass(frozen=True)
class Port:
    """A Neutron port as the original's VIF saw it (vif.py ``DPMVIF``)."""

    port_id: str
    mac: str
    vswitch_object_id: str


@dataclasses.dataclass(frozen=True)
class Boot:
    """The boot volume's target WWPN (already chosen) and Cinder's integer LUN."""

    target_wwpn: str
    target_lun: int


def build(
    client: zhmcclient.Client,
    cpc_object_id: str,
    host: str,
    instance_uuid: str,
    *,
    vcpus: int,
    memory_mb: int,
    adapter_ports: list[tuple[str, int]],
    ports: list[Port],
    boot: Boot,
    launch: bool = True,
) -> zhmcclient.Partition:
    """The instance's partition as the original's prepare and spawn left it.

    ``launch=False`` leaves it as a spawn that failed at its last step (the
    start) did: configured and stopped.
    """
    cpc = client.cpcs.find(**{'object-id': cpc_object_id})
    # vm.py PartitionInstance.properties() / create()
    partition = cpc.partitions.create(
        {
            'name': 'OpenStack' + '-' + host + '-' + instance_uuid,
            'description': 'OpenStack' + ' ' + 'CPCSubset=' + host,
            'ifl-processors': vcpus,
            'initial-memory': memory_mb,
            'maximum-memory': memory_mb,
        }
    )
    # vm.py attach_hbas()
    for adapter_object_id, adapter_port in adapter_ports:
        partition.hbas.create(
            {
                'name': 'OpenStack_Port_' + adapter_object_id + '_' + str(adapter_port),
                'description': 'OpenStack CPCSubset= ' + host,
                'adapter-port-uri': '/api/adapters/'
                + adapter_object_id
                + '/storage-ports/'
                + str(adapter_port),
            }
        )
    # vm.py attach_nic() and _set_nic_string_in_os_specific_parameters()
    for port in ports:
        nic = partition.nics.create(
            {
                'name': 'OpenStack_Port_' + str(port.port_id),
                'description': 'OpenStack mac=' + port.mac + ', CPCSubset=' + host,
                'virtual-switch-uri': '/api/virtual-switches/' + port.vswitch_object_id,
            }
        )
        # "{devno},0,{mac};".format(...), then "%(current)s %(data)s" % ...
        data = f'{nic.get_property("device-number")},0,{port.mac.replace(":", "")};'
        # get_property(): a GET only while the value is not known locally. A
        # real HMC reports an empty string for a partition that never had one
        # (the simulator omits the property until it is set).
        if CMDLINE not in partition.properties:
            partition.pull_full_properties()
        current = partition.properties.get(CMDLINE, '')
        partition.update_properties({CMDLINE: f'{current} {data}'})
    # vm.py get_boot_hba() and set_boot_properties()
    adapter_object_id, adapter_port = adapter_ports[0]
    boot_hba = partition.hbas.find(
        **{'adapter-port-uri': f'/api/adapters/{adapter_object_id}/storage-ports/{adapter_port}'}
    )
    partition.update_properties(
        {
            'boot-device': 'storage-adapter',
            'boot-storage-device': boot_hba.get_property('element-uri'),
            'boot-world-wide-port-name': boot.target_wwpn,
            'boot-logical-unit-number': str(boot.target_lun),
        }
    )
    if launch:
        # vm.py launch()
        partition.start(True)
        partition.wait_for_status(status='active', status_timeout=60)
    partition.pull_full_properties()
    return partition
