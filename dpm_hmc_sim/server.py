"""HTTPS on loopback in front of a Simulator, and the ``dpm-hmc-sim`` command.

The server is threaded and speaks HTTP/1.1 with keep-alive (every answer has a
Content-Length), so zhmcclient's requests session reuses its connections as
with a real HMC. The TLS handshake runs in the connection's own thread, not in
the accepting one. During an outage (setting ``enabled`` false) HMC requests are
read and the connection is closed without an answer: zhmcclient raises
ConnectionError. ``/_sim/`` admin requests are answered always (admin.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Mapping
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dpm_hmc_sim import admin
from dpm_hmc_sim import tls
from dpm_hmc_sim.core import Simulator
from dpm_hmc_sim.definition import DefinitionError
from dpm_hmc_sim.definition import shipped

LOG = logging.getLogger(__name__)

PROG = 'dpm-hmc-sim'
DEFAULT_LISTEN = '127.0.0.1:6794'  # the HMC's Web Services API port (zc _constants.py)
IDLE_TIMEOUT = 60.0  # an idle keep-alive connection is closed after this


class HmcRequestHandler(BaseHTTPRequestHandler):
    """One connection: HMC requests to the Simulator, /_sim/ requests to admin."""

    protocol_version = 'HTTP/1.1'
    server_version = PROG
    timeout = IDLE_TIMEOUT
    # Head and body leave in one write (flushed per request by the base class);
    # with TCP_NODELAY no answer waits for the client's delayed ACK.
    wbufsize = 64 * 1024
    server: HmcServer

    def do_GET(self) -> None:
        self._serve('GET')

    def do_POST(self) -> None:
        self._serve('POST')

    def do_DELETE(self) -> None:
        self._serve('DELETE')

    def do_PUT(self) -> None:
        self._serve('PUT')

    def _serve(self, method: str) -> None:
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length > 0 else None
        sim = self.server.simulator
        if self.path.startswith(admin.PREFIX):
            status, body = admin.handle(sim, method, self.path, raw)
            self._answer(status, body, {})
            return
        if not sim.enabled:
            sim.record_dropped(method, self.path)
            self.close_connection = True  # no answer: the HMC is unreachable
            return
        reply = sim.handle(method, self.path, self.headers, raw)  # type: ignore[arg-type]
        self._answer(reply.status, reply.body, reply.headers)

    def _answer(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        data = b''
        if status != 204:
            if body is not None:
                data = json.dumps(body).encode()
                self.send_header('Content-Type', 'application/json;charset=UTF-8')
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug('%s: ' + format, self.address_string(), *args)


class HmcServer(ThreadingHTTPServer):
    """A threaded HTTPS server for one Simulator."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], simulator: Simulator, files: tls.CertFiles):
        self.simulator = simulator
        self._tls = tls.ServerConnections(files)
        if ':' in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, HmcRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can
        # wait on DNS; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request: Any, client_address: Any) -> None:
        self._tls.serve(request, client_address, super().finish_request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.exception('request from %s failed', client_address)

    def stop(self) -> None:
        """Stop serving, and end the open connections."""
        self.shutdown()
        self.server_close()
        self._tls.end_all()


def loopback_address(listen: str) -> tuple[str, int]:
    """'127.0.0.1:6794' -> ('127.0.0.1', 6794); anything but loopback is refused."""
    host, sep, port_text = listen.rpartition(':')
    host = host.strip('[]')
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f'--listen must be HOST:PORT, not {listen!r}')
    if host == 'localhost':
        host = '127.0.0.1'
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f'{host!r} is not a loopback address: the simulator is a test tool with no '
            'authentication on /_sim/, it listens on loopback only'
        )
    return host, int(port_text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Serve a simulated IBM Z HMC (zhmcclient mock plus HMC rules) over HTTPS.',
    )
    parser.add_argument(
        '--definition',
        default='2.15.0',
        help=f'HMC definition YAML path, or a shipped HMC version: {", ".join(shipped())}',
    )
    parser.add_argument('--listen', default=DEFAULT_LISTEN, help='loopback HOST:PORT; port 0: any')
    parser.add_argument('--userid', required=True, help='the HMC userid that may log on')
    parser.add_argument('--password-file', required=True, type=Path, help='its password')
    parser.add_argument(
        '--cert-dir',
        required=True,
        type=Path,
        help=f'directory of {tls.CA_FILE}, {tls.CERT_FILE}, {tls.KEY_FILE}; created if missing',
    )
    parser.add_argument(
        '--stomp-listen',
        metavar='HOST:PORT',
        help='also publish HMC notifications through a STOMP broker with TLS on this loopback '
        'address (an HMC uses port 61612); port 0: any. Default: no notifications',
    )
    parser.add_argument('--start-seconds', type=float, default=1.0, help='Start Partition job')
    parser.add_argument('--stop-seconds', type=float, default=1.0, help='Stop Partition job')
    parser.add_argument(
        '--discover-seconds',
        type=float,
        default=1.0,
        help='Start FCP Storage Discovery job',
    )
    parser.add_argument('--latency', type=float, default=0.0, help='seconds added per request')
    parser.add_argument(
        '--session-timeout', type=float, default=0.0, help='idle seconds to expiry; 0: never'
    )
    parser.add_argument(
        '--log-level',
        default='WARNING',
        choices=['DEBUG', 'INFO', 'WARNING', 'ERROR'],
        type=str.upper,
        help='stderr log level (DEBUG: every request)',
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT, then exit 0. Bad options: exit 2."""
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level, format='%(name)s: %(message)s')
    try:
        address = loopback_address(args.listen)
        password = args.password_file.read_text(encoding='utf-8').rstrip('\r\n')
        simulator = Simulator(
            args.definition,
            userid=args.userid,
            password=password,
            start_seconds=args.start_seconds,
            stop_seconds=args.stop_seconds,
            discover_seconds=args.discover_seconds,
            latency=args.latency,
            session_timeout=args.session_timeout,
        )
        files = tls.cert_files(args.cert_dir)
        broker = None
        if args.stomp_listen:
            try:
                from dpm_hmc_sim.broker import Broker  # coilmq: only where notifications are on
            except ImportError as exc:
                raise ValueError(
                    f'--stomp-listen needs the STOMP broker coilmq ({exc}); install '
                    'requirements-dev.txt'
                ) from None

            broker = Broker(files, simulator.stomp_logon, loopback_address(args.stomp_listen))
            simulator.publish_to(broker)
        server = HmcServer(address, simulator, files)
    except (ValueError, DefinitionError, OSError) as exc:
        print(f'{PROG}: {exc}', file=sys.stderr)
        return 2

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name='hmc-sim-serve', daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    shown = f'[{host}]' if ':' in host else host
    definition = simulator.definition
    stomp = ''
    if broker is not None:
        stomp_host = f'[{broker.host}]' if ':' in broker.host else broker.host
        stomp = f'; STOMP on {stomp_host}:{broker.port}'
    print(
        f'{PROG}: serving HMC {definition.hmc_version} (API {definition.api_text}) '
        f'on {shown}:{port}{stomp}',
        flush=True,
    )
    while not stop.wait(3600):
        pass
    server.stop()
    thread.join(timeout=5)
    if broker is not None:
        broker.stop()
    simulator.close()
    return 0
