"""What the HMC's Web Services API version allows, and the reads that depend on it.

The backend reads the HMC's version once (``Query API Version``, no logon) and
asks a :class:`Dialect` how to read; operations never compare versions.

Sources for each rule (``zc`` = python-zhmcclient 1.26.0):

- ``additional-properties`` on *List Partitions of a CPC* and *List Virtual
  Switches of a CPC* "requires HMC 2.16.0 or higher" (zc ``_partition.py``
  ``PartitionManager.list``, ``_virtual_switch.py`` ``VirtualSwitchManager.list``);
  HMC 2.16.0 speaks API 4.1 and later. An HMC 2.15 answers ``400, reason 1``
  (zhmc-prometheus-exporter issue #823); IBM's Ansible module drops the
  parameter below 2.16 (zhmc-ansible-modules ``zhmc_partition_list.py``).
- Without it, List Partitions returns ``name``, ``object-uri``, ``status`` and
  ``type`` (IBM Docs, "List Partitions of a CPC"): the status comes free on
  every version.
- ``properties`` on *Get ... Properties*: zhmcclient notes that older HMCs
  ignore it or answer ``400, reason 1`` (zc ``_resource.py``
  ``pull_properties``) without naming versions. The safe choice: use it only
  where ``additional-properties`` exists (API 4.1), and read whole objects
  (one GET, no query parameter) below that.
"""

from __future__ import annotations

import dataclasses

import zhmcclient

# API version of HMC 2.16.0, the first with additional-properties on lists.
LIST_ADDITIONAL_PROPERTIES_API = (4, 1)
# The stricter reading of zhmcclient's note: property filters on GET from the same version.
GET_PROPERTY_FILTER_API = (4, 1)
# What List Partitions of a CPC returns on every HMC version.
PARTITION_LIST_DEFAULTS = frozenset({'name', 'object-uri', 'status', 'type'})


@dataclasses.dataclass(frozen=True)
class Dialect:
    """The requests one HMC understands, from its ``Query API Version`` answer."""

    hmc_version: str
    api_version: tuple[int, int]

    @classmethod
    def of(cls, version_info: dict) -> Dialect:
        return cls(
            hmc_version=str(version_info.get('hmc-version', '')),
            api_version=(
                int(version_info.get('api-major-version', 0)),
                int(version_info.get('api-minor-version', 0)),
            ),
        )

    def __str__(self) -> str:
        major, minor = self.api_version
        return f'{self.hmc_version} (API {major}.{minor})'

    @property
    def lists_additional_properties(self) -> bool:
        return self.api_version >= LIST_ADDITIONAL_PROPERTIES_API

    @property
    def filters_get_properties(self) -> bool:
        return self.api_version >= GET_PROPERTY_FILTER_API

    def list_partitions(
        self,
        cpc: zhmcclient.Cpc,
        name_filter: str | list[str] | None = None,
        properties: tuple[str, ...] = (),
    ) -> list[zhmcclient.Partition]:
        """One List Partitions of the CPC.

        A list of name filters matches any of them (zhmcclient sends each as
        a ``name`` query parameter; the HMC ORs them). Properties beyond the
        list's defaults come with it where the HMC supports
        ``additional-properties``; elsewhere the caller reads them
        (:meth:`complete`), or knows them already.
        """
        extra = [name for name in properties if name not in PARTITION_LIST_DEFAULTS]
        filter_args = {'name': name_filter} if name_filter is not None else None
        if extra and self.lists_additional_properties:
            return cpc.partitions.list(filter_args=filter_args, additional_properties=extra)
        return cpc.partitions.list(filter_args=filter_args)

    def complete(self, resource: zhmcclient.BaseResource, properties: tuple[str, ...]) -> None:
        """Make ``properties`` present locally: no request if they are, else one GET."""
        missing = [name for name in properties if name not in resource.properties]
        if not missing:
            return
        if self.filters_get_properties and resource.manager.supports_properties:
            resource.pull_properties(missing)
        else:
            resource.pull_full_properties()

    def virtual_switch_ports(self, cpc: zhmcclient.Cpc, object_id: str) -> dict[str, int]:
        """Adapter ports of the CPC's virtual switches, ``object_id``'s among them if it has one.

        From API 4.1 one List Virtual Switches with ``additional-properties``
        answers for every switch. Below, the list's default properties have no
        port, so the one switch is read (Get Virtual Switch Properties, one
        request; ``parent`` tells its CPC): listing first would only add a
        request.
        """
        if self.lists_additional_properties:
            return {
                vswitch.uri.rsplit('/', 1)[-1]: int(vswitch.properties['port'])
                for vswitch in cpc.virtual_switches.list(additional_properties=['port'])
                if vswitch.properties.get('port') is not None
            }
        vswitch = cpc.virtual_switches.resource_object(object_id)
        try:
            vswitch.pull_full_properties()
        except zhmcclient.CeasedExistence:  # zhmcclient's form of 404 on a GET
            return {}
        props = vswitch.properties
        if props.get('parent') != cpc.uri or props.get('port') is None:
            return {}
        return {object_id: int(props['port'])}
