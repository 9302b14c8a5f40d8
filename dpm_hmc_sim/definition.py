"""HMC definitions: the shipped ones by HMC version, or any file in zhmcclient's format.

A definition is what ``zhmcclient.Client.to_hmc_dict()`` writes and
``zhmcclient.mock.FakedSession.from_hmc_dict()`` reads. Its console's
``version`` and its ``api_version`` choose the profile (profiles.py).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from zhmcclient.mock import FakedHmc
from zhmcclient.mock import FakedSession

from dpm_hmc_sim.profiles import ApiVersion
from dpm_hmc_sim.profiles import Profile
from dpm_hmc_sim.profiles import profile_for

DEFINITIONS_DIR = Path(__file__).parent / 'definitions'


class DefinitionError(ValueError):
    """A definition the simulator cannot serve."""


def shipped() -> dict[str, Path]:
    """The shipped definitions by HMC version ('2.15.0' -> .../hmc-2.15.0.yaml)."""
    return {
        path.stem.removeprefix('hmc-'): path for path in sorted(DEFINITIONS_DIR.glob('hmc-*.yaml'))
    }


def resolve(definition: str | Path) -> Path:
    """A shipped HMC version's file, or the path itself."""
    path = shipped().get(str(definition))
    return path if path is not None else Path(definition)


@dataclasses.dataclass(frozen=True)
class Definition:
    """A checked definition and the profile it selects."""

    data: dict[str, Any]
    profile: Profile
    api_version: ApiVersion
    source: str

    @property
    def hmc_version(self) -> str:
        return self.profile.hmc_version

    @property
    def api_text(self) -> str:
        return '.'.join(map(str, self.api_version))

    def faked_hmc(self) -> FakedHmc:
        """A new FakedHmc with the definition's resources (zhmcclient validates the schema)."""
        try:
            return FakedSession.from_hmc_dict(copy.deepcopy(self.data), self.source).hmc
        except Exception as exc:
            # zhmcclient's schema errors span many lines: the first says what is wrong.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DefinitionError(f'{self.source}: not a valid HMC definition: {first}') from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line message as one line: where, and what is wrong."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f'line {mark.line + 1}, column {mark.column + 1}: {exc.problem}'
    return ' '.join(str(exc).split())


def load(definition: str | Path | Mapping[str, Any]) -> Definition:
    """Read and check a definition: an HMC version of a shipped one, a YAML path, or a dict."""
    if isinstance(definition, Mapping):
        data, source = copy.deepcopy(dict(definition)), '<dict>'
    else:
        path = resolve(definition)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding='utf-8'))
        except OSError as exc:
            raise DefinitionError(f'{source}: {exc.strerror}') from exc
        except yaml.YAMLError as exc:
            raise DefinitionError(f'{source}: not valid YAML: {_yaml_problem(exc)}') from exc
    try:
        hmc = data['hmc_definition']
        console = hmc['consoles'][0]['properties']
        hmc_version, api_version = str(console['version']), str(hmc['api_version'])
    except (KeyError, IndexError, TypeError) as exc:
        raise DefinitionError(
            f'{source}: needs hmc_definition.api_version and consoles[0].properties.version'
        ) from exc
    try:
        profile, api = profile_for(hmc_version, api_version)
    except ValueError as exc:
        raise DefinitionError(f'{source}: {exc}') from exc
    checked = Definition(data, profile, api, source)
    checked.faked_hmc()  # the schema and the resources load
    return checked
