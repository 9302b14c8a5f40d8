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
import json
import logging
import re
import threading
import time
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
from dpm_hmc_sim.dump import dump_hmc
from dpm_hmc_sim.errors import HmcError
from dpm_hmc_sim.errors import not_found
from dpm_hmc_sim.jobs import JOBS_URI
from dpm_hmc_sim.jobs import JobBook
from dpm_hmc_sim.jobs import JobClock
from dpm_hmc_sim.sessions import Session
from dpm_hmc_sim.sessions import SessionTable

LOG = logging.getLogger(__name__)

SESSION_HEADER = 'X-API-Session'
PARTITION_OP = re.compile(r'/api/partitions/([^/?]+)/operations/(start|stop)')
PARTITION = re.compile(r'/api/partitions/([^/?]+)')
NIC = re.compile(r'/api/partitions/([^/?]+)/nics/([^/?]+)')
HBAS = re.compile(r'/api/partitions/([^/?]+)/hbas')


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a test or the command line may change while the simulator runs."""

    start_seconds: float = 1.0  # duration of a Start Partition job
    stop_seconds: float = 1.0  # duration of a Stop Partition job
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
        """Change settings at run time (start_seconds, latency, enabled, ...)."""
        with self.lock:
            self._settings = self._settings.replace(**settings)
            return self._settings

    def set_outcome(self, partition_name: str, operation: str, outcome: str) -> None:
        """How the next Start/Stop Partition jobs of this partition end (rules.OUTCOMES)."""
        if outcome not in rules.OUTCOMES.get(operation, ()):
            choices = {op: list(outs) for op, outs in rules.OUTCOMES.items()}
            raise ValueError(f'no outcome {outcome!r} for {operation!r} (known: {choices})')
        with self.lock:
            if outcome == rules.OUTCOMES[operation][0]:
                self._outcomes.pop((partition_name, operation), None)
            else:
                self._outcomes[(partition_name, operation)] = outcome

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

    def dump(self, *, jobs: bool = True) -> dict[str, Any]:
        """The state as an HMC definition dict, plus ``jobs`` unless jobs=False.

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
            return state

    def record_dropped(self, method: str, uri: str) -> None:
        """A request the outage swallowed: no status (0)."""
        with self.lock:
            self._records.append(RequestRecord(time.time(), method, uri, 0, None, None))

    def close(self) -> None:
        self._clock.close()

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
            try:
                reply = self._dispatch(method, uri, headers, body, context)
            except HmcError as exc:
                reply = Reply(exc.status, exc.body(method, uri))
            except FakedHTTPError as exc:
                reply = Reply(exc.http_status, exc.response())
            except Exception as exc:  # a simulator or mock bug: an HMC would answer 500
                LOG.exception('%s %s failed', method, uri)
                reply = Reply(500, HmcError(500, 0, f'simulator error: {exc!r}').body(method, uri))
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
        if method == 'GET':
            return self._get_properties
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
                'notification-topic': f'hmc-sim-topic-{session.session_id[:8]}',
                'job-notification-topic': f'hmc-sim-job-topic-{session.session_id[:8]}',
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
                operations.finish_job(self._hmc, job)

    def _start_stop(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition_uri, _, operation = path.rpartition('/operations/')
        partition = operations.partition_of(self._hmc, partition_uri, method, uri)
        allowed = rules.START_FROM if operation == 'start' else rules.STOP_FROM
        prior = operations.require_status(partition, allowed)
        outcome = self._outcomes.get((partition.name, operation), rules.OUTCOMES[operation][0])
        duration = (
            self._settings.start_seconds if operation == 'start' else self._settings.stop_seconds
        )
        job = self._jobs.add(operation, partition.uri, outcome, prior, time.monotonic() + duration)
        partition.properties['status'] = rules.TRANSITIONAL[operation]
        if duration <= 0:
            self._finish_due_jobs()
        else:
            self._clock.schedule(job.due)
        return Reply(202, {'job-uri': job.uri}, {'Location': job.uri})

    # --- partitions, NICs, HBAs ---------------------------------------------------------

    def _update_partition(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition = self._lookup(path, uri)
        operations.refuse_read_only(body, rules.PARTITION_READ_ONLY)
        if partition.properties.get('status') in rules.UPDATE_NOT_IN:
            raise HmcError(409, rules.INVALID_STATE_REASON, rules.INVALID_STATE_MESSAGE)
        return self._mock(method, uri, body)

    def _delete_partition(self, method: str, uri: str, path: str, body: Any) -> Reply:
        partition = operations.partition_of(self._hmc, path, method, uri)
        operations.require_status(partition, rules.DELETE_FROM)
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
        created = result.get('object-uri') or result.get('element-uri')
        if created and '/operations/' not in uri:
            return Reply(201, result, {'Location': created})
        return Reply(200, result)


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
