"""Stopping a run the way a user or a scheduler does: a real SIGTERM right after a given iteration."""
import signal
import threading
from pathlib import Path
from typing import List

import pytest

from inet.compose import compose
from inet.engine import Engine
from inet.run.runner import RunInterrupted, run


def stop_at(monkeypatch, k: int) -> None:
    """Deliver a real SIGTERM to this process right after iteration k."""
    assert threading.current_thread() is threading.main_thread(), "signal handlers need the main thread"
    original = Engine.step

    def step(self):
        out = original(self)
        if self.iteration == k:
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(Engine, "step", step)


def run_until(monkeypatch, overrides: List[str], run_dir: Path, k: int) -> None:
    """Start the run of `overrides` in `run_dir` and stop it with SIGTERM after iteration k (checkpointed)."""
    stop_at(monkeypatch, k)
    with pytest.raises(RunInterrupted):
        run(compose(overrides), run_dir, "config: test\n")
    monkeypatch.undo()
