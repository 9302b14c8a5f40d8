"""How an instance gets its FC storage: one seam, two paths chosen by the CPC.

- :mod:`~dpm_backend.storage.vhba`: CPCs without the ``dpm-storage-management``
  firmware feature (z13): a vHBA per configured adapter port in the
  partition, boot through the first one (``boot-device: storage-adapter``).
- :mod:`~dpm_backend.storage.groups`: CPCs with it (z14 and later): no HBAs;
  one FCP storage group per instance whose WWPNs are the connector's, a
  storage volume per Cinder volume, boot from the boot volume
  (``boot-device: storage-volume``).

Instance logic (``dpm_backend.instance``) calls the path; it never asks which
one it has.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import zhmcclient

from dpm_backend.call import Call
from dpm_backend.host import CpcFacts
from dpm_backend.host import Host
from dpm_backend.storage.undo import Undo
from dpm_backend.validation import BootVolume
from dpm_backend.validation import SpawnSpec


@dataclasses.dataclass(frozen=True)
class Released:
    """What release() found (for remove()) and the initiators' WWPNs it read."""

    found: object = None
    wwpns: list[str] = dataclasses.field(default_factory=list)


class StoragePath(Protocol):
    """What instance logic needs from a storage path."""

    # How operators see the path (check-config, logs): vhba or storage-groups.
    name: str

    def check(self, spec: SpawnSpec) -> None:
        """INVALID_ARGUMENT for what the request lacks on this path (before any change)."""

    def prepare(
        self, call: Call, host: Host, partition: zhmcclient.Partition, undo: Undo
    ) -> list[str]:
        """Make the instance's initiators exist; their WWPNs (the volume connector)."""

    def connector(self, call: Call, host: Host, partition: zhmcclient.Partition) -> list[str]:
        """The WWPNs of the instance's initiators, as they are."""

    def device_numbers(
        self, call: Call, host: Host, partition: zhmcclient.Partition, undo: Undo
    ) -> set[int]:
        """Device numbers the storage path takes in the partition (its initiators made first)."""

    def boot(
        self, call: Call, host: Host, partition: zhmcclient.Partition, spec: SpawnSpec, undo: Undo
    ) -> dict[str, str]:
        """Make the boot and data volumes reachable; the partition's boot properties."""

    def attach_volume(
        self, call: Call, host: Host, partition: zhmcclient.Partition, volume: BootVolume
    ) -> None:
        """Make a data volume reachable by the running instance."""

    def detach_volume(self, call: Call, host: Host, instance_uuid: str, volume_id: str) -> bool:
        """Take a data volume away; False if it was not there."""

    def release(
        self,
        call: Call,
        host: Host,
        instance_uuid: str,
        partition: zhmcclient.Partition | None,
        read_wwpns: bool,
    ) -> Released:
        """Before the (stopped) partition is deleted: what must leave it first.

        Returns what it found, for remove() (no second look-up), and, if
        ``read_wwpns``, the WWPNs of the initiators about to go (read before
        anything is detached or deleted: afterwards the HMC no longer knows them).
        """

    def remove(self, call: Call, host: Host, instance_uuid: str, found: object = None) -> bool:
        """After the partition is deleted: what outlives it; True if something was removed."""


def for_cpc(facts: CpcFacts) -> StoragePath:
    """The storage path of the CPC, by its firmware feature (never by trial)."""
    from dpm_backend.storage import groups
    from dpm_backend.storage import vhba

    return groups.PATH if facts.storage_management else vhba.PATH
