"""A throwaway single-member etcd on loopback: start, stop, kill, restart, lose its data.

Tests of active/standby backends run their own etcd (Debian's etcd-server,
3.4; .ci/run installs it) on free loopback ports with a data directory under
the test's tmp_path. ``restart`` keeps the ports and the data (an etcd that
was down); ``wipe`` removes the data (an etcd that lost it).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ETCD = shutil.which('etcd') or '/usr/bin/etcd'
# Seconds a single member takes to elect itself and answer (about 1 s; loaded machines more).
START_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class Etcd:
    """One etcd process; the same ports and data directory across restarts."""

    def __init__(self, directory: Path) -> None:
        if not Path(ETCD).exists():
            pytest.fail('etcd is not installed: apt-get install etcd-server (.ci/run does)')
        self.directory = directory
        self.data_dir = directory / 'data'
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def client_url(self) -> str:
        return f'http://127.0.0.1:{self.client_port}'

    @property
    def url(self) -> str:
        """The tooz URL of this etcd ([coordination] backend_url)."""
        return f'etcd3+http://127.0.0.1:{self.client_port}'

    def start(self, wait: bool = True) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        peer = f'http://127.0.0.1:{self.peer_port}'
        self.starts += 1
        log = (self.directory / f'etcd-{self.starts}.log').open('w')
        self.process = subprocess.Popen(
            [
                ETCD,
                '--name=dpmtest',
                f'--data-dir={self.data_dir}',
                f'--listen-client-urls={self.client_url}',
                f'--advertise-client-urls={self.client_url}',
                f'--listen-peer-urls={peer}',
                f'--initial-advertise-peer-urls={peer}',
                f'--initial-cluster=dpmtest={peer}',
                '--initial-cluster-state=new',
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_ready()

    def healthy(self) -> bool:
        try:
            # An http URL of our own making.
            health = f'{self.client_url}/health'
            with urllib.request.urlopen(health, timeout=1) as reply:  # noqa: S310
                return json.load(reply).get('health') == 'true'
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        end = time.monotonic() + timeout
        while not self.healthy():
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f'etcd exited with {self.process.returncode}: {self.log()}')
            if time.monotonic() > end:
                raise AssertionError(f'etcd did not become healthy: {self.log()}')
            time.sleep(0.05)

    def log(self) -> str:
        path = self.directory / f'etcd-{self.starts}.log'
        return path.read_text()[-2000:] if path.exists() else ''

    def _end(self, signum: int) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def stop(self) -> None:
        """SIGTERM: etcd shuts down cleanly; its leases are restored by the next start."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """The same ports and data: leases and keys as they were."""
        self.stop()
        self.start()

    def wipe(self) -> None:
        """Remove the data (etcd must be down): the next start knows no lease and no key."""
        assert self.process is None
        shutil.rmtree(self.data_dir, ignore_errors=True)
