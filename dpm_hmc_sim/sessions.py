"""The HMC's API sessions: logon, the X-API-Session check, idle expiry, logoff.

zhmcclient's mock accepts any session id and never forgets one (its Logoff
handler is a no-op, zc mock/_urihandler.py ThisSessionHandler), so a client's
re-logon path never runs against it. This table is the simulator's own.
Not thread-safe: the Simulator calls it under its lock.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import secrets
import time


@dataclasses.dataclass
class Session:
    """One logged-on API session."""

    session_id: str
    userid: str
    credential: str
    last_used: float

    @property
    def object_topic(self) -> str:
        """Its JMS topic for object notifications (Logon's ``notification-topic``)."""
        return f'hmc-sim-topic-{self.session_id[:8]}'

    @property
    def job_topic(self) -> str:
        """Its JMS topic for its jobs' completions (Logon's ``job-notification-topic``)."""
        return f'hmc-sim-job-topic-{self.session_id[:8]}'


@dataclasses.dataclass
class Counts:
    """Logons, refused logons and logoffs of one userid."""

    logons: int = 0
    refused: int = 0
    logoffs: int = 0


class SessionTable:
    """Sessions by id, with per-userid counts."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self.counts: dict[str, Counts] = collections.defaultdict(Counts)

    def logon(self, userid: str, password: str, *, expected: tuple[str, str], refused: bool):
        """A new session, or None when the HMC refuses the logon."""
        good_userid = hmac.compare_digest(userid.encode(), expected[0].encode())
        good_password = hmac.compare_digest(password.encode(), expected[1].encode())
        if refused or not (good_userid and good_password):
            self.counts[userid].refused += 1
            return None
        session = Session(
            session_id=secrets.token_hex(16),
            userid=userid,
            credential=secrets.token_hex(16),
            last_used=self._clock(),
        )
        self._sessions[session.session_id] = session
        self.counts[userid].logons += 1
        return session

    def touch(self, session_id: str, timeout: float) -> Session | None:
        """The valid session with this id, marked as used now; None if unknown or idle too long."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if timeout > 0 and now - session.last_used > timeout:
            del self._sessions[session_id]
            return None
        session.last_used = now
        return session

    def get(self, session_id: str) -> Session | None:
        """The session with this id, without marking it used."""
        return self._sessions.get(session_id)

    def live(self, timeout: float) -> list[Session]:
        """The sessions not idle for longer than ``timeout`` (0: all)."""
        now = self._clock()
        return [
            session
            for session in self._sessions.values()
            if timeout <= 0 or now - session.last_used <= timeout
        ]

    def credential_valid(self, session_id: str, credential: str, timeout: float) -> bool:
        """Whether a live session has this id and credential (a STOMP logon may use them)."""
        session = self._sessions.get(session_id)
        if session is None or not hmac.compare_digest(
            credential.encode(), session.credential.encode()
        ):
            return False
        return timeout <= 0 or self._clock() - session.last_used <= timeout

    def logoff(self, session: Session) -> None:
        if self._sessions.pop(session.session_id, None) is not None:
            self.counts[session.userid].logoffs += 1

    def expire_all(self) -> int:
        """Forget every session, as an HMC does when they time out; returns how many."""
        expired = len(self._sessions)
        self._sessions.clear()
        return expired

    def __len__(self) -> int:
        return len(self._sessions)
