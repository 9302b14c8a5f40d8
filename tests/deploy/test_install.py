"""The backend host as the README installs it: make install, the unit, the service user.

A scratch directory stands for / of a Debian 12 backend host. ``make install``
fills <root>/opt/dpm-backend (a real venv from PyPI: the slow part, once per
module); ``systemd-analyze verify --root=<root>`` checks the shipped unit
against it; then the installed backend runs as the service user, with the
directories, modes, credentials and environment systemd would give
dpm-backend@hmc1 and dpm-backend@hmc2, against the HMC simulator. Users and
groups are created in <root>/etc (useradd --prefix), so the machine's own user
database is untouched; where the README names the user or group, this test
passes their numeric ids (install -o/-g would look the names up on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dpmtest import DEFAULT_PROFILE
from dpmtest import PASSWORD
from dpmtest import USERID
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dpm_hmc_sim.testing import served

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / 'deploy' / 'dpm-backend@.service'
README = REPO / 'README.md'
SHIPPED_PREFIX = '/opt/dpm-backend'
USER = 'dpm-backend'
ANALYZE = shutil.which('systemd-analyze')
SETPRIV = shutil.which('setpriv')
USERADD = shutil.which('useradd')
# python3.11 on Debian 12; another one first in PATH (pyenv under /root) may be
# out of the service user's reach.
DEBIAN_PYTHON = '/usr/bin/python3.11'
SERVING = health_pb2.HealthCheckResponse.SERVING
# What systemd gives a service with User=, besides the variables of its unit.
SYSTEMD_ENV = {
    'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin',
    'LANG': 'C.UTF-8',
    'HOME': '/nonexistent',
    'USER': USER,
    'LOGNAME': USER,
    'SHELL': '/usr/sbin/nologin',
}

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason='systemd-analyze is not installed (Debian package systemd)'
)


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault('timeout', 60)
    result = subprocess.run(
        [str(word) for word in command], capture_output=True, text=True, check=False, **kwargs
    )
    assert result.returncode == 0, f'{command}: {result.stdout}{result.stderr}'
    return result


@pytest.fixture(scope='module')
def root() -> Iterator[Path]:
    """A scratch / after `make install PREFIX=<root>/opt/dpm-backend`."""
    scratch = Path(tempfile.mkdtemp(prefix='dpm-install-'))
    try:
        scratch.chmod(0o755)  # the service user walks down to /opt and /etc
        python = DEBIAN_PYTHON if os.path.exists(DEBIAN_PYTHON) else 'python3.11'
        started = time.monotonic()
        run(
            'make',
            'install',
            f'PREFIX={scratch}{SHIPPED_PREFIX}',
            f'PYTHON={python}',
            cwd=REPO,
            timeout=900,
        )
        print(f'make install: {time.monotonic() - started:.0f} s')
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split('#')[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return pins


def test_requirements_pin_the_runtime_closure_at_the_versions_of_requirements_dev():
    runtime = requirement_pins(REPO / 'requirements.txt')
    dev = requirement_pins(REPO / 'requirements-dev.txt')
    assert {name: dev.get(name) for name in runtime} == runtime
    assert all(pin.startswith('==') for pin in runtime.values())
    declared = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['dependencies']
    assert {canonicalize_name(Requirement(d).name) for d in declared} <= set(runtime)
    assert not {'nova', 'pytest', 'grpcio-tools', 'hypothesis'} & set(runtime)


def test_make_install_gives_a_venv_with_the_backend_unit_configs_and_readme(root):
    prefix = root / SHIPPED_PREFIX.lstrip('/')
    assert os.access(prefix / 'bin' / 'dpm-backend', os.X_OK)
    share = prefix / 'share' / 'dpm-backend'
    for name in ('dpm-backend.conf.sample', 'dpm-backend-example.conf'):
        assert (share / name).read_text() == (REPO / 'deploy' / name).read_text()
    assert (prefix / 'share/doc/dpm-backend/README.md').read_text() == README.read_text()
    # The installed unit names the prefix it was installed to.
    installed = (share / UNIT.name).read_text()
    assert installed == UNIT.read_text().replace(f'{SHIPPED_PREFIX}/', f'{prefix}/')
    for path in (share / UNIT.name, share / 'dpm-backend.conf.sample'):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # The pinned closure is complete, and nothing else came along.
    run(prefix / 'bin' / 'python', '-m', 'pip', 'check', '--disable-pip-version-check')
    frozen = run(
        prefix / 'bin' / 'python', '-m', 'pip', 'freeze', '--disable-pip-version-check'
    ).stdout
    names = {canonicalize_name(Requirement(line).name) for line in frozen.splitlines()}
    runtime = requirement_pins(REPO / 'requirements.txt')
    assert names == set(runtime) | {'nova-dpm-grpc'}


@needs_analyze
def test_the_shipped_unit_verifies_against_what_make_install_put_in_place(root, tmp_path):
    units = root / 'etc' / 'systemd' / 'system'
    # The README's step, from a default install (whose unit is the shipped one).
    run('install', '-D', '-m', '0644', UNIT, units / UNIT.name)
    # The scratch root is a Debian host with systemd: verify loads the units
    # every service depends on (sysinit.target, ...) from <root>/usr/lib.
    systemd_units = Path('/usr/lib/systemd/system')
    shutil.copytree(systemd_units, root / 'usr/lib/systemd/system', symlinks=True)
    instances = ('dpm-backend@hmc1.service', 'dpm-backend@hmc2.service')
    verified = run(ANALYZE, 'verify', f'--root={root}', *instances)
    assert verified.stderr == ''
    # Without the install, the same check fails on the missing ExecStart=.
    empty = tmp_path / 'empty-root'
    shutil.copytree(systemd_units, empty / 'usr/lib/systemd/system', symlinks=True)
    run('install', '-D', '-m', '0644', UNIT, empty / 'etc/systemd/system' / UNIT.name)
    failed = subprocess.run(
        [ANALYZE, 'verify', f'--root={empty}', instances[0]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode != 0
    assert f'{SHIPPED_PREFIX}/bin/dpm-backend is not executable' in failed.stderr
    # The unit make install wrote for its (non-default) prefix verifies on this machine.
    copy = tmp_path / instances[0]
    shutil.copy(root / SHIPPED_PREFIX.lstrip('/') / 'share/dpm-backend' / UNIT.name, copy)
    assert run(ANALYZE, 'verify', copy).stderr == ''


def test_the_readme_documents_the_steps_this_test_takes():
    text = README.read_text()
    section = text[text.index('### With systemd') :]
    section = section[: section.index('\n## ')]
    for step in (
        'make install',
        'useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin '
        'dpm-backend',
        'install -d -m 0750 -o root -g dpm-backend /etc/dpm-backend',
        'install -m 0640 -o root -g dpm-backend my-hmc1.conf /etc/dpm-backend/hmc1.conf',
        'install -m 0600 -o root -g root /dev/stdin /etc/dpm-backend/hmc1.password',
        'install -m 0644 /opt/dpm-backend/share/dpm-backend/dpm-backend@.service '
        '/etc/systemd/system/',
        'systemctl enable --now dpm-backend@hmc2.service',
        'unix:/run/dpm-backend/hmc2/dpm-backend.sock',
    ):
        assert step in section, step


# --- the backend as systemd runs it --------------------------------------------------


def service_user(root: Path) -> tuple[int, int]:
    """useradd as the README has it, into <root>/etc; the user's (uid, gid)."""
    etc = root / 'etc'
    etc.mkdir(exist_ok=True)
    # Seeded with this machine's accounts so that the new ids are free here too.
    for name in ('passwd', 'group', 'login.defs'):
        if Path('/etc', name).exists() and not (etc / name).exists():
            shutil.copy(Path('/etc', name), etc / name)
    run(
        USERADD, '--prefix', root, '--system', '--user-group',
        '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', USER,
    )  # fmt: skip
    for line in (etc / 'passwd').read_text().splitlines():
        name, _, uid, gid, *_ = line.split(':')
        if name == USER:
            return int(uid), int(gid)
    raise AssertionError(f'useradd left no {USER} in {etc}/passwd')


def as_user(uid: int, gid: int) -> list[str]:
    assert SETPRIV is not None
    return [SETPRIV, f'--reuid={uid}', f'--regid={gid}', '--clear-groups']


def instance_config(root: Path, example: Path, hmc) -> str:
    """The shipped example, pointed at the simulator (and at <root> for its CA).

    socket_group is left out: the scratch root's groups are unknown to this
    machine's group database, where the backend looks the name up.
    """
    text = example.read_text()
    text = text.replace(
        'hosts = hmc1.example.com,hmc2.example.com', f'hosts = {hmc.host}\nport = {hmc.port}'
    )
    text = text.replace('/etc/dpm-backend/hmc-ca.pem', f'{root}/etc/dpm-backend/hmc-ca.pem')
    assert 'socket_group = nova\n' in text
    return text.replace('socket_group = nova\n', '')


class Instance:
    """dpm-backend@<hmc>.service, started as systemd would start it."""

    def __init__(self, root: Path, hmc: str, uid: int, gid: int, logs: Path) -> None:
        self.root, self.hmc = root, hmc
        unit = f'dpm-backend@{hmc}.service'
        # RuntimeDirectory=dpm-backend/%i: parents root 0755, the instance's own
        # directory the service user's (RuntimeDirectoryMode=0755).
        self.runtime = root / 'run' / 'dpm-backend' / hmc
        self.runtime.mkdir(parents=True, mode=0o755)
        os.chown(self.runtime, uid, gid)
        # LoadCredential=hmc-password:/etc/dpm-backend/%i.password: a copy only
        # the service user reads (what systemd falls back to without ACLs).
        credentials = root / 'run' / 'credentials' / unit
        credentials.mkdir(parents=True)
        secret = credentials / 'hmc-password'
        shutil.copy(root / 'etc' / 'dpm-backend' / f'{hmc}.password', secret)
        for path, mode in ((secret, 0o400), (credentials, 0o500)):
            os.chown(path, uid, gid)
            path.chmod(mode)
        # Type=notify: systemd's notify socket, writable by every service.
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = root / 'run' / 'systemd' / f'notify-{hmc}'
        notify_path.parent.mkdir(parents=True, exist_ok=True)
        self.notify.bind(str(notify_path))
        notify_path.chmod(0o777)
        self.notify.settimeout(60)
        env = {
            **SYSTEMD_ENV,
            'RUNTIME_DIRECTORY': str(self.runtime),
            'CREDENTIALS_DIRECTORY': str(credentials),
            'NOTIFY_SOCKET': str(notify_path),
        }
        # ExecStart=, with User=, Group= and NoNewPrivileges=yes.
        command = [*as_user(uid, gid), '--no-new-privs', '--']
        command += [str(root / SHIPPED_PREFIX.lstrip('/') / 'bin' / 'dpm-backend')]
        command += ['--config-file', str(root / 'etc' / 'dpm-backend' / f'{hmc}.conf')]
        self.log = logs / f'{hmc}.log'
        with self.log.open('w') as log:
            self.process = subprocess.Popen(
                command,
                cwd='/',
                env=env,
                umask=0o077,  # UMask=0077
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def socket_path(self) -> Path:
        return self.runtime / 'dpm-backend.sock'

    def notified(self) -> str:
        try:
            return self.notify.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f'no notification from {self.hmc}: {self.output()}') from None

    def output(self) -> str:
        return self.log.read_text()

    def health(self, service: str = '') -> int:
        with grpc.insecure_channel(f'unix:{self.socket_path}') as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=service)
            return stub.Check(request, timeout=10).status

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.notify.close()


def wait_for_serving(instance: Instance, service: str) -> None:
    end = time.monotonic() + 30
    while instance.health(service) != SERVING:
        assert time.monotonic() < end, instance.output()
        time.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason='creates a user and runs as it: needs root')
@pytest.mark.skipif(
    SETPRIV is None or USERADD is None,
    reason='needs setpriv (util-linux) and useradd (passwd)',
)
def test_installed_backends_for_two_hmcs_serve_as_the_service_user_and_stop_on_sigterm(
    root, tmp_path
):
    uid, gid = service_user(root)
    etc = root / 'etc' / 'dpm-backend'
    prefix = root / SHIPPED_PREFIX.lstrip('/')
    run('install', '-d', '-m', '0750', '-o', '0', '-g', str(gid), etc)
    with served(
        DEFAULT_PROFILE, userid=USERID, password=PASSWORD, cert_dir=tmp_path / 'sim'
    ) as hmc:
        run('install', '-m', '0644', hmc.ca_file, etc / 'hmc-ca.pem')
        for name in ('hmc1', 'hmc2'):
            draft = tmp_path / f'my-{name}.conf'
            draft.write_text(
                instance_config(root, prefix / 'share/dpm-backend/dpm-backend-example.conf', hmc)
            )
            run('install', '-m', '0640', '-o', '0', '-g', str(gid), draft, etc / f'{name}.conf')
            run(
                'install', '-m', '0600', '-o', '0', '-g', '0', '/dev/stdin',
                etc / f'{name}.password', input=PASSWORD + '\n',
            )  # fmt: skip
        # Only root and the service user's group read the config; the password only root.
        nobody = ['--reuid=65534', '--regid=65534', '--clear-groups']
        denied = subprocess.run(
            [SETPRIV, *nobody, 'cat', etc / 'hmc1.conf'], capture_output=True, check=False
        )
        assert denied.returncode != 0 and b'Permission denied' in denied.stderr
        denied = subprocess.run(
            [*as_user(uid, gid), 'cat', etc / 'hmc1.password'], capture_output=True, check=False
        )
        assert denied.returncode != 0 and b'Permission denied' in denied.stderr
        assert stat.S_IMODE((etc / 'hmc1.conf').stat().st_mode) == 0o640

        instances: list[Instance] = []
        try:
            for name in ('hmc1', 'hmc2'):
                instances.append(Instance(root, name, uid, gid, tmp_path))
            for instance in instances:
                assert instance.notified() == 'READY=1', instance.output()
                # Host cpc1 passed its checks: logged on to the HMC with the
                # credential, over TLS verified with the CA in /etc/dpm-backend.
                wait_for_serving(instance, 'dpm_api.v1.DPMHost/cpc1')
                # Its own socket, in its own runtime directory, the service user's.
                info = instance.socket_path.lstat()
                assert stat.S_ISSOCK(info.st_mode) and info.st_uid == uid
                assert stat.S_IMODE(info.st_mode) == 0o660
            hmc1, hmc2 = instances
            assert hmc1.stop() == 0, hmc1.output()
            assert not hmc1.socket_path.exists()
            assert hmc2.health() == SERVING
            assert hmc2.stop() == 0, hmc2.output()
        finally:
            for instance in instances:
                instance.stop()
