"""Shortcuts (paper 6.7; inet/shortcut.py): a student PU trained on what a teacher PU writes into its node."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CUConfig, EnvConfig, NodeConfig, PUConfig, RunConfig, ShortcutConfig
from inet.engine import Engine
from inet.nodes import Nodes
from inet.shortcut import Shortcut

SCRIPTED = CUConfig(script="inet.tasks.regression.teacher", inputs=["history"])  # always runs the teacher


def chain(weight: float, max_loss=None, lanes: int = 8, freeze: bool = True, lr=None, seed: int = 0) -> Engine:
    """x -> y by a teacher MLP (frozen: a fixed f); a student MLP x -> y with the given shortcut. The scripted CU
    only ever runs the teacher; the regression Environment writes x and puts its MSE loss (per lane) on y."""
    nodes = {"x": NodeConfig(shape=[2]), "y": NodeConfig(shape=[2])}
    pus = {"teacher": PUConfig(inputs=["x"], outputs=["y"], hidden=[16], activation="tanh", freeze=freeze),
           "student": PUConfig(inputs=["x"], outputs=["y"], hidden=[32], lr=lr,
                               shortcut=ShortcutConfig(weight=weight, max_loss=max_loss))}
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=["x"], outputs=["y"],
                    params={"pu": "teacher"})
    return Engine(RunConfig(nodes=nodes, pus=pus, envs={"r": env}, lanes=lanes, cu=SCRIPTED, seed=seed))


def spy_grads(engine: Engine) -> list:
    """Each PU optimizer call's gradients, PU -> [grad or None per parameter], in order."""
    calls = []
    step = engine.pu_optimizer.step

    def spy():
        calls.append({n: [None if p.grad is None else p.grad.clone() for p in pu.parameters()]
                      for n, pu in engine.pus.items()})
        return step()

    engine.pu_optimizer.step = spy
    return calls


def probe_error(engine: Engine) -> float:
    """Mean squared distance of student and teacher on 256 fixed probe inputs in [-1, 1]^2."""
    x = torch.rand(256, 2, generator=torch.Generator().manual_seed(123)) * 2 - 1
    with torch.no_grad():
        return float((engine.pus["student"](x)[0] - engine.pus["teacher"](x)[0]).square().sum(1).mean())


def test_the_student_learns_the_frozen_teachers_function():
    """The student is never run; from the teacher's writes alone its error on probe inputs falls 100-fold in 2000
    lane-iterations (seed 0: 0.27 -> 1.5e-4); with the shortcut off it does not move."""
    engine = chain(weight=1.0, lr=1e-2)
    before = probe_error(engine)
    while engine.iteration < 2000:
        engine.step()
    after = probe_error(engine)
    assert after < before / 100, (before, after)
    m = engine.metrics()
    assert m["shortcut_pairs"] == 1.0  # one pair per lane-iteration: the teacher writes y in every lane
    assert 0 <= m["shortcut_loss"] < before
    off = chain(weight=0.0, lr=1e-2)
    while off.iteration < 2000:
        off.step()
    assert probe_error(off) == before


def test_the_students_gradient_is_its_weighted_loss_on_the_inputs_before_the_write_and_nothing_else_moves():
    """Against plain autograd: weight x 0.5 mean ||student(x) - teacher(x)||^2 with x as the teacher read it (the
    Environment writes a new x in the same iteration). The teacher (trainable here) gets exactly the gradients
    and parameters it gets with the shortcut off, and no PU but the student is touched."""
    on, off = chain(weight=0.5, freeze=False), chain(weight=0.0, freeze=False)
    assert off.shortcut is None
    seen_on, seen_off = spy_grads(on), spy_grads(off)
    for _ in range(5):
        x = on.nodes.values["x"].clone()
        student, teacher = copy.deepcopy(on.pus["student"]), copy.deepcopy(on.pus["teacher"])
        on.step()
        off.step()
        assert not torch.equal(on.nodes.values["x"], x)  # a new task instance started after the write
        with torch.no_grad():
            target = teacher(x)[0]
        (0.5 * 0.5 * (student(x)[0] - target).square().sum(1).mean()).backward()
        for got, want in zip(seen_on[-1]["student"], student.parameters()):
            torch.testing.assert_close(got, want.grad, rtol=1e-5, atol=1e-8)
        assert all(g is None for g in seen_off[-1]["student"])
        for a, b in zip(seen_on[-1]["teacher"], seen_off[-1]["teacher"]):
            assert torch.equal(a, b)
    for a, b in zip(on.pus["teacher"].parameters(), off.pus["teacher"].parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(on.pus["student"].parameters(), off.pus["student"].parameters()))


def per_lane_losses(engine: Engine) -> torch.Tensor:
    """The regression loss each lane's teacher value will get in the next step: mean (teacher(x) - sin(pi x))^2."""
    x = engine.nodes.values["x"]
    with torch.no_grad():
        return (engine.pus["teacher"](x)[0] - torch.sin(math.pi * x)).square().mean(1)


def test_with_max_loss_only_teacher_values_whose_loss_is_at_most_it_become_targets():
    losses = per_lane_losses(chain(weight=1.0))
    limit = float(losses.median())
    kept = losses <= limit
    assert 0 < int(kept.sum()) < len(losses)
    engine = chain(weight=1.0, max_loss=limit)
    seen = spy_grads(engine)
    x = engine.nodes.values["x"].clone()
    student, teacher = copy.deepcopy(engine.pus["student"]), copy.deepcopy(engine.pus["teacher"])
    engine.step()
    assert engine.shortcut.pairs == int(kept.sum())
    with torch.no_grad():
        target = teacher(x[kept])[0]
    (0.5 * (student(x[kept])[0] - target).square().sum(1).mean()).backward()
    for got, want in zip(seen[-1]["student"], student.parameters()):
        torch.testing.assert_close(got, want.grad, rtol=1e-5, atol=1e-8)


def test_a_teacher_whose_values_all_have_a_high_loss_teaches_nothing():
    engine = chain(weight=1.0, max_loss=0.0)  # the frozen random teacher is never exactly sin(pi x)
    start = [p.clone() for p in engine.pus["student"].parameters()]
    for _ in range(20):
        engine.step()
    assert engine.shortcut.pairs == 0 and engine.metrics()["shortcut_pairs"] == 0.0
    assert math.isnan(engine.metrics()["shortcut_loss"])
    assert all(torch.equal(a, b) for a, b in zip(start, engine.pus["student"].parameters()))


def waiting_shortcut() -> tuple:
    """A Shortcut over nodes x -> y for 3 lanes, student s with max_loss 0.1, teacher t; t wrote lanes 0 and 2
    (record 5) and lane 1 (record 6)."""
    cfgs = {"t": PUConfig(inputs=["x"], outputs=["y"]),
            "s": PUConfig(inputs=["x"], outputs=["y"], shortcut=ShortcutConfig(weight=1.0, max_loss=0.1))}
    nodes = Nodes({"x": NodeConfig(shape=[1]), "y": NodeConfig(shape=[1])}, 3, torch.device("cpu"))
    nodes.values["x"] = torch.tensor([[1.0], [2.0], [3.0]])
    sc = Shortcut(cfgs, nodes)
    sc.watch(nodes, "t", [0, 2], torch.tensor([0, 2]), (torch.tensor([[10.0], [30.0]]),), 5)
    sc.watch(nodes, "t", [1], torch.tensor([1]), (torch.tensor([[20.0]]),), 6)
    return sc, nodes


def test_a_waiting_pair_is_used_only_for_its_own_value_and_a_low_loss():
    sc, _ = waiting_shortcut()
    assert sc.teachers == {"t": [("s", 0)]} and sc.waiting_writer["s"] == [5, 6, 5]
    # lane 0: its value, low loss -> used; lane 1: y was overwritten (record 9) -> not matched; lane 2: high loss
    sc.judge("y", [0, 1, 2], [5, 9, 5], torch.tensor([0.05, 0.0, 0.5]))
    ((xs, target),) = sc.ready["s"]
    assert xs[0].tolist() == [[1.0]] and target.tolist() == [[10.0]]
    assert sc.waiting_writer["s"] == [-1, 6, -1]  # judged pairs leave; lane 1's waits (and never matches 9)
    with pytest.raises(ConfigError, match=r"pus\.s\.shortcut\.max_loss: .*summed over lanes"):
        sc.judge("y", [0, 1], [-1, 6], torch.tensor(0.0))


def test_waiting_pairs_are_part_of_the_state():
    sc, nodes = waiting_shortcut()
    fresh = Shortcut({"t": PUConfig(inputs=["x"], outputs=["y"]),
                      "s": PUConfig(inputs=["x"], outputs=["y"], shortcut=ShortcutConfig(weight=1.0, max_loss=0.1))},
                     nodes)
    fresh.load_state_dict(sc.state_dict())
    for s in (sc, fresh):
        s.judge("y", [1, 2], [6, 5], torch.tensor([0.0, 0.0]))
    ((xa, ta),), ((xb, tb),) = sc.ready["s"], fresh.ready["s"]
    assert torch.equal(xa[0], xb[0]) and torch.equal(ta, tb) and ta.tolist() == [[20.0], [30.0]]


def test_an_engine_with_a_shortcut_resumes_exactly():
    """Saved mid log interval and loaded into a fresh engine, both go on identically (parameters, pairs, loss)."""
    overrides = ["experiment=multitask/shortcut", "lanes=2", "cu.learning_starts=50"]
    engine = Engine(compose(overrides))
    while engine.iteration < 400:
        engine.step()
    assert engine.shortcut.pairs > 0
    fresh = Engine(compose(overrides))
    fresh.load_state_dict(copy.deepcopy(engine.state_dict()))
    for _ in range(100):
        engine.step()
        fresh.step()
    for a, b in zip(engine.pus.parameters(), fresh.pus.parameters()):
        assert torch.equal(a, b)
    m, n = engine.metrics(), fresh.metrics()
    assert m["shortcut_loss"] == n["shortcut_loss"] and m["shortcut_pairs"] == n["shortcut_pairs"] > 0


def test_the_shortcut_is_off_by_default_and_reports_nan():
    assert PUConfig().shortcut == ShortcutConfig(weight=0.0, max_loss=None)
    for experiment in ("multitask/cu_inputs", "reduce/xor"):
        cfg = compose([f"experiment={experiment}"])
        assert all(p.shortcut.weight == 0 for p in cfg.pus.values())
        engine = Engine(cfg)
        assert engine.shortcut is None
        engine.step()
        m = engine.metrics()
        assert math.isnan(m["shortcut_loss"]) and math.isnan(m["shortcut_pairs"])
    assert {"shortcut_loss", "shortcut_pairs"} <= {k.name for k in engine.diagnostics()}


STUDENT = "+pus.short={kind: mlp, inputs: [n0, n1], outputs: [n2]}"


@pytest.mark.parametrize("overrides, key, words", [
    ([STUDENT, "+pus.short.shortcut.weight=-1"], "pus.short.shortcut.weight", "must be >= 0"),
    (["pus.pu1.shortcut.max_loss=0.1"], "pus.pu1.shortcut.max_loss", "the shortcut is off"),
    (["+shortcut=multitask", "pus.short.shortcut.max_loss=-1"], "pus.short.shortcut.max_loss", "must be >= 0"),
    (["pus.pu0.shortcut.weight=1"], "pus.pu0.shortcut.weight", "no other PU writes node 'n3'"),
    (["+shortcut=multitask", "pus.short.freeze=true"], "pus.short.shortcut.weight", "nothing to train"),
    (["+pus.two={inputs: [n0], outputs: [n2, n3], shortcut: {weight: 1.0}}"], "pus.two.shortcut.weight",
     "writes exactly one node"),
    (["+nodes.m={kind: combiner, k: 2}", "+pus.short={inputs: [m], outputs: [n2], shortcut: {weight: 1.0}}"],
     "pus.short.shortcut.weight", "node 'm' is combiner"),
])
def test_bad_shortcut_settings_are_refused_naming_the_key(overrides, key, words):
    with pytest.raises(ConfigError, match=rf"{key}: .*{words}"):
        compose(["experiment=multitask/cu_inputs", *overrides])


def test_students_do_not_teach_each_other():
    """Two students of one node and no other writer: neither has a teacher."""
    with pytest.raises(ConfigError, match=r"pus\.pu1\.shortcut\.weight: no other PU writes node 'n2'"):
        compose(["experiment=multitask/cu_inputs", "pus.pu1.shortcut.weight=1", "pus.pu2.shortcut.weight=1"])
