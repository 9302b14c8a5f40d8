"""HMC notifications over a real STOMP broker with TLS, read by NotificationReceiver."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import zhmcclient
from sim.simtest import CPCZ13
from sim.simtest import PASSWORD
from sim.simtest import STOPPED_PARTITION
from sim.simtest import connect
from sim.simtest import partition
from sim.simtest import wait_complete

from dpm_hmc_sim.testing import ServedSimulator
from dpm_hmc_sim.testing import SimulatorProcess

Notification = tuple[dict[str, str], Any]


class Listener:
    """A NotificationReceiver read in a thread; what it yields (or raises) lands in a queue."""

    def __init__(self, receiver: zhmcclient.NotificationReceiver) -> None:
        self.receiver = receiver
        self.items: queue.Queue[Notification | Exception] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not receiver.is_connected():
            assert time.monotonic() < deadline, 'receiver did not connect'
            time.sleep(0.01)
        time.sleep(
            0.3
        )  # the SUBSCRIBE frames follow CONNECT; the broker acts on them in its thread

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                for item in self.receiver.notifications():
                    self.items.put(item)
                return  # closed
            except zhmcclient.NotificationError as exc:
                self.items.put(exc)  # and read again: notifications() reconnects

    def next(self, timeout: float = 5.0) -> Notification | Exception:
        return self.items.get(timeout=timeout)

    def close(self) -> None:
        # notifications() sees the close only at its next check (every 5 s or more),
        # so its daemon thread is not waited for.
        self._closed.set()
        self.receiver.close()


@pytest.fixture
def hmc(serve: Callable[..., ServedSimulator]) -> ServedSimulator:
    return serve('2.15.0', notifications=True)


@pytest.fixture
def client(hmc: ServedSimulator) -> zhmcclient.Client:
    client = connect(hmc)
    client.session.logon()
    return client


@pytest.fixture
def listen(hmc: ServedSimulator) -> Iterator[Callable[..., Listener]]:
    listeners: list[Listener] = []

    def start(topics: list[str], **kwargs: Any) -> Listener:
        listener = Listener(hmc.receiver(topics, **kwargs))
        listeners.append(listener)
        return listener

    yield start
    for listener in listeners:
        listener.close()


def kinds(notifications: list[Notification]) -> list[str]:
    return [headers['notification-type'] for headers, _ in notifications]


def test_logon_names_the_two_topics_of_the_session(client):
    session = client.session
    assert session.object_topic and session.job_topic
    assert session.object_topic != session.job_topic
    other = connect_again(client)
    assert {other.object_topic, other.job_topic}.isdisjoint(
        {session.object_topic, session.job_topic}
    )


def connect_again(client: zhmcclient.Client) -> zhmcclient.Session:
    session = zhmcclient.Session(
        client.session.host,
        client.session.userid,
        client.session._password,
        port=client.session.port,
        verify_cert=client.session.verify_cert,
    )
    session.logon()
    return session


def test_start_publishes_status_changes_and_the_job_completion(hmc, client, listen):
    session = client.session
    objects = listen([session.object_topic])
    jobs = listen([session.job_topic])
    part = partition(client, STOPPED_PARTITION)
    job = part.start(wait_for_completion=False)

    headers, body = objects.next()
    assert headers['notification-type'] == 'status-change'
    assert headers['object-uri'] == part.uri
    assert headers['object-id'] == part.uri.rpartition('/')[2]
    assert headers['class'] == 'partition'
    assert headers['name'] == STOPPED_PARTITION
    assert headers['session-sequence-nr'] == '0'
    assert headers['destination'] == f'/topic/{session.object_topic}'
    (report,) = body['change-reports']
    assert (report['old-status'], report['new-status']) == ('stopped', 'starting')

    headers, body = objects.next()
    assert headers['notification-type'] == 'status-change'
    assert headers['session-sequence-nr'] == '1'
    (report,) = body['change-reports']
    assert (report['old-status'], report['new-status']) == ('starting', 'active')
    assert report['has-unacceptable-status'] is False

    headers, body = jobs.next()
    assert headers['notification-type'] == 'job-completion'
    assert headers['job-uri'] == job.uri
    assert body is None
    assert wait_complete(job) == ('complete', {})


def test_a_job_completion_goes_only_to_the_job_topic_of_the_starting_session(hmc, client, listen):
    other = connect_again(client)
    mine = listen([client.session.job_topic])
    theirs = listen([other.job_topic, other.object_topic])
    job = partition(client, STOPPED_PARTITION).start(wait_for_completion=False)
    assert mine.next()[0]['job-uri'] == job.uri
    # The other session hears the status changes on its object topic, no job completion.
    seen = [theirs.next(), theirs.next()]
    assert kinds(seen) == ['status-change', 'status-change']
    with pytest.raises(queue.Empty):
        theirs.next(timeout=0.5)


def test_a_property_update_publishes_a_property_change(hmc, client, listen):
    objects = listen([client.session.object_topic])
    part = partition(client, STOPPED_PARTITION)
    part.pull_full_properties()
    old = part.properties['description']
    part.update_properties(
        {'description': 'changed', 'ifl-processors': part.properties['ifl-processors']}
    )
    headers, body = objects.next()
    assert headers['notification-type'] == 'property-change'
    assert headers['object-uri'] == part.uri
    # Only what changed is reported.
    assert body['change-reports'] == [
        {'property-name': 'description', 'old-value': old, 'new-value': 'changed'}
    ]


def test_create_and_delete_publish_inventory_changes(hmc, client, listen):
    objects = listen([client.session.object_topic])
    cpc = client.cpcs.find(name=CPCZ13)
    part = cpc.partitions.create(
        {'name': 'notified', 'initial-memory': 1024, 'maximum-memory': 1024, 'ifl-processors': 1}
    )
    headers, body = objects.next()
    assert headers['notification-type'] == 'inventory-change'
    assert headers['action'] == 'add'
    assert (headers['object-uri'], headers['class'], headers['name']) == (
        part.uri,
        'partition',
        'notified',
    )
    assert body is None

    vswitch = cpc.virtual_switches.list()[0]
    nic = part.nics.create({'name': 'eth0', 'virtual-switch-uri': vswitch.uri})
    headers, _ = objects.next()
    assert (headers['notification-type'], headers['action']) == ('inventory-change', 'add')
    # A NIC is an element of its partition.
    assert (headers['element-uri'], headers['class']) == (nic.uri, 'nic')

    part.delete()
    removed = [objects.next(), objects.next()]
    assert {(h['action'], h.get('object-uri') or h.get('element-uri')) for h, _ in removed} == {
        ('remove', part.uri),
        ('remove', nic.uri),
    }


def test_a_logon_with_a_wrong_password_gets_no_stomp_connection(hmc):
    receiver = zhmcclient.NotificationReceiver(
        ['x'],
        hmc.host,
        hmc.userid,
        'wrong',
        port=hmc.stomp_port,
        verify_cert=hmc.ca_file,
        stomp_rt_config=zhmcclient.StompRetryTimeoutConfig(connect_retries=1),
    )
    with pytest.raises(zhmcclient.NotificationError):
        next(receiver.notifications())


def test_a_session_id_and_credential_log_on_to_the_broker(hmc, client):
    session = client.session
    receiver = zhmcclient.NotificationReceiver(
        [session.object_topic],
        hmc.host,
        session.session_id,
        session.session_credential,
        port=hmc.stomp_port,
        verify_cert=hmc.ca_file,
    )
    listener = Listener(receiver)
    try:
        partition(client, STOPPED_PARTITION).update_properties({'description': 'by credential'})
        headers, _ = listener.next()
        assert headers['notification-type'] == 'property-change'
    finally:
        listener.close()


def test_notifications_resume_after_a_broker_restart(hmc, client, listen):
    objects = listen([client.session.object_topic])
    hmc.broker.stop()
    hmc.broker.start()
    # zhmcclient notices the lost connection when it next checks (every 5 s at least,
    # zc _constants.py STOMP_MIN_CONNECTION_CHECK_TIME), raises
    # NotificationConnectionError, and a new notifications() reconnects.
    lost = objects.next(timeout=15)
    assert isinstance(lost, zhmcclient.NotificationConnectionError)
    deadline = time.monotonic() + 10
    while not objects.receiver.is_connected():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)
    part = partition(client, STOPPED_PARTITION)
    part.update_properties({'description': 'after restart'})
    headers, body = objects.next()
    assert headers['notification-type'] == 'property-change'
    assert body['change-reports'][0]['new-value'] == 'after restart'


def test_the_command_publishes_through_its_own_broker(tmp_path):
    with SimulatorProcess(password=PASSWORD, cert_dir=tmp_path, notifications=True) as sim:
        assert sim.stomp_port is not None and sim.stomp_port != sim.port
        client = connect(sim)
        client.session.logon()
        listener = Listener(sim.receiver([client.session.object_topic]))
        try:
            part = partition(client, STOPPED_PARTITION)
            part.update_properties({'description': 'from the command'})
            headers, body = listener.next()
            assert (headers['notification-type'], headers['object-uri']) == (
                'property-change',
                part.uri,
            )
            assert body['change-reports'][0]['new-value'] == 'from the command'
        finally:
            listener.close()
        client.session.logoff()
