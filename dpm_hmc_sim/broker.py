"""The HMC's STOMP broker: a real STOMP 1.x broker (coilmq) behind TLS on loopback.

A real HMC carries its notifications as JMS messages over STOMP on TLS port 61612
(zc _constants.py DEFAULT_STOMP_PORT; HMC WS API book, chapter "Notifications").
``zhmcclient.NotificationReceiver`` (stomp.py 8) always speaks TLS and verifies the
server certificate against the CA it is given (zc _notification.py connect), so
this broker serves the simulator's own certificate (tls.py). coilmq has no TLS:
each accepted socket is wrapped here, in its connection's thread. A client logs
on to the broker as to the HMC: with the HMC userid and password, or with an API
session's id and credential (``authenticate`` decides).

coilmq's STOMP 1.2 check wants the CONNECT ``host`` header to equal
``socket.getfqdn()``; stomp.py's ``Connection`` (the one zhmcclient uses) speaks
STOMP 1.1, which has no such check.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from coilmq.auth import Authenticator
from coilmq.queue import QueueManager
from coilmq.server.socket_server import ThreadedStompServer
from coilmq.store.memory import MemoryQueue
from coilmq.topic import TopicManager
from coilmq.util.frames import Frame

from dpm_hmc_sim import tls

LOG = logging.getLogger(__name__)
# coilmq tells of every connection and of its shutdown at INFO and DEBUG; the
# simulator's own log says what matters (and a broker stopped at exit must not
# log to streams closed by then).
logging.getLogger('coilmq').setLevel(logging.WARNING)

POLL_SECONDS = 0.5  # how often a connection thread looks whether the broker stops


class _Credentials(Authenticator):
    def __init__(self, check: Callable[[str, str], bool]) -> None:
        self._check = check

    def authenticate(self, login: str, passcode: str) -> bool:
        return bool(login) and passcode is not None and self._check(login, passcode)


class _TlsStompServer(ThreadedStompServer):
    """coilmq's threaded server with TLS on every accepted connection."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], files: tls.CertFiles, auth: Authenticator):
        # No TLS 1.3 session tickets: stomp.py writes CONNECT from one thread while its
        # receiver thread reads on the same SSL object, and a ticket arriving then made
        # about one connection in ten fail (client: "socket read error"; server: EOF).
        self.tls = tls.ServerConnections(files, session_tickets=False)
        if ':' in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(
            address,
            timeout=POLL_SECONDS,
            authenticator=auth,
            queue_manager=QueueManager(store=MemoryQueue()),
            topic_manager=TopicManager(),
        )
        # coilmq names its logger after the class's module (this one): keep it under 'coilmq'.
        self.log = logging.getLogger('coilmq.server')

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.tls.serve(request, client_address, super().finish_request)


class Broker:
    """A STOMP broker on loopback with TLS; ``send`` publishes to a destination.

    ``stop()`` ends every connection (as an HMC restart does) and ``start()``
    serves again on the same port.
    """

    def __init__(
        self,
        files: tls.CertFiles,
        authenticate: Callable[[str, str], bool],
        address: tuple[str, int] = ('127.0.0.1', 0),
    ) -> None:
        self._files = files
        self._auth = _Credentials(authenticate)
        self._address = address
        self._lock = threading.Lock()
        self._server: _TlsStompServer | None = None
        self._thread: threading.Thread | None = None
        self.start()
        self.host, self.port = self._address

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = _TlsStompServer(self._address, self._files, self._auth)
            self._address = server.server_address[:2]
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={'poll_interval': 0.05},
                name='hmc-sim-stomp',
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.tls.end_all()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._server is not None

    def send(self, destination: str, headers: dict[str, str], body: bytes) -> None:
        """Deliver one MESSAGE to the destination's subscribers now (dropped if stopped)."""
        server = self._server
        if server is None:
            return
        frame = Frame('SEND', headers={**headers, 'destination': destination}, body=body)
        server.topic_manager.send(frame)
