"""One DPMHost operation's hold on the HMC: its client, the HMC's dialect, jobs, deadline."""

from __future__ import annotations

import dataclasses
import time

import zhmcclient

from dpm_backend import errors
from dpm_backend.dialect import Dialect
from dpm_backend.jobs import JobWaiter


class Deadline:
    """The time left for an operation; HMC waits never outlast the caller."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, action: str) -> None:
        """DEADLINE_EXCEEDED if no time is left for ``action``."""
        if self.remaining() <= 0:
            raise errors.hmc_timeout(action)


@dataclasses.dataclass(frozen=True)
class Call:
    """What an operation needs to talk to the HMC, checked out for its duration."""

    client: zhmcclient.Client
    dialect: Dialect
    jobs: JobWaiter
    deadline: Deadline
