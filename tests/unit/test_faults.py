"""Fault points: injected failures, and the pause a chaos bench arms to act at a known moment."""

from __future__ import annotations

import os
import threading

import pytest

from rec_models.faults import InjectedFault, PauseControl, checkpoint
from rec_models.names import PAUSE_DIR_ENV


def test_an_injected_fault_raises_only_at_its_point(monkeypatch):
    monkeypatch.setenv("RECS_FAULTS", "train:done")
    checkpoint("train:epoch")
    with pytest.raises(InjectedFault, match="train:done"):
        checkpoint("train:done")
    with pytest.raises(ValueError, match="unknown fault point"):
        checkpoint("train:nowhere")


def test_an_armed_point_pauses_the_first_task_only_until_released(monkeypatch, tmp_path):
    monkeypatch.setenv(PAUSE_DIR_ENV, str(tmp_path))
    control = PauseControl(tmp_path)
    checkpoint("publish:after_stage")  # not armed: passes
    control.arm("publish:after_stage")
    passed = threading.Event()

    def task():
        checkpoint("publish:after_stage")
        passed.set()

    thread = threading.Thread(target=task)
    thread.start()
    paused = control.wait_paused("publish:after_stage", timeout=10)
    assert paused["pid"] == os.getpid() and paused["point"] == "publish:after_stage"
    assert not passed.wait(0.5)  # held there
    checkpoint("publish:after_stage")  # a second task (a retry) is not held: the point was claimed
    control.release("publish:after_stage")
    thread.join(timeout=10)
    assert passed.is_set()
