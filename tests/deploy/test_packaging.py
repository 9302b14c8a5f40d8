"""The wheel carries every package of the project (an installed backend imports them all)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_python_package_of_the_project_is_in_the_wheel():
    listed = set(
        tomllib.loads((REPO / 'pyproject.toml').read_text())['tool']['setuptools']['packages']
    )
    found = {
        '.'.join(init.parent.relative_to(REPO).parts)
        for top in ('dpm_api', 'dpm_backend', 'dpm_frontend', 'dpm_hmc_sim')
        for init in (REPO / top).rglob('__init__.py')
    }
    assert found <= listed, sorted(found - listed)
