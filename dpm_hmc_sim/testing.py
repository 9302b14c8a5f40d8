"""Running the simulator for tests and benchmarks: in a thread, or as a process.

Both listen on 127.0.0.1 on an ephemeral port, expose ``host``, ``port`` and
``ca_file`` (what a client passes as ``verify_cert``), and stop what they start.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import zhmcclient

from dpm_hmc_sim import tls
from dpm_hmc_sim.broker import Broker
from dpm_hmc_sim.core import RequestRecord
from dpm_hmc_sim.core import Simulator
from dpm_hmc_sim.server import HmcServer

HOST = '127.0.0.1'
READY = re.compile(
    r'dpm-hmc-sim: serving HMC (\S+) \(API (\S+)\) on \[?([^\]\s;]+)\]?:(\d+)'
    r'(?:; STOMP on \[?[^\]\s;]+\]?:(\d+))?'
)
# Settings the command takes as options; the others are set through /_sim/config.
COMMAND_OPTIONS = (
    'start_seconds', 'stop_seconds', 'discover_seconds', 'latency', 'session_timeout',
)  # fmt: skip


class _Endpoint:
    """What both ways of running have: the address, the CA, and a zhmcclient Session."""

    host: str
    port: int
    ca_file: str
    userid: str
    password: str
    stomp_port: int | None = None  # the STOMP broker's port, when notifications are on

    def receiver(self, topics: list[str], **kwargs: Any) -> zhmcclient.NotificationReceiver:
        """A real zhmcclient NotificationReceiver on the simulator's STOMP broker."""
        if self.stomp_port is None:
            raise RuntimeError('this simulator publishes no notifications (notifications=True)')
        kwargs.setdefault('verify_cert', self.ca_file)
        return zhmcclient.NotificationReceiver(
            topics, self.host, self.userid, self.password, port=self.stomp_port, **kwargs
        )

    def session(self, **kwargs: Any) -> zhmcclient.Session:
        """A real zhmcclient Session to the simulator (not yet logged on)."""
        kwargs.setdefault('verify_cert', self.ca_file)
        return zhmcclient.Session(self.host, self.userid, self.password, port=self.port, **kwargs)

    @contextlib.contextmanager
    def logged_on(self) -> Iterator[zhmcclient.Client]:
        """A Client on a session of its own (an operator's tool), logged off afterwards."""
        session = self.session()
        session.logon()
        try:
            yield zhmcclient.Client(session)
        finally:
            session.logoff()


class ServedSimulator(_Endpoint):
    """A Simulator behind HTTPS in a thread of this process; ``sim`` is the Simulator."""

    def __init__(
        self,
        definition: Any,
        *,
        userid: str,
        password: str,
        cert_dir: str | Path,
        notifications: bool = False,
        **settings: Any,
    ) -> None:
        self.userid, self.password = userid, password
        files = tls.cert_files(cert_dir)
        self.ca_file = str(files.ca)
        self.sim = Simulator(definition, userid=userid, password=password, **settings)
        self.broker: Broker | None = None
        try:
            if notifications:
                self.broker = Broker(files, self.sim.stomp_logon, (HOST, 0))
                self.stomp_port = self.broker.port
                self.sim.publish_to(self.broker)
            self._server = HmcServer((HOST, 0), self.sim, files)
        except BaseException:
            if self.broker is not None:
                self.broker.stop()
            self.sim.close()
            raise
        self.host, self.port = HOST, self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={'poll_interval': 0.05},
            name='hmc-sim-serve',
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.stop()
        self._thread.join(timeout=5)
        if self.broker is not None:
            self.broker.stop()
        self.sim.close()

    def __enter__(self) -> ServedSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def served(
    definition: Any = '2.15.0',
    *,
    userid: str = 'openstack',
    password: str,
    cert_dir: str | Path,
    notifications: bool = False,
    **settings: Any,
) -> ServedSimulator:
    """Start a simulator in this process (a context manager; or call ``stop()``).

    ``notifications=True`` also starts its STOMP broker (``stomp_port``, ``broker``).
    """
    return ServedSimulator(
        definition,
        userid=userid,
        password=password,
        cert_dir=cert_dir,
        notifications=notifications,
        **settings,
    )


class SimulatorProcess(_Endpoint):
    """``python -m dpm_hmc_sim`` as a subprocess, with its admin interface over HTTPS."""

    def __init__(
        self,
        definition: str | Path = '2.15.0',
        *,
        userid: str = 'openstack',
        password: str,
        cert_dir: str | Path,
        ready_timeout: float = 30.0,
        notifications: bool = False,
        **settings: Any,
    ) -> None:
        self.userid, self.password = userid, password
        cert_dir = Path(cert_dir)
        cert_dir.mkdir(parents=True, exist_ok=True)
        password_file = cert_dir / 'hmc-sim-password'
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(password)
        command = [
            sys.executable, '-m', 'dpm_hmc_sim',
            '--definition', str(definition), '--listen', f'{HOST}:0',
            '--userid', userid, '--password-file', str(password_file),
            '--cert-dir', str(cert_dir),
        ]  # fmt: skip
        if notifications:
            command += ['--stomp-listen', f'{HOST}:0']
        for name in COMMAND_OPTIONS:
            if name in settings:
                command += [f'--{name.replace("_", "-")}', str(settings.pop(name))]
        # The child imports the same dpm_hmc_sim as this process, installed or not.
        env = dict(os.environ)
        source_root = str(Path(__file__).resolve().parent.parent)
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [source_root, env.get('PYTHONPATH')]))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self._http = requests.Session()
        try:
            self.ready_line = self._ready_line(ready_timeout)
            match = READY.fullmatch(self.ready_line)
            if match is None:
                raise RuntimeError(f'unexpected first line: {self.ready_line!r}')
            self.host, self.port = match.group(3), int(match.group(4))
            if match.group(5):
                self.stomp_port = int(match.group(5))
            self.ca_file = str(cert_dir / tls.CA_FILE)
            if settings:
                self.configure(**settings)
        except BaseException:
            self.kill()
            raise

    def _ready_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise RuntimeError(f'dpm-hmc-sim not ready after {timeout} s')
        line = self.process.stdout.readline().rstrip('\n')
        if not line:
            code = self.process.wait(timeout=5)
            raise RuntimeError(f'dpm-hmc-sim exited with {code} before serving')
        return line

    # --- admin interface (admin.py) ----------------------------------------------

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.request(
            method,
            f'https://{self.host}:{self.port}/_sim/{path}',
            json=body,
            verify=self.ca_file,
            timeout=10,
        )
        if response.status_code >= 400:
            raise ValueError(f'/_sim/{path}: {response.status_code} {response.text}')
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return self._admin('GET', 'state')

    def reset(self) -> None:
        self._admin('POST', 'reset')

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._admin('POST', 'config', settings)

    def set_outcome(self, partition_name: str, operation: str, outcome: str) -> None:
        body = {'partition': partition_name, 'operation': operation, 'outcome': outcome}
        self._admin('POST', 'outcome', body)

    def guest_status(self, partition_name: str, status: str) -> str:
        """Change a partition's status as its guest or an operator on the HMC would."""
        body = {'partition': partition_name, 'status': status}
        return self._admin('POST', 'guest-status', body)['old-status']

    def fabric(self) -> dict[str, Any]:
        return self._admin('GET', 'fabric')

    def set_fabric(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Replace the simulated SAN (dpm_hmc_sim.fabric)."""
        return self._admin('POST', 'fabric', spec)

    def expose_lun(self, lun: dict[str, Any]) -> dict[str, Any]:
        """Add one LUN to the simulated SAN (fabric.py's dict form of a LUN)."""
        return self._admin('POST', 'fabric/luns', lun)

    def expire_sessions(self) -> int:
        return self._admin('POST', 'sessions/expire')['expired']

    def session_counts(self) -> dict[str, Any]:
        return self._admin('GET', 'sessions')

    def requests(self) -> list[RequestRecord]:
        return [RequestRecord(**record) for record in self._admin('GET', 'requests')]

    def clear_requests(self) -> None:
        self._admin('POST', 'requests/clear')

    # --- stopping ------------------------------------------------------------------

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM; the exit code (0 when it stopped cleanly)."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self) -> int:
        return self._stop(signal.SIGKILL, 10.0)

    def _stop(self, signum: int, timeout: float) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._http.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()
