"""What a failing prepare or spawn must take back, in reverse order."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import zhmcclient

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Undo:
    """Steps that remove what the current call created (NICs are kept apart)."""

    nics: list[zhmcclient.Nic] = dataclasses.field(default_factory=list)
    steps: list[tuple[str, Callable[[], object]]] = dataclasses.field(default_factory=list)
    # What the storage path read earlier in this call (no second read).
    memo: dict[str, Any] = dataclasses.field(default_factory=dict)

    def add(self, what: str, step: Callable[[], object]) -> None:
        self.steps.append((what, step))

    def run_steps(self) -> None:
        """Run the steps, last first; each is logged (and the first failure raised)."""
        while self.steps:
            what, step = self.steps.pop()
            step()
            LOG.warning('Rolled back: %s', what)
