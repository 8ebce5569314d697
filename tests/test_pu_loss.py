"""Per-PU loss (inet/pu_loss.py): a node loss counts for every PU whose records its gradient reaches through the
tape, `tape.horizon` records deep, and for no other."""
import math

import pytest
import torch

from inet.compose import compose
from inet.engine import Engine
from inet.nodes import ENV
from inet.pu_loss import PULosses, reached_pus
from inet.tape import Tape


def chain(tape: Tape) -> list:
    """Records of a chain a -> b -> c on lanes [0, 1] (a reads an Environment value), and an unrelated d."""
    x = [torch.zeros(2, 1)]
    a = tape.record("a", [0, 1], ["n0"], x, [[ENV, ENV]], ["n1"])
    b = tape.record("b", [0, 1], ["n1"], x, [[a, a]], ["n2"])
    c = tape.record("c", [0, 1], ["n2"], x, [[b, b]], ["n3"])
    d = tape.record("d", [0, 1], ["n0"], x, [[ENV, ENV]], ["n4"])
    return [a, b, c, d]


def test_a_loss_reaches_the_writers_and_their_inputs_writers_up_to_the_horizon():
    tape = Tape(horizon=2)
    a, b, c, d = chain(tape)
    assert reached_pus(tape, [c, c], horizon=2) == {"c", "b"}
    assert reached_pus(tape, [c, c], horizon=3) == {"c", "b", "a"}
    assert reached_pus(tape, [c, ENV], horizon=1) == {"c"}
    assert reached_pus(tape, [ENV, ENV], horizon=4) == set()  # an Environment's value: no PU
    assert reached_pus(tape, [b, d], horizon=4) == {"b", "a", "d"}  # per lane, its own writer


def test_each_pu_gets_the_mean_per_lane_loss_of_the_losses_that_reached_it():
    tape = Tape(horizon=4)
    a, b, c, d = chain(tape)
    losses = PULosses(["a", "b", "c", "d", "e"], horizon=4)
    losses.add(tape, [c, c], 6.0)  # 3 per lane, reaches c, b, a
    losses.add(tape, [d], 1.0)  # 1 on one lane, reaches d
    losses.add(tape, [b, d], 4.0)  # 2 per lane, reaches b, a and d
    means = losses.means()
    assert means["pu_loss/c"] == 3.0 and means["pu_loss/d"] == 5.0 / 3
    assert means["pu_loss/a"] == means["pu_loss/b"] == 10.0 / 4
    assert math.isnan(means["pu_loss/e"])  # no loss reached it
    losses.reset()
    assert all(math.isnan(v) for v in losses.means().values())


def test_the_engine_reports_the_submitted_loss_for_the_pu_that_wrote_it():
    """Multitask with its scripted route on one lane: every loss is on n2, which pu1 or pu2 wrote."""
    engine = Engine(compose(["experiment=multitask/base", "cu.script=inet.tasks.multitask.teacher"]))
    submitted = {"pu1": [], "pu2": []}
    for _ in range(60):
        step = engine.step()
        pu = engine.action_names[int(step.actions[0])]
        if pu in submitted:  # writing n2 submits it
            submitted[pu].append(float(engine.stats["pu_loss"]))  # env_scale 1, one lane: the raw loss
    means = engine.metrics()
    for pu, values in submitted.items():
        assert values and means[f"pu_loss/{pu}"] == pytest.approx(sum(values) / len(values))
    assert math.isnan(means["pu_loss/pu0"])  # pu0 writes n3, which no loss is on
    engine.start_interval()
    assert all(math.isnan(engine.metrics()[f"pu_loss/{pu}"]) for pu in ("pu0", "pu1", "pu2"))
