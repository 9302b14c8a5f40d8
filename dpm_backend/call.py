"""One DPMHost operation's hold on the HMC: its client, the HMC's dialect, jobs, deadline."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from collections.abc import Iterator

import zhmcclient

from dpm_backend import errors
from dpm_backend.dialect import Dialect
from dpm_backend.jobs import JobWaiter


class Deadline:
    """The time left for an operation, and whether its caller still waits for it.

    HMC waits never outlast the caller; an irreversible step (create a
    partition, start it) begins only while the caller is there and with the
    time to finish it, so that a caller told DEADLINE_EXCEEDED is not left
    with a partition that came up after all.
    """

    def __init__(self, seconds: float, active: Callable[[], bool] = lambda: True) -> None:
        self.end = time.monotonic() + seconds
        self._active = active

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, action: str, needs: float = 0.0) -> None:
        """Raise unless the caller still waits and ``needs`` seconds are left for ``action``."""
        if not self._active():
            raise errors.call_cancelled(action)
        remaining = self.remaining()
        if remaining <= 0:
            raise errors.hmc_timeout(action)
        if remaining <= needs:
            raise errors.no_time_for(action, remaining, needs)


@dataclasses.dataclass(frozen=True)
class Call:
    """What an operation needs to talk to the HMC, checked out for its duration."""

    client: zhmcclient.Client
    dialect: Dialect
    jobs: JobWaiter
    deadline: Deadline

    def attempts(self, kind: str) -> Iterator[None]:
        """One turn per attempt at something the HMC may not show yet, paused between.

        The pauses are the job waiter's for ``kind``; no turn starts that the
        deadline could not wait for. The caller returns from the loop when an
        attempt succeeds, and fails after it.
        """
        for pause in self.jobs.pauses(kind):
            yield
            if self.deadline.remaining() <= pause:
                return
            self.jobs.sleep(pause)
