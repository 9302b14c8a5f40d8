"""A partition's NICs or vHBAs (element objects), with their properties."""

from __future__ import annotations

from dpm_backend.call import Call


def read(call: Call, manager, uri_property: str) -> list:
    """The partition's NICs or vHBAs with their properties: one GET each.

    The partition's list of them was read with the partition itself
    (``instance.DEVICE_LIST_PROPERTIES``, or recorded when this backend
    created it). NICs and HBAs take no property filter (zhmcclient reads them
    whole).
    """
    partition = manager.partition
    call.dialect.complete(partition, (uri_property,))
    found = []
    for uri in partition.properties[uri_property] or []:
        element = manager.resource_object(uri)
        element.pull_full_properties()
        found.append(element)
    return found
