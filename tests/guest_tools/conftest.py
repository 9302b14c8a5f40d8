"""Fake guest root and shim commands for the DPM guest image tools tests.

The scripts under ``guest_tools/`` read ``/proc`` and ``/sys`` below
``DPM_ROOT_DIR`` and find ``modprobe``, ``udevadm``, ``ip`` and ``logger`` on
``PATH``. ``FakeRoot`` builds such a root in ``tmp_path`` and puts recording
shims first on ``PATH``; every shim call is appended to a calls file, one
line per call, fields separated by tabs.

The ``udevadm`` shim also plays the kernel: on ``udevadm settle`` it reads
the last value written to ``.../drivers/qeth/group`` and creates the grouped
qeth device (``sys/bus/ccwgroup/devices/0.0.xxxx`` with ``layer2``,
``portno`` and ``online`` set to 0), recording a ``kernel group <value>``
line. ``FakeRoot.bring_up_interfaces`` then plays the kernel once more,
creating a network interface for every online qeth device, as setting
``online`` does on a real system.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GUEST_TOOLS = REPO_ROOT / 'guest_tools'
AUTOCONFIGURE = GUEST_TOOLS / 'usr' / 'bin' / 'autoconfigure_networking.sh'
SETMAC = GUEST_TOOLS / 'usr' / 'bin' / 'setmac.sh'
SCRIPT_TIMEOUT = 60  # seconds for one script run

QETH_GROUP = 'sys/bus/ccwgroup/drivers/qeth/group'
CCWGROUP_DEVICES = 'sys/bus/ccwgroup/devices'
CCW_DEVICES = 'sys/bus/ccw/devices'
NET_CLASS = 'sys/class/net'

_RECORD = """\
{ printf '%s' "${0##*/}"; printf '\\t%s' "$@"; printf '\\n'; } >>"$DPM_TEST_CALLS"
"""

SHIMS = {
    'logger': _RECORD + 'exit "${DPM_TEST_LOGGER_RC:-0}"\n',
    'ip': _RECORD + 'exit "${DPM_TEST_IP_RC:-0}"\n',
    'modprobe': _RECORD
    + """\
[[ ${DPM_TEST_MODPROBE_RC:-0} == 0 ]] || exit "$DPM_TEST_MODPROBE_RC"
if [[ ${DPM_TEST_MODPROBE_LOADS:-1} == 1 ]]; then
    mkdir -p "$DPM_ROOT_DIR/sys/bus/ccwgroup/drivers/qeth"
    : >"$DPM_ROOT_DIR/sys/bus/ccwgroup/drivers/qeth/group"
fi
""",
    'udevadm': _RECORD
    + """\
[[ ${1:-} == settle && ${DPM_TEST_KERNEL_GROUPS:-1} == 1 ]] || exit 0
group="$DPM_ROOT_DIR/sys/bus/ccwgroup/drivers/qeth/group"
line=
IFS= read -r line <"$group" || true
first=${line%%,*}
[[ -n $first ]] || exit 0
device="$DPM_ROOT_DIR/sys/bus/ccwgroup/devices/$first"
[[ -e $device ]] && exit 0
mkdir -p "$device"
for attribute in layer2 portno online; do
    echo 0 >"$device/$attribute"
done
printf 'kernel\\tgroup\\t%s\\n' "$line" >>"$DPM_TEST_CALLS"
""",
}


def devno_plus(devno: str, offset: int) -> str:
    """Return the devno ``offset`` above ``devno``, 4 lower case hex digits."""
    return f'{int(devno, 16) + offset:04x}'


class FakeRoot:
    """A fake guest root directory plus recording shims for the scripts.

    Args:
        base: an empty directory (``tmp_path``) to build everything in.
        cmdline: the content of ``proc/cmdline`` (a newline is appended).
        devnos: devnos whose three ccw subchannels (devno, +1, +2) exist.
        qeth_loaded: whether the qeth driver's ``group`` attribute exists.
    """

    def __init__(
        self,
        base: Path,
        cmdline: str,
        devnos: list[str] = (),
        *,
        qeth_loaded: bool = True,
    ) -> None:
        self.base = base
        self.root = base / 'root'
        self.bin = base / 'shims'
        self.calls_file = base / 'calls'
        self.env_overrides: dict[str, str] = {}
        (self.root / 'proc').mkdir(parents=True)
        self.set_cmdline(cmdline)
        for directory in (CCWGROUP_DEVICES, CCW_DEVICES, NET_CLASS):
            (self.root / directory).mkdir(parents=True)
        if qeth_loaded:
            (self.root / QETH_GROUP).parent.mkdir(parents=True)
            (self.root / QETH_GROUP).write_text('')
        for devno in devnos:
            self.add_ccw_devices(devno)
        self.bin.mkdir()
        for name, body in SHIMS.items():
            shim = self.bin / name
            shim.write_text('#!/bin/bash\n' + body)
            shim.chmod(0o755)
        self.calls_file.write_text('')

    def set_cmdline(self, cmdline: str) -> None:
        (self.root / 'proc' / 'cmdline').write_text(cmdline + '\n')

    def add_ccw_devices(self, devno: str, count: int = 3) -> None:
        """Create the ccw subchannel devices devno .. devno+count-1."""
        for offset in range(count):
            (self.root / CCW_DEVICES / f'0.0.{devno_plus(devno, offset)}').mkdir(exist_ok=True)

    def add_qeth_device(self, busid: str, **attributes: str) -> Path:
        """Create an already grouped qeth device with the given attributes."""
        device = self.root / CCWGROUP_DEVICES / busid
        device.mkdir()
        for name, value in attributes.items():
            (device / name).write_text(f'{value}\n')
        return device

    def add_interface(self, busid: str, ifname: str) -> None:
        """Create network interface ``ifname`` for the qeth device ``busid``.

        Like the kernel: ``sys/class/net/<ifname>/device`` links to the qeth
        device and the qeth device's ``if_name`` names the interface.
        """
        device = self.root / CCWGROUP_DEVICES / busid
        device.mkdir(exist_ok=True)
        (device / 'if_name').write_text(f'{ifname}\n')
        net = self.root / NET_CLASS / ifname
        net.mkdir()
        (net / 'device').symlink_to(device)

    def qeth_device(self, busid: str) -> dict[str, str] | None:
        """Return the attributes of qeth device ``busid``, or None if absent."""
        device = self.root / CCWGROUP_DEVICES / busid
        if not device.is_dir():
            return None
        return {p.name: p.read_text().strip() for p in device.iterdir() if p.is_file()}

    def online_qeth_devices(self) -> list[str]:
        """Bus ids of the qeth devices whose ``online`` attribute is 1."""
        return sorted(
            busid
            for busid in os.listdir(self.root / CCWGROUP_DEVICES)
            if (self.qeth_device(busid) or {}).get('online') == '1'
        )

    def bring_up_interfaces(self) -> dict[str, str]:
        """Create an interface ``enc<devno>`` for every online qeth device
        that has none yet; return {busid: ifname} for the new ones."""
        created = {}
        for busid in self.online_qeth_devices():
            if (self.root / CCWGROUP_DEVICES / busid / 'if_name').exists():
                continue
            ifname = 'enc' + busid.rsplit('.', 1)[1]
            self.add_interface(busid, ifname)
            created[busid] = ifname
        return created

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=f'{self.bin}{os.pathsep}{env.get("PATH", "/usr/bin:/bin")}',
            DPM_ROOT_DIR=str(self.root),
            DPM_TEST_CALLS=str(self.calls_file),
        )
        env.update(self.env_overrides)
        env.update(overrides)
        return env

    def run(
        self, script: Path, *args: str, prefix: tuple[str, ...] = (), **env: str
    ) -> subprocess.CompletedProcess:
        """Run ``prefix... bash script args...`` on this root; env overrides as kwargs."""
        return subprocess.run(
            [*prefix, 'bash', str(script), *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )

    def autoconfigure(self, **env: str) -> subprocess.CompletedProcess:
        return self.run(AUTOCONFIGURE, **env)

    def setmac(
        self, *args: str, prefix: tuple[str, ...] = (), **env: str
    ) -> subprocess.CompletedProcess:
        return self.run(SETMAC, *args, prefix=prefix, **env)

    def calls(self, name: str | None = None) -> list[list[str]]:
        """Recorded shim calls as [command, arg, ...], optionally of one command."""
        records = [line.split('\t') for line in self.calls_file.read_text().splitlines() if line]
        return [r for r in records if name is None or r[0] == name]

    def mac_calls(self) -> dict[str, str]:
        """{ifname: mac} from recorded ``ip link set dev <if> address <mac>``."""
        macs = {}
        for record in self.calls('ip'):
            if record[1:4] == ['link', 'set', 'dev'] and record[5:6] == ['address']:
                macs[record[4]] = record[6]
        return macs


class GuestToolsError(AssertionError):
    """A guest tools script exited non-zero during ``run_guest_tools``."""


def _run_guest_tools(
    tmp_path: Path, cmdline: str, devnos: list[str], *, check: bool = True
) -> dict[str, dict[str, int | str | None]]:
    """Boot the guest tools once on a fake root and report what they set up.

    Builds a fake root in ``tmp_path`` whose ``/proc/cmdline`` is ``cmdline``
    and whose sysfs has the three ccw subchannels (devno, devno+1, devno+2)
    of every devno in ``devnos`` (any case) and a loaded qeth driver. Runs
    ``autoconfigure_networking.sh``, then, as udev would on the ``add`` event
    of each new interface, ``setmac.sh <bus-id> <ifname>`` for every qeth
    device that came online.

    Args:
        tmp_path: an empty directory to build the fake root in.
        cmdline: the whole kernel cmdline, e.g. the partition's
            ``boot-os-specific-parameters`` as the backend builds it.
        devnos: the NICs' device numbers present in the fake sysfs.
        check: raise ``GuestToolsError``, an ``AssertionError``, with the
            script's stderr if a script exits non-zero; pass False to get
            the result anyway.

    Returns:
        ``{devno: {"port": int, "mac": str | None}}`` with one entry per
        qeth device configured online; devno in lower case (``"800a"``),
        port read back from the device's ``portno`` attribute, mac as
        passed to ``ip link set dev <if> address`` (``"0a:1b:2c:3d:4e:5f"``)
        or None when setmac.sh left the MAC alone.

    Raises:
        GuestToolsError: a script exited non-zero and ``check`` is true.
    """
    fake = FakeRoot(tmp_path, cmdline, [d.lower() for d in devnos])
    result = fake.autoconfigure()
    if check and result.returncode != 0:
        raise GuestToolsError(
            f'autoconfigure_networking.sh exited {result.returncode}: {result.stderr}'
        )
    for busid, ifname in fake.bring_up_interfaces().items():
        result = fake.setmac(busid, ifname)
        if check and result.returncode != 0:
            raise GuestToolsError(f'setmac.sh {busid} exited {result.returncode}: {result.stderr}')
    macs = fake.mac_calls()
    configured = {}
    for busid in fake.online_qeth_devices():
        attributes = fake.qeth_device(busid)
        configured[busid.rsplit('.', 1)[1]] = {
            'port': int(attributes['portno']),
            'mac': macs.get(attributes['if_name']),
        }
    return configured


@pytest.fixture
def run_guest_tools() -> Callable[..., dict[str, dict[str, int | str | None]]]:
    """The callable ``run_guest_tools(tmp_path, cmdline, devnos, *, check=True)``.

    Only tests under ``tests/guest_tools/`` see this fixture. See
    ``_run_guest_tools`` for what it does and returns, e.g.::

        def test_backend_cmdline_configures_nics(tmp_path, run_guest_tools):
            got = run_guest_tools(tmp_path, "8001,0,0a1b2c3d4e5f; 800A,1;", ["8001", "800A"])
            assert got == {"8001": {"port": 0, "mac": "0a:1b:2c:3d:4e:5f"},
                           "800a": {"port": 1, "mac": None}}
    """
    return _run_guest_tools


@pytest.fixture
def fake_root_factory(tmp_path: Path) -> Callable[..., FakeRoot]:
    """``fake_root_factory(cmdline, devnos=(), qeth_loaded=True) -> FakeRoot``."""

    def make(cmdline: str, devnos: list[str] = (), **kwargs) -> FakeRoot:
        return FakeRoot(tmp_path, cmdline, list(devnos), **kwargs)

    return make
