"""HMC versions the simulator can be, and the query parameters each one accepts.

A definition's console ``version`` selects the profile; its ``api_version`` must
lie in that HMC version's range. Sources (``zc`` = python-zhmcclient 1.26.0):

- API ranges of 2.14.0, 2.14.1 and 2.15.0: zc ``docs/intro.rst`` (table of HMC
  versions, ~95-99). HMC 2.14.1 manages z196 to z14 (and z14-ZR1); 2.15.0 adds z15.
- HMC 2.16.0: zc's table stops at 2.15.0. API major 4 is the one after 2.15.0's
  3.x; "API features" came with "HMC version 2.16.0 and HMC API version 4.10" (zc
  ``docs/intro.rst`` ~517); zc ``_partition.py`` ``PartitionManager.list`` says
  ``additional-properties`` "requires HMC 2.16.0 or higher". Hence 4.1 - 4.10;
  the minor versions in between are UNVERIFIED.
"""

from __future__ import annotations

import dataclasses
import re

ApiVersion = tuple[int, int]

# Answer of an HMC to a query parameter it does not know: HTTP 400, reason 1, with
# the text an HMC 2.15 returned (zhmc-prometheus-exporter issue #823).
QUERY_PARM_REASON = 1
QUERY_PARM_MESSAGE = 'One or more of the provided query parms are inappropriate for this provider'


def parse_version(text: str) -> tuple[int, ...]:
    """'2.15.0' -> (2, 15, 0); '4.10' -> (4, 10)."""
    if not re.fullmatch(r'\d+(\.\d+)+', text):
        raise ValueError(f'not a version: {text!r}')
    return tuple(int(part) for part in text.split('.'))


@dataclasses.dataclass(frozen=True)
class Profile:
    """One HMC version: the API versions it speaks."""

    hmc_version: str
    api_min: ApiVersion
    api_max: ApiVersion

    def check_api(self, api_version: str) -> ApiVersion:
        """The definition's API version, if this HMC version speaks it."""
        parts = parse_version(api_version)
        api = (parts[0], parts[1]) if len(parts) == 2 else None
        if api is None or not self.api_min <= api <= self.api_max:
            low, high = '.'.join(map(str, self.api_min)), '.'.join(map(str, self.api_max))
            raise ValueError(
                f'HMC {self.hmc_version} speaks API {low} to {high}, not {api_version}'
            )
        return api


PROFILES: dict[str, Profile] = {
    # zc docs/intro.rst ~97: 2.14.0 -> API 2.20 - 2.25
    '2.14.0': Profile('2.14.0', (2, 20), (2, 25)),
    # zc docs/intro.rst ~98: 2.14.1 -> API 2.35 - 2.40
    '2.14.1': Profile('2.14.1', (2, 35), (2, 40)),
    # zc docs/intro.rst ~99: 2.15.0 -> API 3.1 - 3.4
    '2.15.0': Profile('2.15.0', (3, 1), (3, 4)),
    # see the module docstring: 4.1 (first 2.16.0 API) - 4.10 (API features)
    '2.16.0': Profile('2.16.0', (4, 1), (4, 10)),
}


def profile_for(hmc_version: str, api_version: str) -> tuple[Profile, ApiVersion]:
    """The profile of a definition's HMC version, checked against its API version."""
    try:
        profile = PROFILES[hmc_version]
    except KeyError:
        known = ', '.join(PROFILES)
        raise ValueError(f'unknown HMC version {hmc_version!r} (known: {known})') from None
    return profile, profile.check_api(api_version)


# First HMC API version that accepts a query parameter on an operation. The key
# names the operation by the zhmcclient mock handler class that serves it and the
# parameter; every other parameter the mock accepts is left to the mock.
ADDITIONAL_PROPERTIES = 'additional-properties'
PROPERTIES = 'properties'
LIST_DEFAULT_SINCE: ApiVersion = (4, 1)
QUERY_PARM_SINCE: dict[tuple[str, str], ApiVersion] = {
    # List Partitions of a CPC: "requires HMC 2.16.0 or higher" (zc _partition.py ~161).
    ('PartitionsHandler', ADDITIONAL_PROPERTIES): (4, 1),
    # List Virtual Switches of a CPC: the same (zc _virtual_switch.py ~154).
    ('VirtualSwitchesHandler', ADDITIONAL_PROPERTIES): (4, 1),
    # List Adapters of a CPC: the same (zc _adapter.py ~170).
    ('AdaptersHandler', ADDITIONAL_PROPERTIES): (4, 1),
    # List Permitted Partitions: needs the API features of HMC 2.16 with API 4.10
    # (zc _console.py ~789, docs/intro.rst ~517).
    ('ConsoleListPermittedPartitionsHandler', ADDITIONAL_PROPERTIES): (4, 10),
    # List Permitted Logical Partitions: "handled by the HMC starting with HMC API
    # version 4.10" (zc _console.py ~945).
    ('ConsoleListPermittedLparsHandler', ADDITIONAL_PROPERTIES): (4, 10),
    # List Storage Volumes of a Storage Group: "requires HMC 2.17.0 or higher" (zc
    # _storage_volume.py StorageVolumeManager.list): newer than every profile here.
    ('StorageVolumesHandler', ADDITIONAL_PROPERTIES): (5, 0),
    # List SSO Server Definitions: "requires HMC 2.17.0 or higher" (zc
    # _sso_server_definition.py ~143): newer than every profile here.
    ('SSOServerDefinitionsHandler', ADDITIONAL_PROPERTIES): (5, 0),
}
# Any other list the mock accepts additional-properties on: HMC 2.16.0 (API 4.1).
# properties= on every Get <object> Properties: zc _resource.py ~327-359 says older
# HMCs may ignore it or answer 400,1 without naming versions; the simulator takes
# the stricter reading and refuses it below API 4.1, as for additional-properties.
GET_PROPERTIES_SINCE: ApiVersion = (4, 1)


def query_parm_since(handler_name: str, parm: str, *, is_get_properties: bool) -> ApiVersion | None:
    """First API version accepting ``parm`` on the operation, or None if not ruled here."""
    if parm == PROPERTIES and is_get_properties:
        return GET_PROPERTIES_SINCE
    if parm == ADDITIONAL_PROPERTIES:
        return QUERY_PARM_SINCE.get((handler_name, parm), LIST_DEFAULT_SINCE)
    return None
