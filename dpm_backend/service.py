"""The DPMHost servicer: proto in, operation, proto out; nothing else.

Each call is checked first (request fields, then the host name), so an invalid
request never reaches the HMC. The reads Nova repeats on a schedule (host
status, instance list, instance info) are answered from a young partition
snapshot of the host's CPC when there is one (no HMC session needed);
otherwise one HMC session is checked out of the pool for the operation,
within the caller's deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import grpc
import zhmcclient

from dpm_api.v1 import dpm_host_pb2 as pb
from dpm_api.v1 import dpm_host_pb2_grpc as pb_grpc
from dpm_backend import errors
from dpm_backend import instance
from dpm_backend import naming
from dpm_backend import validation
from dpm_backend.call import Call
from dpm_backend.call import Deadline
from dpm_backend.hmc import PoolExhausted
from dpm_backend.hmc import SessionPool
from dpm_backend.host import Host
from dpm_backend.host import PartitionSizes
from dpm_backend.host import hypervisor_version
from dpm_backend.host import usage_of
from dpm_backend.jobs import JobWaiter
from dpm_backend.snapshot import SNAPSHOT_MAX_AGE
from dpm_backend.snapshot import Snapshots
from dpm_backend.watch import InstanceFeed
from dpm_backend.watch import TooManyWatchers
from dpm_backend.watch import Watcher

LOG = logging.getLogger(__name__)
T = TypeVar('T')
Operation = Callable[[Call, Host], T]

HYPERVISOR_TYPE = 'PRSM'
CPU_ARCH = 's390x'


def _info(info: instance.Info) -> pb.InstanceInfo:
    return pb.InstanceInfo(
        instance_uuid=info.instance_uuid,
        power_state=info.power_state,
        partition_status=info.status,
        partition_name=info.partition_name,
        partition_object_id=info.partition_object_id,
        vcpus=info.vcpus,
        memory_mb=info.memory_mb,
    )


# Seconds between checks of a WatchInstances stream's caller and end while no change comes.
WATCH_POLL = 0.5


class OperationSlots:
    """At most ``limit`` operations at once (the rest are shed); stop waits for them to end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy = 0
        self._changed = threading.Condition()

    def take(self) -> bool:
        with self._changed:
            if self._busy >= self.limit:
                return False
            self._busy += 1
            return True

    def give_back(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()

    def in_use(self) -> int:
        with self._changed:
            return self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Whether every operation ended within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._busy == 0, timeout)


class DPMHostServicer(pb_grpc.DPMHostServicer):
    """DPMHost for the hosts of one backend."""

    def __init__(
        self,
        hosts: dict[str, Host],
        pool: SessionPool,
        jobs: JobWaiter,
        sizes: PartitionSizes,
        max_concurrent_operations: int,
        default_deadline: float,
        problem_of: Callable[[str], str | None] | None = None,
        feed: InstanceFeed | None = None,
    ) -> None:
        self._hosts = hosts
        # Why a host is not served now (None: it is); what ListHosts reports.
        self._problem_of = problem_of or (lambda name: hosts[name].problem)
        self._pool = pool
        self._jobs = jobs
        self.slots = OperationSlots(max_concurrent_operations)
        self._default_deadline = default_deadline
        self._instance_locks = instance.InstanceLocks()
        # What WatchInstances streams: each host's instances, from the snapshots.
        self.feed = feed or InstanceFeed({n: h.config.cpc_object_id for n, h in hosts.items()})
        # Partition snapshots per CPC, for the reads Nova repeats on a schedule.
        self.snapshots = Snapshots(sizes, on_rows=self.feed.rows_changed)

    def _host(self, name: str) -> Host:
        host = self._hosts.get(name)
        if host is None:
            raise errors.host_not_found(name[:80])
        if host.problem is not None:
            raise errors.host_not_ready(host.name, host.problem)
        return host

    def _served(self, cpc_object_id: str):
        """Whether a partition name belongs to a host of this backend on that CPC."""
        names = [h.name for h in self._hosts.values() if h.config.cpc_object_id == cpc_object_id]

        def sized(partition_name: str) -> bool:
            return any(naming.instance_uuid_of(name, partition_name) for name in names)

        return sized

    def _deadline(self, context: grpc.ServicerContext) -> Deadline:
        remaining = context.time_remaining()
        if remaining is None or remaining > self._default_deadline:
            remaining = self._default_deadline
        return Deadline(remaining, context.is_active)

    def _call(
        self,
        context: grpc.ServicerContext,
        action: str,
        host_name: str,
        operation: Operation,
        response_type: type,
        check: Callable[[], object] = lambda: None,
        instance_uuid: str | None = None,
        cached: Callable[[Host], object] = lambda host: None,
    ):
        """Check the request, then run ``operation`` with a pooled HMC client.

        ``cached`` may answer from what the backend holds (no HMC session
        needed); ``instance_uuid`` names the instance a changing operation
        works on: calls for it take turns, and snapshots forget it afterwards.
        """
        try:
            check()
            host = self._host(host_name)
            reply = cached(host)
            if reply is not None:
                return reply
            deadline = self._deadline(context)
            if not self.slots.take():
                raise errors.backend_busy(self.slots.limit)
            try:
                if instance_uuid is None:
                    return self._with_hmc(host, deadline, operation)
                # Calls for one instance take turns before they hold an HMC
                # session: one waiting its turn never keeps a session from
                # the other hosts.
                with self._instance_locks.hold(host.name, instance_uuid, deadline):
                    try:
                        return self._with_hmc(host, deadline, operation)
                    finally:
                        self.snapshots.mark(host.config.cpc_object_id, host.name, instance_uuid)
            finally:
                self.slots.give_back()
        except zhmcclient.Error as exc:
            error = errors.from_hmc(exc, action)
        except PoolExhausted as exc:
            error = errors.sessions_busy(action, str(exc))
        except errors.DPMError as exc:
            error = exc
        except Exception:
            # A bug, not a foreseeable case: keep its text out of the reply.
            LOG.exception('%s for host %r failed unexpectedly', action, host_name[:80])
            error = errors.internal(action)
        # The host name comes from the request: repr() keeps it on one log line.
        LOG.info('%s for host %r failed: %s %s', action, host_name[:80], error.code.name, error)
        status = error.to_status()
        # Status, details and ErrorInfo go in the trailers; the empty reply is
        # never seen by the caller. (grpc_testing drops trailers on abort.)
        context.set_trailing_metadata(status.trailing_metadata)
        context.set_code(status.code)
        context.set_details(status.details)
        return response_type()

    def _with_hmc(self, host: Host, deadline: Deadline, operation: Operation):
        with self._pool.client(timeout=deadline.remaining()) as client:
            call = Call(client, self._pool.dialect(client), self._jobs, deadline)
            return operation(call, host)

    def _status(self, host: Host, facts, snapshot) -> pb.GetHostStatusResponse:
        host.check_cpc(facts)
        usage = usage_of(
            (row.ifl_processors, row.initial_memory) for row in snapshot.owned(host.name).values()
        )
        return pb.GetHostStatusResponse(
            status=pb.HostStatus(
                host=host.name,
                cpc_name=facts.name,
                cpc_object_id=facts.object_id,
                cpc_status=facts.status,
                hypervisor_type=HYPERVISOR_TYPE,
                hypervisor_version=hypervisor_version(facts.se_version),
                cpu_arch=CPU_ARCH,
                storage_path=(
                    pb.STORAGE_PATH_STORAGE_GROUPS
                    if facts.storage_management
                    else pb.STORAGE_PATH_VHBA
                ),
                vcpus_total=host.config.max_processors,
                vcpus_used=usage.vcpus,
                memory_mb_total=host.config.max_memory,
                memory_mb_used=usage.memory_mb,
                instance_count=usage.count,
            )
        )

    def _held_snapshot(self, host: Host, key: str):
        """A snapshot that answers without an HMC request, or None."""
        cpc = host.config.cpc_object_id
        snapshot = self.snapshots.cached(cpc, key)
        if snapshot is None and not self._pool.has_free_session():
            # Every session is busy (long jobs): do not queue a read behind them.
            snapshot = self.snapshots.cached(cpc, key, max_age=SNAPSHOT_MAX_AGE)
        return snapshot

    def _take(self, call: Call, host: Host):
        cpc = host.config.cpc_object_id
        return self.snapshots.take(call, cpc, self._served(cpc))

    def _snapshot(self, call: Call, host: Host):
        cpc = host.config.cpc_object_id
        return self.snapshots.cached(cpc, host.name) or self._take(call, host)

    def ListHosts(self, request, context):
        # The backend's own state only: no HMC request, no operation slot.
        # With tokens, the auth interceptor keeps the hosts the caller may act for.
        hosts = []
        for name in self._hosts:
            problem = self._problem_of(name)
            hosts.append(pb.HostServing(host=name, serving=problem is None, problem=problem or ''))
        return pb.ListHostsResponse(hosts=hosts)

    def GetHostStatus(self, request, context):
        def cached(host):
            facts = host.cached_facts()
            snapshot = self._held_snapshot(host, host.name)
            if facts is None or snapshot is None:
                return None
            return self._status(host, facts, snapshot)

        def operation(call, host):
            return self._status(host, host.facts(call), self._snapshot(call, host))

        return self._call(
            context,
            'get host status',
            request.host,
            operation,
            pb.GetHostStatusResponse,
            cached=cached,
        )

    def ListInstances(self, request, context):
        def respond(host, snapshot):
            infos = instance.infos_in(snapshot, host)
            return pb.ListInstancesResponse(instances=[_info(info) for info in infos])

        def cached(host):
            snapshot = self._held_snapshot(host, host.name)
            return None if snapshot is None else respond(host, snapshot)

        return self._call(
            context,
            'list instances',
            request.host,
            lambda call, host: respond(host, self._snapshot(call, host)),
            pb.ListInstancesResponse,
            cached=cached,
        )

    def GetInstanceInfo(self, request, context):
        def partition_name(host):
            return naming.partition_name(host.name, request.instance_uuid)

        def respond(host, snapshot):
            info = instance.info_in(snapshot, host, request.instance_uuid)
            return pb.GetInstanceInfoResponse(info=_info(info))

        def cached(host):
            snapshot = self._held_snapshot(host, partition_name(host))
            return None if snapshot is None else respond(host, snapshot)

        def operation(call, host):
            cpc = host.config.cpc_object_id
            snapshot = self.snapshots.cached(cpc, partition_name(host))
            return respond(host, snapshot or self._take(call, host))

        return self._call(
            context,
            'get instance info',
            request.host,
            operation,
            pb.GetInstanceInfoResponse,
            check=lambda: validation.instance_uuid(request.instance_uuid),
            cached=cached,
        )

    def WatchInstances(self, request, context):
        watcher = self._watcher(request, context)
        if watcher is None:
            return
        try:
            yield self._watch_response(
                pb.WATCH_KIND_CURRENT_STATE, watcher.sequence, watcher.current
            )
            while context.is_active():
                change = watcher.next(timeout=WATCH_POLL)
                if change is not None:
                    yield self._watch_response(
                        pb.WATCH_KIND_CHANGE, change.sequence, [change.state]
                    )
                elif watcher.ended:
                    if watcher.reason == 'too slow':
                        error = errors.watcher_too_slow(watcher.host, self.feed.buffer)
                    elif watcher.reason == 'standby':
                        error = errors.backend_standby(
                            'watch instances', 'it lost the lease of the HMC lock'
                        )
                    else:
                        error = errors.backend_stopping('watch instances')
                    LOG.info('WatchInstances for host %r ends: %s', watcher.host, error.code.name)
                    context.abort_with_status(error.to_status())
        finally:
            self.feed.unwatch(watcher)

    def _watcher(self, request, context) -> Watcher | None:
        """A watcher from the host's current state (read once if none is known yet)."""
        try:
            host = self._host(request.host)
            watcher = self.feed.watch(host.name)
        except errors.DPMError as exc:
            context.abort_with_status(exc.to_status())
        except TooManyWatchers as exc:
            context.abort_with_status(errors.too_many_watchers(str(exc)).to_status())
        if watcher is not None:
            return watcher
        # No snapshot of the host's CPC yet: one List Partitions makes one.
        read = self._call(
            context,
            'watch instances',
            request.host,
            lambda call, host: self._snapshot(call, host) is not None,
            pb.WatchInstancesResponse,
        )
        if read is not True:
            return None  # the status is set
        try:
            return self.feed.watch(host.name)
        except TooManyWatchers as exc:
            context.abort_with_status(errors.too_many_watchers(str(exc)).to_status())
        return None

    def _watch_response(self, kind, sequence: int, states) -> pb.WatchInstancesResponse:
        return pb.WatchInstancesResponse(
            kind=kind,
            sequence=sequence,
            epoch=self.feed.epoch,
            instances=[state.to_pb() for state in states],
            notifications=self.feed.notifications,
        )

    def PrepareInstance(self, request, context):
        checked: dict[str, Any] = {}

        def check():
            checked['uuid'] = validation.instance_uuid(request.instance_uuid)
            checked['flavor'] = validation.flavor(request.flavor, request.HasField('flavor'))

        def operation(call, host):
            info, wwpns = instance.prepare(call, host, checked['uuid'], checked['flavor'])
            return pb.PrepareInstanceResponse(info=_info(info), wwpns=wwpns)

        return self._call(
            context,
            'prepare instance',
            request.host,
            operation,
            pb.PrepareInstanceResponse,
            check,
            request.instance_uuid,
        )

    def GetVolumeConnector(self, request, context):
        def operation(call, host):
            wwpns = instance.volume_connector(call, host, request.instance_uuid)
            return pb.GetVolumeConnectorResponse(wwpns=wwpns)

        return self._call(
            context,
            'get volume connector',
            request.host,
            operation,
            pb.GetVolumeConnectorResponse,
            check=lambda: validation.instance_uuid(request.instance_uuid),
        )

    def Spawn(self, request, context):
        checked: dict[str, Any] = {}

        def check():
            checked['spec'] = validation.spawn(request)

        def operation(call, host):
            spec = checked['spec']
            others = [h for h in self._hosts.values() if h.name != host.name]
            try:
                info, value = instance.spawn(call, host, spec, others)
            finally:
                if spec.stop_other_hosts_partitions:
                    # Their partitions of the instance may have been stopped.
                    for other in others:
                        cpc = other.config.cpc_object_id
                        self.snapshots.mark(cpc, other.name, spec.instance_uuid)
            return pb.SpawnResponse(info=_info(info), boot_os_specific_parameters=value)

        return self._call(
            context,
            'spawn',
            request.host,
            operation,
            pb.SpawnResponse,
            check,
            request.instance_uuid,
        )

    def AttachVolume(self, request, context):
        checked: dict[str, Any] = {}

        def check():
            validation.instance_uuid(request.instance_uuid)
            checked['volume'] = validation.attach_volume(request)

        def operation(call, host):
            instance.attach_volume(call, host, request.instance_uuid, checked['volume'])
            return pb.AttachVolumeResponse()

        return self._call(
            context,
            'attach volume',
            request.host,
            operation,
            pb.AttachVolumeResponse,
            check,
            request.instance_uuid,
        )

    def DetachVolume(self, request, context):
        def check():
            validation.instance_uuid(request.instance_uuid)
            validation.volume_id(request.volume_id)

        def operation(call, host):
            existed = instance.detach_volume(call, host, request.instance_uuid, request.volume_id)
            return pb.DetachVolumeResponse(existed=existed)

        return self._call(
            context,
            'detach volume',
            request.host,
            operation,
            pb.DetachVolumeResponse,
            check,
            request.instance_uuid,
        )

    def _simple(self, request, context, action: str, response_type, run, respond):
        def operation(call, host):
            return respond(run(call, host, request.instance_uuid))

        return self._call(
            context,
            action,
            request.host,
            operation,
            response_type,
            check=lambda: validation.instance_uuid(request.instance_uuid),
            instance_uuid=request.instance_uuid,
        )

    def Destroy(self, request, context):
        def run(call, host, instance_uuid):
            return instance.destroy(call, host, instance_uuid, not request.wwpns_known)

        return self._simple(
            request,
            context,
            'destroy',
            pb.DestroyResponse,
            run,
            lambda done: pb.DestroyResponse(existed=done[0], wwpns=done[1]),
        )

    def PowerOff(self, request, context):
        return self._simple(
            request,
            context,
            'power off',
            pb.PowerOffResponse,
            instance.power_off,
            lambda info: pb.PowerOffResponse(info=_info(info)),
        )

    def PowerOn(self, request, context):
        return self._simple(
            request,
            context,
            'power on',
            pb.PowerOnResponse,
            instance.power_on,
            lambda info: pb.PowerOnResponse(info=_info(info)),
        )

    def Reboot(self, request, context):
        return self._simple(
            request,
            context,
            'reboot',
            pb.RebootResponse,
            instance.reboot,
            lambda info: pb.RebootResponse(info=_info(info)),
        )
