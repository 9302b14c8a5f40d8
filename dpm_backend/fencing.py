"""Evacuate: the instance's partitions of the backend's other hosts stopped before it starts.

Nova evacuates an instance whose nova-compute is down; its CPC may still run
the old partition, which boots from the same FC volume as the new one. Two
partitions running from one boot volume corrupt it, so a Spawn with
``stop_other_hosts_partitions`` first stops every partition named exactly
``OpenStack-<other host>-<instance uuid>`` (naming.partition_name) of the
other hosts this backend is configured with. Partitions of other instances,
and names of no such host, are never touched: a host acts on its own
objects and, here, on those of the backend's other hosts only.

- One List Partitions per distinct CPC of those hosts, whose ``name``
  filter lists the exact names: each is regex-escaped (the HMC matches a
  name filter as a regular expression, see naming.partition_list_filter) and
  the items of a list filter are ORed (zc docs ``concepts.rst``
  "Filtering"); the names listed are compared exactly again.
- A partition that is not stopped (nor in reservation-error, which runs
  nothing) is stopped with a Stop Partition job, waited for within the
  call's deadline (power.ensure_stopped: a starting or stopping one is
  waited for first). A stop that fails or does not end in time fails the
  Spawn before anything was started (UNAVAILABLE, DEADLINE_EXCEEDED).
- A CPC the HMC does not know (404), or one not in DPM mode (409 reason 5,
  the answer zc's mock gives DPM operations on a classic-mode CPC,
  CpcNotInDpmError; UNVERIFIED for List Partitions on a real HMC, which the
  mock answers with an empty list) runs no DPM partition: it is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import zhmcclient

from dpm_backend import naming
from dpm_backend import power
from dpm_backend import states
from dpm_backend.call import Call
from dpm_backend.host import Host

LOG = logging.getLogger(__name__)

# List Partitions of a CPC the HMC does not know: 404; of a CPC not in DPM mode: 409,5.
CPC_GONE = 404
CPC_NOT_DPM = (409, 5)


def _names_by_cpc(host: Host, others: Iterable[Host], instance_uuid: str) -> dict[str, dict]:
    """CPC object id -> the instance's partition name on each other host there -> that host."""
    by_cpc: dict[str, dict[str, str]] = {}
    for other in others:
        if other.name != host.name:
            name = naming.partition_name(other.name, instance_uuid)
            by_cpc.setdefault(other.config.cpc_object_id, {})[name] = other.name
    return by_cpc


def _listed(call: Call, cpc_object_id: str, names: dict[str, str]) -> list[zhmcclient.Partition]:
    """The partitions of the CPC that have exactly one of ``names``; one HMC request."""
    cpc = call.client.cpcs.resource_object(cpc_object_id)
    filters = [naming.partition_list_filter(name, exact=True) for name in sorted(names)]
    try:
        found = call.dialect.list_partitions(cpc, filters)
    except zhmcclient.HTTPError as exc:
        if exc.http_status != CPC_GONE and (exc.http_status, exc.reason) != CPC_NOT_DPM:
            raise
        LOG.warning(
            'Not looking for partitions on CPC %s: HMC %s,%s (%s)',
            cpc_object_id,
            exc.http_status,
            exc.reason,
            exc.message,
        )
        return []
    return [partition for partition in found if partition.name in names]


def stop_other_hosts_partitions(
    call: Call, host: Host, others: Iterable[Host], instance_uuid: str
) -> list[tuple[str, str]]:
    """Stop the instance's partitions of the ``others`` hosts; (host, partition name) of each.

    Returns every such partition found, stopped now or already.
    """
    found = []
    for cpc_object_id, names in _names_by_cpc(host, others, instance_uuid).items():
        for partition in _listed(call, cpc_object_id, names):
            other = names[partition.name]
            found.append((other, partition.name))
            status = partition.properties.get('status', '')
            if status in states.NOT_STARTED:
                continue
            LOG.warning(
                'Spawning instance %r on host %r: stopping its partition %s of host %r '
                '(status %s), so that one boot volume never runs in two partitions',
                instance_uuid,
                host.name,
                partition.name,
                other,
                status,
            )
            power.ensure_stopped(call, partition)
    return found
