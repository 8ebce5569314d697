"""Numeric guards: NaN in a PU output, a loss or a gradient stops the run in that iteration, or is skipped."""
import hashlib
import math

import pytest
import torch

from inet import rollout as rollout_module
from inet.compose import compose
from inet.engine import Engine
from inet.guards import NonFiniteError
from inet.run import checkpoint
from inet.run.runner import run
from inet.tape import Tape
from inet.tasks.env import Step

OVERRIDES = ["experiment=multitask/base", "iterations=1500", "log_interval=100", "checkpoint_interval=300",
             "progress=false", "seed=1"]
K = 450  # the NaN appears in the step that ends at this iteration; the last checkpoint is at 300


class Injector:
    """Turns NaN injection on for the steps ending in [start, stop), and snapshots the checkpoint first."""

    def __init__(self, monkeypatch, run_dir, start: int, stop: int):
        self.on, self.digest = False, None
        original = Engine.step

        def step(engine):
            self.on = start <= engine.iteration + engine.lanes < stop
            if self.on and self.digest is None:
                self.digest = hashlib.sha256((run_dir / checkpoint.FILENAME).read_bytes()).hexdigest()
            return original(engine)

        monkeypatch.setattr(Engine, "step", step)


def nan_pu_output(monkeypatch, inj):
    original = rollout_module.run_pu
    monkeypatch.setattr(rollout_module, "run_pu",
                        lambda pu, inputs, n: [o * math.nan if inj.on else o for o in original(pu, inputs, n)])


def nan_loss(monkeypatch, inj):
    original = Step.add_loss
    monkeypatch.setattr(Step, "add_loss", lambda step, node, lanes, loss: original(
        step, node, lanes, (lambda v: loss(v) * math.nan) if inj.on else loss))


def nan_gradient(monkeypatch, inj):
    original = Tape.sweep

    def sweep(tape, pus):
        visited = original(tape, pus)
        if inj.on:
            for p in (p for pu in pus.values() for p in pu.parameters()):  # pus: the PUs as the tape runs them
                if p.grad is not None:
                    p.grad.view(-1)[0] = math.nan
        return visited

    monkeypatch.setattr(Tape, "sweep", sweep)


@pytest.mark.parametrize("inject, message", [
    (nan_pu_output, r"PU 'pu\d' wrote a non-finite value into node 'n\d'"),
    (nan_loss, r"the loss on node 'n2' is nan"),
    (nan_gradient, r"PU 'pu\d' got a non-finite gradient"),
])
def test_nan_stops_the_run_in_its_iteration_naming_it_and_the_intact_checkpoint(tmp_path, monkeypatch, inject,
                                                                               message):
    out = tmp_path / "run"
    inj = Injector(monkeypatch, out, K, 10**9)
    inject(monkeypatch, inj)
    with pytest.raises(NonFiniteError, match=message) as err:
        run(compose(OVERRIDES), out, "config: test\n")
    text = str(err.value)
    first = int(text.split(":")[0].removeprefix("iteration "))
    assert K <= first <= K + 10  # the first step with a loss or a gradient on or after K (usually K itself)
    assert f"{out / checkpoint.FILENAME} (iteration 300)" in text and "nonfinite=skip" in text
    assert hashlib.sha256((out / checkpoint.FILENAME).read_bytes()).hexdigest() == inj.digest
    monkeypatch.undo()
    state = checkpoint.load(out / checkpoint.FILENAME, compose(OVERRIDES))
    engine = Engine(compose(OVERRIDES))
    engine.load_state_dict(state["engine"])
    assert engine.iteration == 300
    engine.step()
    assert all(torch.isfinite(p).all() for p in engine.pus.parameters())


def test_nonfinite_skip_drops_and_counts_the_updates(tmp_path, monkeypatch):
    out = tmp_path / "run"
    inj = Injector(monkeypatch, out, K, K + 10)  # NaN PU outputs in 10 iterations (every action is a PU run)
    nan_pu_output(monkeypatch, inj)
    summary = run(compose([*OVERRIDES, "nonfinite=skip"]), out, "config: test\n")
    assert summary["nonfinite_skipped"] == 10
    assert summary["iterations"] == 1500
    state = torch.load(out / checkpoint.FILENAME, weights_only=True)["engine"]
    assert all(torch.isfinite(v).all() for v in state["pus"].values())
    assert all(torch.isfinite(v).all() for v in state["nodes"]["values"].values())
