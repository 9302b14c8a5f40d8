"""HMC operations the simulator serves itself, or checks before zhmcclient's mock does.

Each function works on a FakedHmc under the Simulator's lock and raises
:class:`HmcError` (or the mock's FakedHTTPError) to refuse; the facts come from
rules.py.
"""

from __future__ import annotations

from typing import Any

from zhmcclient.mock._urihandler import CpcNotInDpmError
from zhmcclient.mock._urihandler import check_valid_cpc_status

from dpm_hmc_sim import rules
from dpm_hmc_sim.errors import HmcError
from dpm_hmc_sim.errors import not_found
from dpm_hmc_sim.jobs import Job


def partition_of(hmc: Any, partition_uri: str, method: str, uri: str) -> Any:
    """The partition, on a CPC in DPM mode in a usable status (as zc's mock checks it)."""
    try:
        partition = hmc.lookup_by_uri(partition_uri)
    except KeyError:
        raise not_found(uri) from None
    cpc = partition.manager.parent
    if not cpc.dpm_enabled:
        raise CpcNotInDpmError(method, uri, cpc)
    check_valid_cpc_status(method, uri, cpc)
    return partition


def require_status(partition: Any, allowed: frozenset[str]) -> str:
    status = partition.properties.get('status', 'stopped')
    if status not in allowed:
        raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
    return status


def finish_job(hmc: Any, job: Job) -> None:
    """End a Start/Stop Partition job as its outcome says, and set the partition's status."""
    partition = hmc.all_resources.get(job.target_uri)
    if job.outcome == rules.JOB_ERROR:
        name = partition.name if partition is not None else job.target_uri
        message = f'{job.operation.capitalize()} Partition of {name} failed (simulated job error)'
        job.complete(rules.JOB_ERROR_STATUS, rules.JOB_ERROR_REASON, {'message': message})
        end_status = job.prior_status
    else:
        job.complete(rules.JOB_OK_STATUS, 0, {})
        end_status = job.outcome
    if partition is not None and partition.properties.get('status') == rules.TRANSITIONAL.get(
        job.operation
    ):
        partition.properties['status'] = end_status


def remove_nic(partition: Any, nic: Any, hmc: Any) -> None:
    """Delete a NIC and take it off its virtual switch's connected NICs.

    zhmcclient 1.26's FakedNicManager.remove leaves the NIC's URI in the
    virtual switch's ``connected-vnic-uris`` (it adds it on create, zc
    mock/_hmc.py FakedNicManager.add/remove); on an HMC a deleted NIC is no
    longer connected, and networking-dpm's agent GETs every connected NIC.
    """
    vswitch_uri = nic.properties.get('virtual-switch-uri')
    partition.nics.remove(nic.oid)
    forget_vnic(hmc, vswitch_uri, nic.uri)


def forget_vnic(hmc: Any, vswitch_uri: str | None, nic_uri: str) -> None:
    vswitch = hmc.all_resources.get(vswitch_uri) if vswitch_uri else None
    if vswitch is not None:
        connected = vswitch.properties.get('connected-vnic-uris', [])
        if nic_uri in connected:
            connected.remove(nic_uri)


def delete_partition(hmc: Any, partition: Any) -> None:
    """Delete a partition with its NICs, HBAs and virtual functions.

    Upstream note (zhmcclient 1.26, mock): "Delete Partition (PartitionHandler.delete
    -> FakedPartitionManager.remove) removes the partition from
    FakedHmc.all_resources but not its NICs, HBAs and virtual functions. Their URIs
    stay resolvable after the partition is gone (GET answers 200 instead of 404),
    and each keeps its manager, and through it the deleted FakedPartition, alive:
    about 10 KiB per deleted partition with one NIC and one HBA (tracemalloc, 200
    partitions) in a long-running mock. Suggested fix:
    FakedPartitionManager.remove() removes the partition's nics, hbas and
    virtual_functions through their managers first (which also frees their device
    numbers and WWPNs), and FakedNicManager.remove() takes the NIC off its
    virtual switch's 'connected-vnic-uris'."
    """
    for nic in partition.nics.list():
        remove_nic(partition, nic, hmc)
    for hba in partition.hbas.list():
        partition.hbas.remove(hba.oid)
    for function in partition.virtual_functions.list():
        partition.virtual_functions.remove(function.oid)
    partition.manager.remove(partition.oid)


def storage_management_enabled(cpc: Any) -> bool:
    """Whether the CPC has the dpm-storage-management firmware feature on (zc _cpc.py)."""
    return any(
        feature.get('name') == rules.STORAGE_MANAGEMENT_FEATURE and feature.get('state')
        for feature in cpc.properties.get('available-features-list') or ()
    )


def refuse_hba_on_storage_management(partition: Any) -> None:
    cpc = partition.manager.parent
    if storage_management_enabled(cpc):
        raise HmcError(
            rules.HBA_REFUSED_STATUS,
            rules.HBA_REFUSED_REASON,
            f'HBAs cannot be created on CPC {cpc.name}: its '
            f'{rules.STORAGE_MANAGEMENT_FEATURE} firmware feature is enabled',
        )


def refuse_read_only(body: Any, read_only: frozenset[str]) -> None:
    for name in body or ():
        if name in read_only:
            # The text of zc's mock check_writable.
            raise HmcError(400, rules.READ_ONLY_REASON, f'Property is not writable: {name!r}')


def select_properties(properties: dict[str, Any], names: str) -> dict[str, Any]:
    """Get Properties with ``properties=``: only the named ones.

    A name the object does not have is left out. The HMC book says the presence
    of each requested property is as without the parameter (it may be omitted);
    a name that is no property of the class at all gets 400,14 from a real HMC
    (zc _resource.py ~345) and from zc's mock, but the simulator cannot tell such a
    name from one this definition merely leaves unset, so it omits both.
    """
    wanted = [name for name in names.split(',') if name]
    return {name: properties[name] for name in wanted if name in properties}
