"""The Simulator: one HMC's state, sessions, jobs and rules, behind one lock.

``handle()`` answers one HTTP request the way an HMC of the definition's
version would: it checks the session, applies the version's query-parameter
rules, serves sessions, jobs and the operations in operations.py itself, and
passes everything else to zhmcclient's mock URI handlers
(``zhmcclient.mock._urihandler.URIS``) on a FakedHmc. zhmcclient's mock is not
thread-safe, so every state change and handler call happens under ``lock``.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from zhmcclient.mock._urihandler import URIS
from zhmcclient.mock._urihandler import FakedHTTPError
from zhmcclient.mock._urihandler import GenericGetPropertiesHandler
from zhmcclient.mock._urihandler import UriHandler

from dpm_hmc_sim import definition as definitions
from dpm_hmc_sim import operations
from dpm_hmc_sim import profiles
from dpm_hmc_sim import rules
from dpm_hmc_sim import storage
from dpm_hmc_sim.dump import dump_hmc
from dpm_hmc_sim.errors import HmcError
from dpm_hmc_sim.errors import not_found
from dpm_hmc_sim.fabric import Fabric
from dpm_hmc_sim.fabric import Lun
from dpm_hmc_sim.jobs import JOBS_URI
from dpm_hmc_sim.jobs import JobBook
from dpm_hmc_sim.jobs import JobClock
from dpm_hmc_sim.notifications import Notifier
from dpm_hmc_sim.notifications import Sink
from dpm_hmc_sim.notifications import Snapshot
from dpm_hmc_sim.sessions import Session
from dpm_hmc_sim.sessions import SessionTable

LOG = logging.getLogger(__name__)

SESSION_HEADER = 'X-API-Session'
PARTITION_OP = re.compile(r'/api/partitions/([^/?]+)/operations/(start|stop)')
PARTITION = re.compile(r'/api/partitions/([^/?]+)')
NIC = re.compile(r'/api/partitions/([^/?]+)/nics/([^/?]+)')
HBAS = re.compile(r'/api/partitions/([^/?]+)/hbas')
PARTITIONS = re.compile(r'/api/cpcs/([^/?]+)/partitions')
STORAGE_GROUPS = '/api/storage-groups'
SG_OP = re.compile(
    r'(/api/storage-groups/[^/?]+)/operations/'
    r'(modify|delete|start-fcp-storage-discovery|get-connection-report|get-partitions)'
)
FULFILL_FCP = re.compile(
    r'(/api/storage-groups/[^/?]+/storage-volumes/[^/?]+)/operations/fulfill-fcp-storage-volume'
)
VSR = re.compile(r'/api/storage-groups/[^/?]+/virtual-storage-resources/[^/?]+')
ATTACHMENT = re.compile(r'(/api/partitions/[^/?]+)/operations/(attach|detach)-storage-group')
VALIDATE_LUN_PATH = re.compile(r'(/api/cpcs/[^/?]+)/operations/validate-lun-path')


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a test or the command line may change while the simulator runs."""

    start_seconds: float = 1.0  # duration of a Start Partition job
    stop_seconds: float = 1.0  # duration of a Stop Partition job
    discover_seconds: float = 1.0  # duration of a Start FCP Storage Discovery job
    latency: float = 0.0  # seconds added to every HMC request
    session_timeout: float = 0.0  # idle seconds before a session expires; 0: never
    logon_refused: bool = False  # refuse every logon (403, reason 0)
    enabled: bool = True  # False: an outage, connections dropped unanswered

    def replace(self, **changes: Any) -> Settings:
        fields = {field.name: field for field in dataclasses.fields(self)}
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise ValueError(f'unknown setting {name!r} (known: {", ".join(fields)})')
            if fields[name].type == 'bool':
                if not isinstance(value, bool):
                    raise ValueError(f'{name} must be true or false, not {value!r}')
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f'{name} must be a number of seconds >= 0, not {value!r}')
            checked[name] = value
        return dataclasses.replace(self, **checked)


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HMC answer: status, JSON body (or None) and extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def reason(self) -> int | None:
        if self.status >= 400 and isinstance(self.body, dict):
            return self.body.get('reason')
        return None


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    """One HMC request as the simulator saw it; status 0: dropped during an outage."""

    time: float
    method: str
    uri: str
    status: int
    reason: int | None
    userid: str | None


class Simulator:
    """One simulated HMC."""

    def __init__(
        self,
        definition: str | Path | Mapping[str, Any],
        *,
        userid: str,
        password: str,
        fabric: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.definition = definitions.load(definition)
        self.profile = self.definition.profile
        self.lock = threading.RLock()
        self._credentials = (userid, password)
        self._settings = Settings().replace(**settings)
        self._uris = UriHandler(URIS)
        self._hmc = self.definition.faked_hmc()
        self._sessions = SessionTable()
        self._jobs = JobBook()
        self._clock = JobClock(self._finish_due_jobs)
        self._outcomes: dict[tuple[str, str], str] = {}
        self._records: list[RequestRecord] = []
        self._storage = storage.StorageState(Fabric.from_dict(fabric or {}))
        self._notifier = Notifier()
        self._request_session: Session | None = None  # of the request being handled
        self._before: Snapshot | None = None  # the HMC before the request being handled

    # --- admin interface -------------------------------------------------------

    @property
    def hmc(self) -> Any:
        """The FakedHmc (replaced by reset(); read it under ``lock``)."""
        return self._hmc

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def configure(self, **settings: Any) -> Settings:
        """Change settings at run time (start_seconds, latency, enabled, ...).

        ``fabric=`` replaces the simulated SAN (see :meth:`set_fabric`).
        """
        with self.lock:
            if 'fabric' in settings:
                self.set_fabric(settings.pop('fabric'))
            self._settings = self._settings.replace(**settings)
            return self._settings

    # --- the simulated SAN (fabric.py) ------------------------------------------------

    @property
    def fabric(self) -> dict[str, Any]:
        """The simulated SAN as a dict (fabric.py); it survives reset()."""
        with self.lock:
            return self._storage.fabric.to_dict()

    def set_fabric(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the SAN: ``{'open': bool, 'luns': [...]}`` (fabric.py); ValueError if bad."""
        fabric = Fabric.from_dict(spec)
        with self.lock:
            self._storage.fabric = fabric
            return fabric.to_dict()

    def expose_lun(
        self,
        target_wwpn: str,
        lun: str,
        *,
        size: float | None = None,
        host_wwpns: list[str] | None = None,
        uuid: str | None = None,
    ) -> dict[str, Any]:
        """Add a LUN to the SAN (what Cinder's initialize_connection does on an array).

        ``host_wwpns`` are the WWPNs it is masked to (None: every host); ``size`` in
        GiB is what discovery matches a volume definition by (None: any size).
        """
        spec: dict[str, Any] = {
            'target-world-wide-port-name': target_wwpn,
            'logical-unit-number': lun,
        }
        if size is not None:
            spec['size'] = size
        if host_wwpns is not None:
            spec['host-world-wide-port-names'] = list(host_wwpns)
        if uuid is not None:
            spec['uuid'] = uuid
        entry = Lun.from_dict(spec)
        with self.lock:
            self._storage.fabric = self._storage.fabric.with_lun(entry)
            return self._storage.fabric.to_dict()

    def set_outcome(self, partition_name: str, operation: str, outcome: str) -> None:
        """How the next jobs of this partition (start, stop) or storage group (discover) end.

        The outcomes are rules.OUTCOMES; the first of each is the default.
        """
        if outcome not in rules.OUTCOMES.get(operation, ()):
            choices = {op: list(outs) for op, outs in rules.OUTCOMES.items()}
            raise ValueError(f'no outcome {outcome!r} for {operation!r} (known: {choices})')
        with self.lock:
            if outcome == rules.OUTCOMES[operation][0]:
                self._outcomes.pop((partition_name, operation), None)
            else:
                self._outcomes[(partition_name, operation)] = outcome

    def guest_status(self, partition_name: str, status: str) -> str:
        """What the guest or an operator did outside the Web Services API (an in-guest
        ``shutdown -P`` leaves a DPM partition ``paused``): the partition's status
        changes, with the status-change notification the HMC publishes; returns the
        old status. Not an API request: it is not in the request log."""
        if status not in rules.PARTITION_STATUSES:
            raise ValueError(f'no partition status {status!r} (known: {rules.PARTITION_STATUSES})')
        with self.lock:
            self._finish_due_jobs()
            found = [
                p
                for cpc in self._hmc.cpcs.list()
                for p in cpc.partitions.list()
                if p.properties.get('name') == partition_name
            ]
            if len(found) != 1:
                raise ValueError(f'{len(found)} partitions are named {partition_name!r}')
            (partition,) = found
            before = dict(partition.properties)
            partition.properties['status'] = status
            if self._notifier.enabled:
                self._notifier.property_changes(self._object_topics(), partition, before)
            return str(before.get('status'))

    def expire_sessions(self) -> int:
        """Expire every session now; returns how many there were."""
        with self.lock:
            return self._sessions.expire_all()

    def session_counts(self) -> dict[str, Any]:
        """Logons, refused logons and logoffs per userid, and the open sessions."""
        with self.lock:
            counts = {user: dataclasses.asdict(c) for user, c in self._sessions.counts.items()}
            return {'open': len(self._sessions), 'userids': counts}

    def requests(self) -> list[RequestRecord]:
        with self.lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self.lock:
            self._records.clear()

    def reset(self) -> None:
        """Back to the pristine definition, without jobs or outcomes; sessions stay valid."""
        with self.lock:
            self._hmc = self.definition.faked_hmc()
            self._jobs.clear()
            self._outcomes.clear()
            self._storage.clear()

    def dump(self, *, jobs: bool = True) -> dict[str, Any]:
        """The state as an HMC definition dict, plus ``jobs`` and ``storage`` unless jobs=False.

        Storage groups, their volumes and virtual storage resources are in the
        console's ``storage_groups``; ``storage`` has what the HMC does not show:
        the fabric, the LUN of each fulfilled volume, the running discoveries.
        ``FakedSession.from_hmc_dict`` loads the ``hmc_definition`` part (its schema
        allows no other top-level key: pass ``jobs=False`` to load it whole).
        """
        with self.lock:
            self._finish_due_jobs()
            state = dump_hmc(
                self._hmc, self.definition.data['hmc_definition']['host'], self.definition.api_text
            )
            if jobs:
                state['jobs'] = [job.dump() for job in self._jobs]
                state['storage'] = self._storage.dump()
            return state

    def record_dropped(self, method: str, uri: str) -> None:
        """A request the outage swallowed: no status (0)."""
        with self.lock:
            self._records.append(RequestRecord(time.time(), method, uri, 0, None, None))

    def close(self) -> None:
        self._clock.close()
        self._notifier.close()

    # --- notifications (notifications.py, broker.py) ----------------------------------

    def publish_to(self, sink: Sink) -> None:
        """Publish HMC notifications through ``sink`` (a broker.Broker) from now on."""
        self._notifier.attach(sink)

    def stomp_logon(self, login: str, passcode: str) -> bool:
        """Whether the broker lets this STOMP CONNECT in: HMC userid and password, or
        an open API session's id and session credential."""
        with self.lock:
            if self._settings.logon_refused or not self._settings.enabled:
                return False
            userid, password = self._credentials
            if hmac.compare_digest(login.encode(), userid.encode()) and hmac.compare_digest(
                passcode.encode(), password.encode()
            ):
                return True
            return self._sessions.credential_valid(login, passcode, self._settings.session_timeout)

    def _object_topics(self) -> list[str]:
        return [s.object_topic for s in self._sessions.live(self._settings.session_timeout)]

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------

    def handle(
        self, method: str, uri: str, headers: Mapping[str, str], body: bytes | None
    ) -> Reply:
        """Answer one HMC request (after the configured latency, outside the lock)."""
        latency = self._settings.latency
        if latency > 0:
            time.sleep(latency)
        with self.lock:
            self._finish_due_jobs()
            context: dict[str, str] = {}
            if method in ('POST', 'DELETE'):
                self._before = self._notifier.snapshot(self._hmc, _target(uri))
            try:
                reply = self._dispatch(method, uri, headers, body, context)
                if self._before is not None and reply.status < 400:
                    self._notifier.changes(self._hmc, self._before, self._object_topics())
            except HmcError as exc:
                reply = Reply(exc.status, exc.body(method, uri))
            except FakedHTTPError as exc:
                reply = Reply(exc.http_status, exc.response())
            except Exception as exc:  # a simulator or mock bug: an HMC would answer 500
                LOG.exception('%s %s failed', method, uri)
                reply = Reply(500, HmcError(500, 0, f'simulator error: {exc!r}').body(method, uri))
            finally:
                self._before = None
                self._request_session = None
            record = RequestRecord(
                time.time(), method, uri, reply.status, reply.reason, context.get('userid')
            )
            self._records.append(record)
        LOG.debug('%s %s -> %s', method, uri, reply.status)
        return reply

    def _dispatch(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        raw_body: bytes | None,
        context: dict[str, str],
    ) -> Reply:
        path = uri.partition('?')[0]
        if method == 'GET' and path == '/api/version':
            return self._mock(method, uri, None)
        if method == 'POST' and path == '/api/sessions':
            return self._logon(_json_body(raw_body), context)
        session = self._session(headers)  # before anything else is looked at
        context['userid'] = session.userid
        self._request_session = session
        body = _json_body(raw_body)
        if path == '/api/sessions/this-session' and method == 'DELETE':
            self._sessions.logoff(session)
            return Reply(204)
        if path.startswith(JOBS_URI):
            return self._job_operation(method, path[len(JOBS_URI) :], uri)
        self._check_query_parms(method, uri)
        override = self._override(method, path)
        if override is not None:
            return override(method, uri, path, body)
        return self._mock(method, uri, body)

    def _override(self, method: str, path: str) -> Callable[..., Reply] | None:
        if method == 'POST' and PARTITION_OP.fullmatch(path):
            return self._start_stop
        if PARTITION.fullmatch(path) and method in ('POST', 'DELETE'):
            return self._update_partition if method == 'POST' else self._delete_partition
        if NIC.fullmatch(path) and method in ('POST', 'DELETE'):
            return self._update_nic if method == 'POST' else self._delete_nic
        if method == 'POST' and HBAS.fullmatch(path):
            return self._create_hba
        if method == 'POST' and PARTITIONS.fullmatch(path):
            return self._create_partition
        storage_override = self._storage_override(method, path)
        if storage_override is not None:
            return storage_override
        if method == 'GET':
            return self._get_properties
        return None

    def _storage_override(self, method: str, path: str) -> Callable[..., Reply] | None:
        if path.startswith(STORAGE_GROUPS):
            storage.require_api(self.definition.api_version, rules.STORAGE_GROUPS_SINCE, path)
        if method == 'POST' and path == STORAGE_GROUPS:
            return self._create_storage_group
        if SG_OP.fullmatch(path):
            return self._storage_group_operation
        if method == 'POST' and FULFILL_FCP.fullmatch(path):
            return self._fulfill_fcp
        if method == 'POST' and VSR.fullmatch(path):
            return self._update_vsr
        if method == 'POST' and ATTACHMENT.fullmatch(path):
            return self._attachment
        if method == 'POST' and VALIDATE_LUN_PATH.fullmatch(path):
            return self._validate_lun_path
        return None

    # --- sessions ---------------------------------------------------------------------

    def _logon(self, body: Any, context: dict[str, str]) -> Reply:
        if not isinstance(body, dict) or not {'userid', 'password'} <= body.keys():
            raise HmcError(400, 5, 'Missing required field in request body: userid, password')
        userid, password = str(body['userid']), str(body['password'])
        context['userid'] = userid
        session = self._sessions.logon(
            userid, password, expected=self._credentials, refused=self._settings.logon_refused
        )
        if session is None:
            raise HmcError(403, rules.LOGON_REFUSED_REASON, 'Logon failed for this userid')
        major, minor = self.definition.api_version
        return Reply(
            200,
            {
                'api-session': session.session_id,
                'session-credential': session.credential,
                # Topic names for JMS notifications (HMC WS API book, Logon response;
                # zc _session.py ~854): one pair per API session here.
                'notification-topic': session.object_topic,
                'job-notification-topic': session.job_topic,
                'api-major-version': major,
                'api-minor-version': minor,
                'password-expires': -1,
            },
        )

    def _session(self, headers: Mapping[str, str]) -> Session:
        session_id = headers.get(SESSION_HEADER)
        if not session_id:
            raise HmcError(403, rules.NO_SESSION_REASON, 'No X-API-Session header')
        session = self._sessions.touch(session_id, self._settings.session_timeout)
        if session is None:
            raise HmcError(
                403, rules.BAD_SESSION_REASON, 'The session id is not valid (expired or logged off)'
            )
        return session

    # --- jobs ----------------------------------------------------------------------------

    def _job_operation(self, method: str, job_id: str, uri: str) -> Reply:
        job = self._jobs.get(job_id)
        if job is None or method not in ('GET', 'DELETE'):
            raise not_found(uri)
        if method == 'GET':
            return Reply(200, job.query_status())
        if job.status == 'running':
            raise HmcError(409, rules.JOB_NOT_ENDED_REASON, 'The job has not ended')
        self._jobs.remove(job_id)
        return Reply(204)

    def _finish_due_jobs(self) -> None:
        with self.lock:
            for job in self._jobs.due(time.monotonic()):
                self._flush_request_changes()
                target = self._hmc.all_resources.get(job.target_uri)
                before = dict(target.properties) if target is not None else {}
                if job.operation == 'discover':
                    storage.finish_discovery(self._hmc, self._storage, job)
                else:
                    operations.finish_job(self._hmc, job)
                if self._notifier.enabled:
                    if target is not None:
                        self._notifier.property_changes(self._object_topics(), target, before)
                    starter = self._sessions.get(job.session_id)
                    self._notifier.job_completion(starter.job_topic if starter else None, job.uri)

    def _flush_request_changes(self) -> None:
        """Publish the request's changes so far, so that a job ending inside it comes after."""
        before = self._before
        if before is None or before.target is None:
            return
        self._notifier.changes(self._hmc, before, self._object_topics())
        self._before = self._notifier.snapshot(self._hmc, before.target.uri)

    def _start_stop(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition_uri, _, operation = path.rpartition('/operations/')
        partition = operations.partition_of(self._hmc, partition_uri, method, uri)
        allowed = rules.START_FROM if operation == 'start' else rules.STOP_FROM
        prior = operations.require_status(partition, allowed)
        outcome = rules.OUTCOMES[operation][0]
        if operation == 'start':
            volume = storage.boot_volume(self._hmc, partition)
            if volume is not None:
                outcome = storage.boot_outcome(self._hmc, self._storage, partition, volume)
        outcome = self._outcomes.get((partition.name, operation), outcome)
        duration = (
            self._settings.start_seconds if operation == 'start' else self._settings.stop_seconds
        )
        job = self._submit(operation, partition.uri, outcome, prior, duration)
        partition.properties['status'] = rules.TRANSITIONAL[operation]
        self._run_job(job, duration)
        return Reply(202, {'job-uri': job.uri}, {'Location': job.uri})

    def _submit(self, operation: str, target: str, outcome: str, prior: str, duration: float):
        session_id = self._request_session.session_id if self._request_session else ''
        due = time.monotonic() + duration
        return self._jobs.add(operation, target, outcome, prior, due, session_id)

    def _run_job(self, job: Any, duration: float) -> None:
        if duration <= 0:
            self._finish_due_jobs()
        else:
            self._clock.schedule(job.due)

    # --- partitions, NICs, HBAs ---------------------------------------------------------

    def _update_partition(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition = self._lookup(path, uri)
        operations.refuse_read_only(body, rules.PARTITION_READ_ONLY)
        status = partition.properties.get('status')
        if status in rules.UPDATE_NOT_IN:
            raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
        changes = body if isinstance(body, dict) else {}
        if status not in rules.STOPPED_ONLY_FROM and any(
            name in rules.STOPPED_ONLY_PROPERTIES and value != partition.properties.get(name)
            for name, value in changes.items()
        ):
            raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
        storage.check_partition_boot(
            self._hmc, self.definition.api_version, partition.manager.parent, partition, body
        )
        return self._mock(method, uri, body)

    def _create_partition(self, method: str, uri: str, path: str, body: Any) -> Reply:
        """Create Partition with an object ID that is unique on the HMC.

        zc's mock numbers new objects per manager from 1 (mock/_hmc.py
        FakedBaseManager._new_oid counts per manager), so the first partition
        created on each CPC is /api/partitions/1 and the second CPC's replaces the
        first in the HMC's URI table. A real HMC's object IDs are UUIDs (the
        definitions' and the samples in ans zhmc_partition.py).
        """
        cpc = self._lookup(path.removesuffix('/partitions'), uri)
        storage.check_partition_boot(self._hmc, self.definition.api_version, cpc, None, body)
        if isinstance(body, dict):
            operations.refuse_read_only(body, frozenset({'object-id', 'object-uri'}))
            body = {**body, 'object-id': str(uuid.uuid4())}
        reply = self._mock(method, uri, body)
        created = self._hmc.all_resources.get((reply.body or {}).get('object-uri', ''))
        if created is not None:
            storage.partition_features(cpc, created)
        return reply

    def _delete_partition(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition = operations.partition_of(self._hmc, path, method, uri)
        operations.require_status(partition, rules.DELETE_FROM)
        storage.refuse_delete_attached(partition)
        operations.delete_partition(self._hmc, partition)
        return Reply(204)

    def _update_nic(self, method: str, uri: str, path: str, body: Any) -> Reply:
        self._lookup(path, uri)
        operations.refuse_read_only(body, rules.NIC_READ_ONLY)
        return self._mock(method, uri, body)

    def _delete_nic(self, method: str, uri: str, path: str, body: Any) -> Reply:
        nic = self._lookup(path, uri)
        reply = self._mock(method, uri, body)
        operations.forget_vnic(self._hmc, nic.properties.get('virtual-switch-uri'), nic.uri)
        return reply

    def _create_hba(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition = self._lookup(path.removesuffix('/hbas'), uri)
        operations.refuse_hba_on_storage_management(partition)
        return self._mock(method, uri, body)

    # --- storage groups (storage.py) ---------------------------------------------------

    def _create_storage_group(self, method: str, uri: str, path: str, body: Any) -> Reply:
        result = storage.create_group(self._hmc, self._storage, body, method, uri)
        return Reply(201, result, {'Location': result['object-uri']})

    def _storage_group_operation(self, method: str, uri: str, path: str, body: Any) -> Reply:
        group_uri, operation = SG_OP.fullmatch(path).groups()  # type: ignore[union-attr]
        group = self._lookup(group_uri, uri)
        reads = ('get-connection-report', 'get-partitions')
        if (method == 'GET') != (operation in reads):
            raise HmcError(405, 1, f'Method {method} is not supported for {path}')
        if operation == 'get-partitions':
            query = dict(parse_qsl(uri.partition('?')[2], keep_blank_values=True))
            return Reply(200, storage.attached_summary(self._hmc, group, query))
        if operation == 'modify':
            result = storage.modify_group(self._hmc, self._storage, group, body, method, uri)
            return Reply(200, result)
        if operation == 'delete':
            storage.delete_group(self._hmc, self._storage, group, body, method, uri)
            return Reply(204)
        storage.require_api(self.definition.api_version, rules.FCP_DISCOVERY_SINCE, path)
        if operation == 'get-connection-report':
            storage.require_fcp(group, uri)
            empty = {'fcp-storage-subsystems': []}
            return Reply(200, self._storage.reports.get(group.uri, empty))
        return self._start_discovery(group, body, uri)

    def _start_discovery(self, group: Any, body: Any, uri: str) -> Reply:
        if storage.check_discovery(self._hmc, self._storage, group, body, uri):
            running = self._storage.discoveries.pop(group.uri)
            message = 'FCP storage discovery ended by a forced restart'
            running.complete(409, rules.BUSY_REASON, {'message': message})
        outcome = self._outcomes.get((group.name, 'discover'), rules.OUTCOMES['discover'][0])
        duration = self._settings.discover_seconds
        job = self._submit('discover', group.uri, outcome, '', duration)
        self._storage.discoveries[group.uri] = job
        self._run_job(job, duration)
        return Reply(202, {'job-uri': job.uri}, {'Location': job.uri})

    def _fulfill_fcp(self, method: str, uri: str, path: str, body: Any) -> Reply:
        volume = self._lookup(FULFILL_FCP.fullmatch(path).group(1), uri)  # type: ignore[union-attr]
        storage.fulfill_fcp(self._hmc, self._storage, volume, body, method, uri)
        return Reply(204)

    def _update_vsr(self, method: str, uri: str, path: str, body: Any) -> Reply:
        vsr = self._lookup(path, uri)
        storage.update_vsr(self._hmc, self._storage, vsr, body, method, uri)
        return Reply(204)

    def _attachment(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition_uri, verb = ATTACHMENT.fullmatch(path).groups()  # type: ignore[union-attr]
        storage.require_api(self.definition.api_version, rules.STORAGE_GROUPS_SINCE, path)
        partition = operations.partition_of(self._hmc, partition_uri, method, uri)
        change = storage.attach if verb == 'attach' else storage.detach
        change(self._hmc, self._storage, partition, body, method, uri)
        return Reply(204)

    def _validate_lun_path(self, method: str, uri: str, path: str, body: Any) -> Reply:
        cpc_uri = VALIDATE_LUN_PATH.fullmatch(path).group(1)  # type: ignore[union-attr]
        storage.require_api(self.definition.api_version, rules.STORAGE_GROUPS_SINCE, path)
        cpc = storage.storage_cpc(self._lookup(cpc_uri, uri), method, uri)
        storage.validate_lun_path(self._hmc, self._storage, cpc, body)
        return Reply(204)

    def _lookup(self, resource_uri: str, uri: str) -> Any:
        try:
            return self._hmc.lookup_by_uri(resource_uri)
        except KeyError:
            raise not_found(uri) from None

    # --- query parameters -----------------------------------------------------------------

    def _check_query_parms(self, method: str, uri: str) -> None:
        """400,1 for a query parameter this HMC version does not have (profiles.py)."""
        query = uri.partition('?')[2]
        if not query:
            return
        handler = self._handler(method, uri)
        if handler is None:
            return  # the mock answers 404
        is_get_properties = method == 'GET' and issubclass(handler, GenericGetPropertiesHandler)
        for name, _ in parse_qsl(query, keep_blank_values=True):
            since = profiles.query_parm_since(
                handler.__name__, name, is_get_properties=is_get_properties
            )
            if since is not None and self.definition.api_version < since:
                raise HmcError(400, profiles.QUERY_PARM_REASON, profiles.QUERY_PARM_MESSAGE)

    def _get_properties(self, method: str, uri: str, path: str, body: Any) -> Reply:
        """Get <object> Properties with ``properties=``: operations.select_properties."""
        path, _, query = uri.partition('?')
        handler = self._handler(method, uri)
        parms = parse_qsl(query, keep_blank_values=True)
        names = [value for name, value in parms if name == profiles.PROPERTIES]
        if (
            not names
            or handler is None
            or not issubclass(handler, GenericGetPropertiesHandler)
            or profiles.PROPERTIES not in handler.valid_query_parms_get
        ):
            return self._mock(method, uri, body)
        rest = '&'.join(
            item for item in query.split('&') if not item.startswith(profiles.PROPERTIES + '=')
        )
        reply = self._mock(method, f'{path}?{rest}' if rest else path, body)
        return Reply(reply.status, operations.select_properties(reply.body, ','.join(names)))

    def _handler(self, method: str, uri: str) -> type | None:
        try:
            return self._uris.handler(uri, method)[0]
        except FakedHTTPError:
            return None

    # --- zhmcclient's mock ----------------------------------------------------------------

    def _mock(self, method: str, uri: str, body: Any) -> Reply:
        if method == 'GET':
            return Reply(200, self._uris.get(self._hmc, uri, True))
        if method == 'DELETE':
            self._uris.delete(self._hmc, uri, True)
            return Reply(204)
        if method != 'POST':
            raise HmcError(405, 1, f'Method {method} is not supported')
        result = self._uris.post(self._hmc, uri, body, True, True)
        if result is None:
            return Reply(204)
        if not isinstance(result, dict):  # e.g. a list from Submit Bulk Operations
            return Reply(200, result)
        created = result.get('object-uri') or result.get('element-uri')
        if created and '/operations/' not in uri:
            return Reply(201, result, {'Location': created})
        return Reply(200, result)


def _target(uri: str) -> str:
    """The object a request changes: its path, less any ``/operations/...``."""
    return uri.partition('?')[0].partition('/operations/')[0]


def _json_body(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise HmcError(400, rules.BAD_BODY_REASON, 'The request body is not valid JSON') from None
    if not isinstance(body, dict):
        raise HmcError(400, rules.BAD_BODY_REASON, 'The request body is not a JSON object')
    return body
