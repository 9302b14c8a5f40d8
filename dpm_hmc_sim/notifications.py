"""HMC notifications: what changed in a request, as the HMC's JMS messages.

The HMC publishes to JMS topics over STOMP (HMC WS API book, chapter
"Notifications"; zc _notification.py). Logon names two topics per API session
(zc _session.py ~854 reads them): ``notification-topic`` for object
notifications and ``job-notification-topic`` for the completions of the jobs that
session started. A subscriber's destination is ``/topic/<name>`` (zc
_notification.py subscribe). Object notifications go to the object topic of
every open session; a job completion only to the job topic of the session that
started the job.

Message headers (IBM Docs "property change notification", "status change
notification", "inventory change notification", "job completion notification";
zc _notification.py notifications() docstring; zc _auto_updater.py ~360-460):
``notification-type`` (``property-change``, ``status-change``,
``inventory-change``, ``job-completion``), ``session-sequence-nr`` (counted per
topic here, from 0), ``class``, ``name``, and ``object-uri``/``object-id`` or, for
an element such as a NIC or HBA, ``element-uri``/``element-id``; an inventory
change has ``action`` (``add`` or ``remove``) and no body; a job completion has
``job-uri`` and no body. Bodies are JSON: ``change-reports``, each with
``property-name``, ``old-value`` and ``new-value`` (property change) or
``old-status``, ``new-status`` and ``has-unacceptable-status`` (status change).

Work on the request's path is a dict copy of the changed object; delivery runs in
one thread, in the order the changes happened.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import threading
from collections.abc import Iterable
from typing import Any
from typing import Protocol

LOG = logging.getLogger(__name__)

TOPIC_PREFIX = '/topic/'
STATUS = 'status'
# STOMP 1.1 escapes these in header values (stomp.py unescapes them on receipt).
_ESCAPES = str.maketrans({'\\': '\\\\', '\n': '\\n', ':': '\\c'})


class Sink(Protocol):
    def send(self, destination: str, headers: dict[str, str], body: bytes) -> None: ...


class Snapshot:
    """The HMC's resources before a request, and the properties of the one it targets."""

    def __init__(self, hmc: Any, target_uri: str | None) -> None:
        self.resources = dict(hmc.all_resources)
        target = self.resources.get(target_uri) if target_uri else None
        self.target = target
        self.properties = dict(target.properties) if target is not None else {}


class Notifier:
    """Topics of the open sessions, sequence numbers, and an ordered delivery thread."""

    def __init__(self) -> None:
        self._sink: Sink | None = None
        self._sequence: collections.Counter[str] = collections.Counter()
        self._queue: queue.SimpleQueue[tuple[str, dict[str, str], bytes] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    def attach(self, sink: Sink) -> None:
        """Publish through ``sink`` (a broker.Broker) from now on."""
        with self._lock:
            self._sink = sink
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver, name='hmc-sim-notify', daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)

    # --- what changed --------------------------------------------------------------

    def snapshot(self, hmc: Any, target_uri: str | None) -> Snapshot | None:
        return Snapshot(hmc, target_uri) if self.enabled else None

    def changes(self, hmc: Any, before: Snapshot | None, topics: Iterable[str]) -> None:
        """Publish what differs between ``before`` and now to every object topic."""
        if before is None:
            return
        topics = list(topics)
        after = hmc.all_resources
        for uri, resource in after.items():
            if uri not in before.resources:
                self._inventory(topics, resource, 'add')
        for uri, resource in before.resources.items():
            if uri not in after:
                self._inventory(topics, resource, 'remove')
        target = before.target
        if target is not None and after.get(target.uri) is target:
            self.property_changes(topics, target, before.properties)

    def property_changes(self, topics: list[str], resource: Any, old: dict[str, Any]) -> None:
        """A status change for ``status``, one property change for the other properties."""
        new = resource.properties
        changed = [name for name in new if name != STATUS and old.get(name) != new[name]]
        if old.get(STATUS) != new.get(STATUS):
            report = {
                'old-status': old.get(STATUS),
                'new-status': new.get(STATUS),
                'has-unacceptable-status': _unacceptable(new),
            }
            if 'additional-status' in new:
                report['old-additional-status'] = old.get('additional-status')
                report['new-additional-status'] = new['additional-status']
            self._publish_object(topics, resource, 'status-change', {'change-reports': [report]})
        if changed:
            reports = [
                {'property-name': name, 'old-value': old.get(name), 'new-value': new[name]}
                for name in changed
            ]
            self._publish_object(topics, resource, 'property-change', {'change-reports': reports})

    def job_completion(self, topic: str | None, job_uri: str) -> None:
        if self.enabled and topic:
            self._publish(topic, {'notification-type': 'job-completion', 'job-uri': job_uri}, None)

    # --- publishing ----------------------------------------------------------------

    def _inventory(self, topics: list[str], resource: Any, action: str) -> None:
        self._publish_object(topics, resource, 'inventory-change', None, action=action)

    def _publish_object(
        self, topics: list[str], resource: Any, kind: str, body: Any, **extra: str
    ) -> None:
        headers = {'notification-type': kind, **extra, **_identity(resource)}
        for topic in topics:
            self._publish(topic, headers, body)

    def _publish(self, topic: str, headers: dict[str, str], body: Any) -> None:
        """Number the message and queue it (the caller holds the Simulator's lock)."""
        number = self._sequence[topic]
        self._sequence[topic] += 1
        headers = {**headers, 'session-sequence-nr': str(number)}
        data = b'' if body is None else json.dumps(body).encode()
        self._queue.put((topic, {k: str(v).translate(_ESCAPES) for k, v in headers.items()}, data))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, headers, data = item
            sink = self._sink
            if sink is None:
                continue
            try:
                sink.send(TOPIC_PREFIX + topic, headers, data)
            except Exception:  # a broken subscriber must not stop the others' messages
                LOG.exception('publishing to %r failed', topic)


def _identity(resource: Any) -> dict[str, str]:
    """class, name, and object-uri/object-id or element-uri/element-id."""
    kind = 'element' if resource.manager.oid_prop == 'element-id' else 'object'
    headers = {f'{kind}-uri': resource.uri, f'{kind}-id': resource.oid}
    properties = resource.properties
    if 'class' in properties:
        headers['class'] = properties['class']
    if 'name' in properties:
        headers['name'] = properties['name']
    return headers


def _unacceptable(properties: dict[str, Any]) -> bool:
    acceptable = properties.get('acceptable-status')
    if not acceptable:
        return bool(properties.get('has-unacceptable-status', False))
    return properties.get(STATUS) not in acceptable
