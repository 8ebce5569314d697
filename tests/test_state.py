"""Seeding and exact save/restore of the whole engine state (nodes, tape, CU, replay, RNGs, KPIs)."""
import io

import pytest
import torch

from inet.compose import compose
from inet.engine import Engine


def run(engine: Engine, steps: int) -> list:
    out = []
    for _ in range(steps):
        step = engine.step()
        out.append((step.actions.tolist(), step.reward.tolist()))
    return out


def params(engine: Engine) -> list:
    return [p.detach().clone() for p in [*engine.pus.parameters(), *engine.cu.q.parameters()]]


def test_same_seed_same_run_different_seed_different_run():
    overrides = ["experiment=multitask/base", "iterations=3000"]
    a, b, c = (Engine(compose([*overrides, f"seed={s}"])) for s in (0, 0, 1))
    ta, tb, tc = run(a, 800), run(b, 800), run(c, 800)
    assert ta == tb
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    assert ta != tc


def same_values(a: dict, b: dict) -> bool:
    """Equal dicts, a NaN (a metric not measured, e.g. a mechanism that is off) equal to a NaN."""
    return a.keys() == b.keys() and all(x == y or (x != x and y != y) for x, y in ((a[k], b[k]) for k in a))


@pytest.mark.parametrize("overrides", [["experiment=multitask/base"], ["experiment=multitask/cu_inputs", "lanes=4"]])
def test_restored_engine_continues_exactly(overrides):
    """Save mid-run (mid task instance, tape non-empty), restore into a fresh engine: identical future."""
    cfg = compose([*overrides, "iterations=4000", "seed=2"])
    a = Engine(cfg)
    run(a, 700)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = Engine(cfg)
    run(b, 13)  # diverge first, so that loading must overwrite everything
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert len(b.tape) == len(a.tape) > 0
    assert run(a, 500) == run(b, 500)
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    assert same_values(a.metrics(), b.metrics())
