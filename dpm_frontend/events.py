"""Nova lifecycle events from the backend's stream of the host's instance changes.

The backend's WatchInstances stream tells of each power state change of the
host's partitions, also of those made outside of Nova (a guest shutdown, a
start or stop on the HMC). InstanceEvents reads it in a thread of its own and
hands Nova a STARTED or STOPPED LifecycleEvent for each change
(ComputeDriver.emit_event); Nova checks it against get_info and its database
and corrects the server (ComputeManager.handle_lifecycle_event).

As in the libvirt driver (nova/virt/libvirt/host.py), a STOPPED waits a while
and any later event of the same instance cancels it: a reboot on the HMC is a
stop and a start. Nova's handler does database work and calls get_info, so
events go to a small pool of workers, one instance's in order and never two at
once; the reader only queues and so keeps up with the stream. A lost stream is
opened again with exponential backoff and jitter; its first response, the
current state, says what changed meanwhile. Over several backends of one HMC
the new stream waits until one of them is SERVING and opens on it: after a
takeover, on the new active backend. Native threads only: the driver
refuses eventlet (DPMDriver.init_host).
"""

from __future__ import annotations

import collections
import queue
import random
import threading
import time
from collections.abc import Callable

from oslo_log import log as logging

from dpm_api.v1 import contract
from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_frontend import client as client_mod
from nova.virt import event as virtevent

LOG = logging.getLogger(__name__)

# Workers handing events to Nova: instances in parallel, each one's in order.
WORKERS = 4
# Pauses before opening a lost stream again: from half to all of a ceiling that
# starts here and doubles up to RECONNECT_MAX (seconds); a stream that
# delivered its current state starts again from RECONNECT_INITIAL.
RECONNECT_INITIAL = 0.5
RECONNECT_MAX = 30.0
# stop() waits at most this long (seconds) for the threads to end.
STOP_TIMEOUT = 5.0

# UNSPECIFIED (starting, stopping, or the HMC cannot tell) has no event: the
# last known state stands. DPM has no pause apart from "nothing runs" (a
# partition paused after a guest shutdown is SHUTDOWN): no PAUSED or RESUMED.
TRANSITIONS = {
    pb.POWER_STATE_RUNNING: virtevent.EVENT_LIFECYCLE_STARTED,
    pb.POWER_STATE_SHUTDOWN: virtevent.EVENT_LIFECYCLE_STOPPED,
    pb.POWER_STATE_CRASHED: virtevent.EVENT_LIFECYCLE_STOPPED,
}

# What to check, for the codes a configuration or an upgrade can fix.
HINTS = {
    'UNIMPLEMENTED': 'the backend predates WatchInstances: upgrade it',
    'UNAUTHENTICATED': 'check [dpm] token_file',
    'PERMISSION_DENIED': 'check [dpm] token_file',
    'NOT_FOUND': "[DEFAULT] host must be one of the backend's [backend] hosts",
}

_JITTER = random.SystemRandom()


class Backoff:
    """Exponential backoff with jitter: each pause is half to all of a ceiling that
    doubles after each pause, up to ``maximum``; ``reset()`` starts again."""

    def __init__(
        self,
        initial: float = RECONNECT_INITIAL,
        maximum: float = RECONNECT_MAX,
        rand: Callable[[], float] = _JITTER.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rand = rand
        self._ceiling = initial

    def next(self) -> float:
        ceiling = self._ceiling
        self._ceiling = min(ceiling * 2, self.maximum)
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        self._ceiling = self.initial


class OrderedDelivery:
    """Events to ``deliver`` on a few threads: one instance's in order, one at a time.

    An instance with events waiting is in the ready queue at most once; the
    worker that takes it delivers its oldest event, then puts it back at the
    end of the queue if more came meanwhile, so busy instances take turns.
    """

    def __init__(
        self, deliver: Callable[[virtevent.LifecycleEvent], None], workers: int, name: str
    ) -> None:
        self._deliver = deliver
        self._lock = threading.Lock()
        self._waiting: dict[str, collections.deque[virtevent.LifecycleEvent]] = {}
        self._ready: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f'{name}-{n}', daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, event: virtevent.LifecycleEvent) -> None:
        uuid = event.uuid
        with self._lock:
            if self._stopped:
                return
            waiting = self._waiting.get(uuid)
            if waiting is not None:
                waiting.append(event)
                return
            self._waiting[uuid] = collections.deque([event])
        self._ready.put(uuid)

    def _work(self) -> None:
        while (uuid := self._ready.get()) is not None:
            with self._lock:
                waiting = self._waiting.get(uuid)
                event = waiting.popleft() if waiting else None
            if event is not None:
                try:
                    self._deliver(event)
                except Exception:
                    LOG.exception('Lifecycle event %s not delivered', event)
            with self._lock:
                if self._waiting.get(uuid):
                    self._ready.put(uuid)
                else:
                    self._waiting.pop(uuid, None)

    def stop(self, timeout: float) -> bool:
        """Drop the events not yet delivered; whether the workers ended within ``timeout``."""
        with self._lock:
            self._stopped = True
            self._waiting.clear()
        for _ in self._threads:
            self._ready.put(None)
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


class InstanceEvents:
    """Lifecycle events of one Nova host's instances, from its backend's stream.

    ``connect`` returns the driver's BackendClient (its channel and token);
    ``emit`` is ComputeDriver.emit_event. ``start()`` once, ``stop()`` at the
    end (both from the driver); not restartable.
    """

    def __init__(
        self,
        host: str,
        connect: Callable[[], client_mod.BackendClient],
        emit: Callable[[virtevent.LifecycleEvent], None],
        stopped_delay: float,
        workers: int = WORKERS,
        backoff: Backoff | None = None,
    ) -> None:
        self._host = host
        self._connect = connect
        self._emit = emit
        self._stopped_delay = stopped_delay
        self._workers = workers
        self._backoff = backoff or Backoff()
        # Guards what the reader, the delay thread and stop() share, and wakes
        # them: a pause before reconnecting and the wait for a delayed event.
        self._cond = threading.Condition()
        self._stopping = False
        self._watch: client_mod.InstanceWatch | None = None
        # Pending STOPPED events by instance, each with its due time: the
        # delay is the same for all, so the first one is always due first.
        self._delayed: collections.OrderedDict[str, tuple[float, virtevent.LifecycleEvent]] = (
            collections.OrderedDict()
        )
        self._delivery: OrderedDelivery | None = None
        self._threads: list[threading.Thread] = []
        # Read and written by the reader thread only.
        self._known: dict[str, int] = {}
        self._position: tuple[str, int] | None = None  # epoch and sequence last seen
        self._notifications: bool | None = None
        self._warned: tuple[str, str] | None = None  # the loss last warned about

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        """Follow the host's instance stream from now on (a second call does nothing)."""
        with self._cond:
            if self._threads or self._stopping:
                return
            name = f'dpm-events-{self._host}'
            self._delivery = OrderedDelivery(self._emit, self._workers, name)
            self._threads = [
                threading.Thread(target=self._read, name=name, daemon=True),
                threading.Thread(target=self._release_delayed, name=f'{name}-delay', daemon=True),
            ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Cancel the stream, drop pending events, wait at most ``timeout`` for the threads."""
        with self._cond:
            self._stopping = True
            self._delayed.clear()
            watch = self._watch
            self._cond.notify_all()
        if watch is not None:
            watch.cancel()
        end = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        ended = not self.running
        if self._delivery is not None:
            ended = self._delivery.stop(max(0.0, end - time.monotonic())) and ended
        if not ended:
            LOG.warning(
                'Lifecycle events of host %(host)s: threads still busy after %(timeout)s s; '
                'left to end on their own',
                {'host': self._host, 'timeout': timeout},
            )

    # -- the stream ------------------------------------------------------

    def _read(self) -> None:
        """Follow the stream, and open it again after each loss until stop()."""
        while (ended := self._follow()) is not None:
            code, reason, details = ended
            if (code, reason) != self._warned:
                hint = HINTS.get(code)
                LOG.warning(
                    "Lifecycle events of host %(host)s: dpm-backend's instance stream "
                    'ended: %(code)s %(reason)s (%(details)r)%(hint)s; opening it again with '
                    "backoff (till then Nova's periodic power state sync applies)",
                    {
                        'host': self._host,
                        'code': code,
                        'reason': reason,
                        'details': details,
                        'hint': f'; {hint}' if hint else '',
                    },
                )
                self._warned = (code, reason)
            else:
                LOG.debug(
                    'Lifecycle events of host %(host)s: instance stream ended again: '
                    '%(code)s %(reason)s (%(details)r)',
                    {'host': self._host, 'code': code, 'reason': reason, 'details': details},
                )
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, self._backoff.next()):
                    return

    def _follow(self) -> tuple[str, str, str] | None:
        """Open the stream and handle its responses until it ends.

        Returns how it ended (gRPC code, ErrorInfo reason, message), or None
        once stop() was called.
        """
        watch = None
        try:
            watch = self._connect().watch_instances(self._host)
            with self._cond:
                if self._stopping:
                    return None
                self._watch = watch
            for response in watch:
                self._handle(response)
            ended = ('OK', '', 'the backend closed the stream')
        except client_mod.WatchEnded as exc:
            failure = exc.failure
            ended = (failure.code.name, failure.reason, failure.message)
        except Exception as exc:
            # Never end the thread: a fault here must not end the events for good.
            LOG.exception('Lifecycle events of host %s: instance stream failed', self._host)
            ended = (type(exc).__name__, '', str(exc))
        finally:
            if watch is not None:
                watch.cancel()
            with self._cond:
                self._watch = None
        with self._cond:
            return None if self._stopping else ended

    def _handle(self, response: pb.WatchInstancesResponse) -> None:
        if response.notifications != self._notifications:
            if not response.notifications:
                LOG.info(
                    'Lifecycle events of host %s: dpm-backend receives no HMC '
                    'notifications now; changes reach Nova when it next reads the HMC',
                    self._host,
                )
            elif self._notifications is not None:
                LOG.info(
                    'Lifecycle events of host %s: dpm-backend receives HMC notifications again',
                    self._host,
                )
            self._notifications = response.notifications
        if response.kind == pb.WATCH_KIND_CURRENT_STATE:
            if self._position is None or self._warned is not None:
                LOG.info(
                    'Lifecycle events of host %(host)s: following its %(count)d instances',
                    {'host': self._host, 'count': len(response.instances)},
                )
            self._warned = None
            self._position = (response.epoch, response.sequence)
            self._current_state(response.instances)
            self._backoff.reset()
        elif response.kind == pb.WATCH_KIND_CHANGE:
            last = self._position
            if last is not None and last[0] == response.epoch and response.sequence <= last[1]:
                LOG.debug('Instance change %d already seen', response.sequence)
                return
            self._position = (response.epoch, response.sequence)
            for state in response.instances:
                if self._valid(state):
                    if state.removed:
                        self._forget(state.instance_uuid)
                    else:
                        self._observe(state)
        else:
            LOG.debug('Instance stream response of unknown kind %d ignored', response.kind)

    def _current_state(self, instances) -> None:
        """Events for what differs from what this stream told before (all, the first time)."""
        present = set()
        for state in instances:
            if self._valid(state) and not state.removed:
                present.add(state.instance_uuid)
                self._observe(state)
        for uuid in set(self._known) - present:
            self._forget(uuid)

    @staticmethod
    def _valid(state: pb.InstanceState) -> bool:
        if contract.OBJECT_ID.fullmatch(state.instance_uuid):
            return True
        LOG.warning('Instance stream: %r is not an instance uuid; ignored', state.instance_uuid)
        return False

    def _observe(self, state: pb.InstanceState) -> None:
        """An event if the instance's power state differs from the last one it was told."""
        uuid = state.instance_uuid
        transition = TRANSITIONS.get(state.power_state)
        if transition is None or self._known.get(uuid) == transition:
            return
        if state.power_state == pb.POWER_STATE_CRASHED:
            LOG.warning(
                'Partition status %r is not one the HMC API documents; telling Nova it stopped',
                state.partition_status,
                instance_uuid=uuid,
            )
        self._known[uuid] = transition
        self._queue(virtevent.LifecycleEvent(uuid, transition))

    def _forget(self, uuid: str) -> None:
        """The partition is gone: no event, and none still pending (get_info would find none)."""
        self._known.pop(uuid, None)
        with self._cond:
            self._delayed.pop(uuid, None)

    # -- delivery ----------------------------------------------------------

    def _queue(self, event: virtevent.LifecycleEvent) -> None:
        """As libvirt: any event cancels a pending STOPPED of its instance; a STOPPED waits."""
        with self._cond:
            if self._delayed.pop(event.uuid, None) is not None:
                LOG.debug('Pending STOPPED dropped: %s came', event, instance_uuid=event.uuid)
            if event.transition == virtevent.EVENT_LIFECYCLE_STOPPED and self._stopped_delay > 0:
                self._delayed[event.uuid] = (time.monotonic() + self._stopped_delay, event)
                self._cond.notify_all()
            elif self._delivery is not None:
                self._delivery.submit(event)

    def _release_delayed(self) -> None:
        """Hand each pending STOPPED to the workers once it is due."""
        with self._cond:
            while not self._stopping:
                if not self._delayed:
                    self._cond.wait()
                    continue
                uuid, (due, event) = next(iter(self._delayed.items()))
                left = due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                del self._delayed[uuid]
                if self._delivery is not None:
                    self._delivery.submit(event)
