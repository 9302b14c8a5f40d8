"""An existing partition brought to the flavor a PrepareInstance or Spawn asks for.

A resize or a cold migration comes back to a host whose partition of the
instance may still exist with the old flavor's sizes; the call converges on
the flavor it names instead of keeping them.

- Update Partition Properties writes ``ifl-processors``, ``initial-memory``
  and ``maximum-memory``; a real HMC changes the first two on an active
  partition but ``maximum-memory`` only on a stopped one: IBM's Ansible
  module stops the partition before it changes that one
  (zhmc-ansible-modules ``zhmc_partition.py`` ``ZHMC_PARTITION_PROPERTIES``,
  columns ``update`` and ``update_while_active``; dpm-hmc-sim refuses it
  likewise, ``rules.STOPPED_ONLY_PROPERTIES``).
- Partitions here have ``initial-memory`` = ``maximum-memory`` (as the
  original nova-dpm created them), so a partition is resized only while it
  runs nothing: ``stopped``, or ``reservation-error``, which the backend
  treats as stopped (see :mod:`dpm_backend.power`). A partition in any
  other status keeps its sizes and the call fails with PARTITION_RUNNING:
  Nova powers an instance off before it resizes or migrates it.
- The growth (never the whole flavor: the partition holds its old sizes
  already) must fit the host's subset, checked like a create and under the
  same lock, so that a resize and a create never both take the last
  processors.
- Equal sizes cost nothing: no HMC request beyond what the call made anyway.
"""

from __future__ import annotations

import logging

import zhmcclient

from dpm_backend import errors
from dpm_backend import states
from dpm_backend.call import Call
from dpm_backend.host import Host
from dpm_backend.host import usage_of
from dpm_backend.validation import Flavor

LOG = logging.getLogger(__name__)


def converge(
    call: Call,
    host: Host,
    partition: zhmcclient.Partition,
    owned: dict[str, zhmcclient.Partition],
    flavor: Flavor,
) -> None:
    """Give ``partition`` the flavor's sizes if it has others (caller holds ``host.create_lock``).

    ``owned``: the host's partitions as just listed (``partition`` among
    them), whose sizes make up the usage the growth is checked against.
    """
    wanted = (flavor.vcpus, flavor.memory_mb)
    current = host.sizes.of(call, partition)
    if current == wanted:
        return
    name = partition.properties.get('name') or partition.name
    status = partition.properties.get('status', '')
    if status not in states.NOT_STARTED:
        raise errors.partition_running(name, status, current, wanted)
    used = usage_of(host.sizes.of(call, p) for p in owned.values())
    growth = (max(wanted[0] - current[0], 0), max(wanted[1] - current[1], 0))
    host.check_capacity(used, *growth, more=True)
    call.deadline.check(f'resize partition {name}')
    partition.update_properties(
        {
            'ifl-processors': flavor.vcpus,
            'initial-memory': flavor.memory_mb,
            'maximum-memory': flavor.memory_mb,
        }
    )
    host.sizes.record(partition.uri, *wanted)
    LOG.info(
        'Resized partition %s from %d processors, %d MiB to %d processors, %d MiB',
        name,
        *current,
        *wanted,
    )
