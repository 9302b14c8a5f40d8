"""Per-instance turns: a waiter gives up at its deadline, and the table holds only live turns."""

from __future__ import annotations

import threading
import time

import pytest

from dpm_backend import errors
from dpm_backend.call import Deadline
from dpm_backend.instance import InstanceLocks


def test_a_turn_lives_only_while_a_call_holds_or_waits_for_it():
    locks = InstanceLocks()
    with locks.hold('cpc1', 'a'), locks.hold('cpc1', 'b'):
        assert len(locks) == 2
    assert len(locks) == 0


def test_a_waiter_gives_up_at_its_deadline_and_leaves_nothing_behind():
    locks = InstanceLocks()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locks.hold('cpc1', 'a'):
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        started = time.monotonic()
        with pytest.raises(errors.DPMError) as caught, locks.hold('cpc1', 'a', Deadline(0.2)):
            pass
        assert caught.value.reason_name == 'INSTANCE_BUSY'
        assert 0.15 < time.monotonic() - started < 1
        # Another instance's turn is not held up meanwhile.
        with locks.hold('cpc1', 'b', Deadline(0.2)):
            pass
    finally:
        release.set()
        holder.join(5)
    assert len(locks) == 0
