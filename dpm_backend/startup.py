"""Checks of each host before it is served, and a warning about host names.

A host whose CPC or adapter mappings are wrong would fail every spawn, or
worse, create vHBAs on another CPC's adapter. Each host is checked when the
HMC first answers; one that fails is reported NOT_SERVING under its own
health service name and its calls are refused with the reason, while the
other hosts serve.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import zhmcclient

from dpm_backend import errors
from dpm_backend import naming
from dpm_backend import storage
from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.hmc import SessionPool
from dpm_backend.host import CpcFacts
from dpm_backend.host import Host
from dpm_backend.jobs import JobWaiter

# Properties of an adapter that the mapping check reads (one GET per mapped adapter).
ADAPTER_PROPERTIES = ('type', 'storage-port-uris')
FCP_ADAPTER_TYPE = 'fcp'
# A host name that could match inside a MAC address ("fa", "e1").
_MAC_FRAGMENT = re.compile(r'[0-9a-fA-F]{1,2}')


class Checks:
    """One round of start-up checks: each CPC, and its adapter list, is read once."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._facts: dict[str, CpcFacts] = {}
        self._adapters: dict[str, dict[str, zhmcclient.Adapter]] = {}

    def _adapters_of(self, host: Host) -> dict[str, zhmcclient.Adapter]:
        """The CPC's adapters by object id (List Adapters: its defaults include the type)."""
        cpc_id = host.config.cpc_object_id
        if cpc_id not in self._adapters:
            self._adapters[cpc_id] = {
                adapter.uri.rsplit('/', 1)[-1]: adapter
                for adapter in host.cpc(self.call.client).adapters.list()
            }
        return self._adapters[cpc_id]

    def host(self, host: Host) -> str:
        """What was found usable, in one line; raise a DPMError naming what is not.

        The CPC exists, is in DPM mode and operating, and holds the host's
        limits; every ``physical_storage_adapter_mappings`` entry names a port
        of an FCP adapter of that CPC (vHBAs are created there, or, with
        storage groups, the boot volume is reached through the first one).
        """
        cpc_id = host.config.cpc_object_id
        if cpc_id not in self._facts:
            self._facts[cpc_id] = host.facts(self.call, fresh=True)
        facts = self._facts[cpc_id]
        host.check_cpc(facts)
        adapters = self._adapters_of(host)
        for adapter_id, port in host.config.adapter_ports:
            mapping = f'physical_storage_adapter_mappings {adapter_id}:{port}'
            adapter = adapters.get(adapter_id)
            if adapter is None:
                raise errors.cpc_not_usable(
                    host.name, f'{mapping}: no such adapter on CPC {facts.name}'
                )
            if adapter.properties.get('type') != FCP_ADAPTER_TYPE:
                raise errors.cpc_not_usable(
                    host.name,
                    f'{mapping}: adapter {adapter.name} is of type '
                    f'{adapter.properties.get("type")}, not {FCP_ADAPTER_TYPE}',
                )
            self.call.dialect.complete(adapter, ADAPTER_PROPERTIES)
            if naming.storage_port_uri(adapter_id, port) not in (
                adapter.properties.get('storage-port-uris') or []
            ):
                raise errors.cpc_not_usable(
                    host.name, f'{mapping}: adapter {adapter.name} has no port {port}'
                )
        return summary(host, facts)


def check_hosts(
    pool: SessionPool, jobs: JobWaiter, hosts: Iterable[Host], seconds: float
) -> dict[str, str | errors.DPMError]:
    """Each host's summary (usable) or the error naming why not, from one HMC session.

    Raises zhmcclient.Error or PoolExhausted when the HMC does not answer:
    then nothing is known about any host.
    """
    deadline = Deadline(seconds)
    outcomes: dict[str, str | errors.DPMError] = {}
    with pool.client(timeout=deadline.remaining()) as client:
        checks = Checks(Call(client, pool.dialect(client), jobs, deadline))
        for host in hosts:
            try:
                outcomes[host.name] = checks.host(host)
            except errors.DPMError as exc:
                outcomes[host.name] = exc
    return outcomes


def summary(host: Host, facts: CpcFacts) -> str:
    """A checked host in one line: its CPC, storage path and how much of the CPC it may use."""
    ports = len(host.config.adapter_ports)
    return (
        f'CPC {facts.name} (DPM, {facts.status}), storage path '
        f'{storage.for_cpc(facts).name}, {host.config.max_processors} of '
        f'{facts.processor_count_ifl} IFLs, {host.config.max_memory} of '
        f'{facts.storage_customer} MiB, {ports} FCP adapter port{"s" if ports > 1 else ""}'
    )


def claims_nics_of(claimer: str, other: str) -> bool:
    """Whether networking-dpm's agent for ``claimer`` takes ``other``'s NICs for its own.

    The agent keeps a NIC whose description starts with ``OpenStack``,
    contains its host name (a plain substring test) and a MAC
    (networking-dpm ``dpm_neutron_agent.py``). Host names have no ``=``,
    ``,`` or ``:``, so a match lies within one part of the description.
    """
    fixed_parts = [*naming.nic_description(other, '').split('='), other]
    return any(claimer in part for part in fixed_parts) or bool(_MAC_FRAGMENT.fullmatch(claimer))


def nic_claim_collisions(hosts: list[Host]) -> list[tuple[str, str]]:
    """(claimer, other) for hosts on one CPC where the claimer's agent takes the other's NICs."""
    return [
        (a.name, b.name)
        for a, b in itertools.permutations(hosts, 2)
        if a.config.cpc_object_id == b.config.cpc_object_id and claims_nics_of(a.name, b.name)
    ]
