from __future__ import annotations

import itertools

import pytest

from easel.contract import TERMINAL, TaskStatus, can_transition, check_transition
from easel.contract.status import sources_of
from easel.errors import TransitionError


def test_terminal_states_never_change() -> None:
    for src, dst in itertools.product(TERMINAL, TaskStatus):
        assert not can_transition(src, dst)
        with pytest.raises(TransitionError):
            check_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst", "ok"),
    [
        ("queued", "processing", True),
        ("queued", "canceled", True),
        ("queued", "failed", True),
        ("queued", "succeeded", False),
        ("processing", "succeeded", True),
        ("processing", "failed", True),
        ("processing", "canceled", True),
        ("processing", "processing", True),
        ("processing", "queued", False),
    ],
)
def test_forward_only(src: str, dst: str, ok: bool) -> None:
    assert can_transition(src, dst) is ok


def test_sources_of() -> None:
    assert sources_of(TaskStatus.SUCCEEDED) == {TaskStatus.PROCESSING}
    assert sources_of(TaskStatus.CANCELED) == {TaskStatus.QUEUED, TaskStatus.PROCESSING}
