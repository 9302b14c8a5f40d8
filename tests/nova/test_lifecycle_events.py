"""Nova hears of partitions that stop or start outside Nova as lifecycle events.

The HMC simulator publishes its notifications to a real STOMP broker; the
backend follows them and streams the host's changes (WatchInstances); the
driver turns them into LifecycleEvents for nova-compute. Nova's periodic power
sync is off in these tests (``sync_power_state_interval = -1``), so whatever
Nova learns here, it learns from an event.
"""

from __future__ import annotations

import subprocess
import sys
import time

import grpc
import zhmcclient
from dpmtest import INVENTORY
from dpmtest import wait_for
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from nova_harness import HOST
from nova_harness import _DPMTestBase

from dpm_backend import naming
from dpm_backend.server import NOTIFICATIONS_SERVICE

SHUTDOWN = 4  # nova.compute.power_state
RUNNING = 1
DELAY = 1.0  # [dpm] lifecycle_stopped_event_delay in most tests


class _EventsTestBase(_DPMTestBase):
    """The backend as a process of its own (as deployed): it logs on to the HMC and
    its broker whenever it needs to, which Nova's HTTP interception in this process
    would not let it do."""

    NOTIFICATIONS = True
    STOPPED_DELAY = DELAY

    def start_backend(self, config) -> None:
        self.backend_process = None
        self.start_backend_process()
        self.addCleanup(self.stop_backend_process)

    def start_backend_process(self) -> None:
        self.backend_log = open(f'{self.config_file}.log', 'a')  # noqa: SIM115 (closed at stop)
        self.backend_process = subprocess.Popen(
            [sys.executable, '-m', 'dpm_backend.server', '--config-file', str(self.config_file)],
            stdout=self.backend_log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.notifications_flow, timeout=30)

    def stop_backend_process(self) -> None:
        if self.backend_process is not None:
            self.backend_process.terminate()
            self.backend_process.wait(timeout=30)
            self.backend_process = None
            self.backend_log.close()

    def health(self, service: str) -> int:
        with grpc.insecure_channel(f'unix:{self.socket_path}') as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            except grpc.RpcError:
                return health_pb2.HealthCheckResponse.UNKNOWN

    def notifications_flow(self) -> bool:
        return self.health(NOTIFICATIONS_SERVICE) == health_pb2.HealthCheckResponse.SERVING

    def before_nova(self) -> None:
        self.flags(sync_power_state_interval=-1)
        self.flags(lifecycle_stopped_event_delay=self.STOPPED_DELAY, group='dpm')
        # An operator's tool on the HMC: its own API session.
        self.operator = self.enterContext(self.served.logged_on())

    def boot(self) -> tuple[dict, str]:
        server = self.api.post_server({'server': self.server_body([])})
        server = self._wait_for_state_change(server, 'ACTIVE')
        return server, naming.partition_name(HOST, server['id'])

    def operator_partition(self, name: str) -> zhmcclient.Partition:
        cpc = self.operator.cpcs.find(**{'object-id': INVENTORY[self.CPC]})
        return cpc.partitions.find(name=name)

    def status(self, name: str) -> str:
        return self.hmc_partitions()[name].properties['status']

    def actions(self, server: dict) -> list[str]:
        return [a['action'] for a in self.api.get_instance_actions(server['id'])]

    def wait_for_shutoff(self, server: dict, timeout: float = 20.0) -> dict:
        return self._wait_for_server_parameter(
            server,
            {'status': 'SHUTOFF', 'OS-EXT-STS:power_state': SHUTDOWN},
            max_retries=int(timeout * 10),
        )


class DPMLifecycleEventsTest(_EventsTestBase):
    def test_a_guest_shutdown_shows_the_server_shutoff_within_seconds(self):
        server, name = self.boot()
        self.served.sim.guest_status(name, 'paused')  # in-guest "shutdown -P"
        started = time.monotonic()
        server = self.wait_for_shutoff(server)
        took = time.monotonic() - started
        # The delay, then Nova's handling: well before any periodic sync.
        self.assertGreaterEqual(took, DELAY)
        self.assertLess(took, DELAY + 10)
        # Nova stopped it through its stop API (the action), which stopped the partition.
        self.assertIn('stop', self.actions(server))
        wait_for(lambda: self.status(name) == 'stopped')

    def test_a_stop_and_start_on_the_hmc_within_the_delay_keeps_the_server_active(self):
        server, name = self.boot()
        partition = self.operator_partition(name)
        partition.stop()
        partition.start()
        time.sleep(DELAY + 2)  # the STOPPED would have been emitted by now
        server = self.api.get_server(server['id'])
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(RUNNING, server['OS-EXT-STS:power_state'])
        self.assertNotIn('stop', self.actions(server))
        self.assertEqual('active', self.status(name))

    def test_an_hmc_side_start_of_a_stopped_server_is_undone_by_nova(self):
        server, name = self.boot()
        server = self._stop_server(server)
        self.assertEqual('stopped', self.status(name))
        self.operator_partition(name).start()
        # Nova hears STARTED, records the power state, and force-stops the server it
        # holds stopped (as with libvirt): the partition is stopped again.
        wait_for(lambda: self.status(name) == 'active', timeout=5)
        wait_for(lambda: self.status(name) == 'stopped', timeout=20)
        server = self.api.get_server(server['id'])
        self.assertEqual('SHUTOFF', server['status'])
        self.assertEqual(2, self.actions(server).count('stop'))

    def test_a_change_while_the_broker_is_down_reaches_nova_after_it_is_back(self):
        server, name = self.boot()
        broker = self.served.broker
        broker.stop()
        self.addCleanup(broker.start)
        wait_for(lambda: not self.notifications_flow(), timeout=15)
        self.served.sim.guest_status(name, 'paused')  # published to nobody
        time.sleep(DELAY + 1)
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])['status'])
        broker.start()
        # The backend reads the CPC again after it reconnects: the change is not lost.
        self.wait_for_shutoff(server, timeout=40)

    def test_a_change_while_the_backend_restarts_reaches_nova(self):
        server, name = self.boot()
        self.stop_backend_process()
        self.served.sim.guest_status(name, 'paused')
        time.sleep(DELAY + 1)
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])['status'])
        self.start_backend_process()
        # The driver reconnects (with backoff) and its current state differs.
        self.wait_for_shutoff(server, timeout=60)

    def test_a_change_while_nova_compute_is_down_reaches_nova_after_its_restart(self):
        server, name = self.boot()
        self.compute.stop()
        self.served.sim.guest_status(name, 'paused')
        self.restart_compute_service(self.compute)
        self.wait_for_shutoff(server, timeout=30)


class DPMLifecycleEventsDefaultDelayTest(_EventsTestBase):
    """With the default delay (15 s, as libvirt), SHUTOFF comes after it and not before."""

    STOPPED_DELAY = 15.0

    def test_a_guest_shutdown_shows_the_server_shutoff_after_the_default_delay(self):
        server, name = self.boot()
        self.served.sim.guest_status(name, 'paused')
        started = time.monotonic()
        time.sleep(10)
        self.assertEqual('ACTIVE', self.api.get_server(server['id'])['status'])
        self.wait_for_shutoff(server, timeout=15)
        self.assertLess(time.monotonic() - started, 15 + 10)
