"""Protecting trained PUs per use (paper 6.1, 6.6; inet/protect.py): exploration runs, outlier uses, and
gradient normalisation across routes, each checked on a constructed case against plain autograd."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from inet.compose import compose
from inet.config import ConfigError, PUOptimConfig
from inet.engine import Engine
from inet.nodes import ENV
from inet.protect import UseScaler
from inet.tape import Tape

CPU = torch.device("cpu")


def scaler(**kw) -> UseScaler:
    return UseScaler(dataclasses.replace(PUOptimConfig(), **kw), CPU)


def chain(random: torch.Tensor, **kw) -> tuple:
    """Two lanes run p0 -> p1; a loss on p1's output. Returns the parameter gradients and the scaler."""
    torch.manual_seed(0)
    pus = nn.ModuleDict({"0": nn.Linear(2, 2), "1": nn.Linear(2, 2)})
    use = scaler(**kw)
    tape = Tape(horizon=4, scaler=use)
    x = torch.randn(2, 2)
    r0 = tape.record("0", [0, 1], ["a"], [x], [[ENV, ENV]], ["b"])
    h = pus["0"](x).detach()
    r1 = tape.record("1", [0, 1], ["b"], [h], [[r0, r0]], ["c"], random=random)
    g = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    tape.add_grad([r1, r1], "c", [0, 1], g)
    tape.sweep(pus)
    return {n: p.grad.clone() for n, p in pus.named_parameters()}, use, pus, x, g


def test_a_run_taken_by_exploration_passes_on_its_gradient_times_random_use_scale():
    got, use, pus, x, g = chain(torch.tensor([False, True]), random_use_scale=0.25)
    pus.zero_grad()
    weight = torch.tensor([[1.0], [0.25]])  # lane 1 was random: its whole path is weighted
    (pus["1"](pus["0"](x)) * g * weight).sum().backward()
    for n, p in pus.named_parameters():
        torch.testing.assert_close(got[n], p.grad, msg=n)
    assert use.metrics()["random_uses_scaled"] == 1


def test_without_random_runs_or_with_scale_one_the_gradient_is_plain_backpropagation():
    plain, *_ = chain(torch.tensor([False, False]), random_use_scale=0.25)
    off, use, *_ = chain(torch.tensor([True, True]))
    assert not use.active
    for n in plain:
        torch.testing.assert_close(plain[n], off[n], msg=n)


def test_use_guard_damps_an_outlier_use_to_k_times_the_running_norm():
    use = scaler(use_guard=3.0, guard_beta=0.5)
    (first,) = use.scale("p", [torch.tensor([[3.0, 4.0]])], None)  # norm 5 sets the average, unscaled
    assert first.equal(torch.tensor([[3.0, 4.0]]))
    (g,) = use.scale("p", [torch.tensor([[30.0, 40.0], [0.6, 0.8], [0.0, 0.0]])], None)
    torch.testing.assert_close(g[0].norm(), torch.tensor(15.0))  # 50 > 3 x 5: damped to 15
    assert g[1].equal(torch.tensor([0.6, 0.8])) and g[2].abs().sum() == 0  # usual and unused rows untouched
    assert use.metrics()["uses_guarded"] == 1
    torch.testing.assert_close(use.ema["p"], torch.tensor(0.5 * 5 + 0.5 * (15 + 1) / 2))  # the damped norms


def test_use_normalise_brings_every_use_to_unit_norm_and_keeps_directions():
    use = scaler(use_normalise=True, random_use_scale=0.5)
    first = use.scale("p", [torch.tensor([[0.0, 2.0]])], None)  # the first use too: there is no average to wait for
    torch.testing.assert_close(first[0], torch.tensor([[0.0, 1.0]]))
    (g,) = use.scale("p", [torch.tensor([[0.0, 20.0], [0.1, 0.0], [0.0, 0.0]])], None)
    torch.testing.assert_close(g, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))  # rows no loss reached stay 0
    # a use over two outputs is one use: its joint norm is 1; random_use_scale weights it after
    (x, y) = use.scale("q", [torch.tensor([[3.0]]), torch.tensor([[0.0, 4.0]])], torch.tensor([True]))
    torch.testing.assert_close(torch.cat([x, y], 1), torch.tensor([[0.3, 0.0, 0.4]]))
    assert use.ema == {}  # nothing running to keep or resume


def test_use_normalise_leaves_the_cus_gradient_at_its_size_on_the_tape():
    """Lane 0's value gets the CU's gradient, lane 1's an Environment loss, on one record and in two records
    (a record read by another, p0 -> p1): only the loss rows are rescaled, along the whole chain."""
    torch.manual_seed(0)
    pus = nn.ModuleDict({"0": nn.Linear(2, 2), "1": nn.Linear(2, 2)})
    tape = Tape(horizon=4, scaler=scaler(use_normalise=True))
    x = torch.randn(2, 2)
    r0 = tape.record("0", [0, 1], ["a"], [x], [[ENV, ENV]], ["b"])
    r1 = tape.record("1", [0, 1], ["b"], [pus["0"](x).detach()], [[r0, r0]], ["c"])
    cu, loss = torch.tensor([[0.03, -0.04]]), torch.tensor([[6.0, 8.0]])
    tape.add_grad([r1], "c", [0], cu, cu=True)
    tape.add_grad([r1], "c", [1], loss)
    tape.sweep(pus)
    got = {n: p.grad.clone() for n, p in pus.named_parameters()}
    pus.zero_grad()
    h = pus["0"](x)
    b = h.detach().requires_grad_()
    (pus["1"](b) * torch.cat([cu, loss / 10.0])).sum().backward()  # the CU's row as it came, the loss row at norm 1
    passed = b.grad.clone()
    passed[1] /= passed[1].norm()  # p0's use in lane 1 is a loss's too: at unit norm again; lane 0's as it came
    (h * passed).sum().backward()
    for n, p in pus.named_parameters():
        torch.testing.assert_close(got[n], p.grad, msg=n)
    use = scaler(use_normalise=True)
    (all_cu,) = use.scale("p", [torch.tensor([[0.3, 0.4]])], None, True)
    assert all_cu.equal(torch.tensor([[0.3, 0.4]]))


def test_with_random_use_scale_zero_exploration_runs_teach_the_pus_nothing():
    """epsilon = 1 throughout: every PU run is random, so scale 0 leaves every PU as it was built."""
    explore = ["cu.exploration_initial_eps=1.0", "cu.exploration_final_eps=1.0"]
    base = ["experiment=multitask/cu_inputs", "iterations=300", "lanes=2", *explore]
    for scale, changes in ((0.0, False), (1.0, True)):
        engine = Engine(compose([*base, f"pu_optim.random_use_scale={scale}"]))
        before = {k: v.clone() for k, v in engine.pus.state_dict().items()}
        while engine.iteration < 300:
            engine.step()
        same = all(v.equal(engine.pus.state_dict()[k]) for k, v in before.items())
        assert same != changes, (scale, same)
    assert engine.metrics()["random_uses_scaled"] == 0  # scale 1 is off: nothing counted


def test_the_protection_state_resumes_and_its_counts_are_logged():
    overrides = ["experiment=multitask/cu_inputs", "iterations=400", "pu_optim.use_guard=2.0",
                 "pu_optim.random_use_scale=0.5"]
    engine = Engine(compose(overrides))
    while engine.iteration < 400:
        engine.step()
    m = engine.metrics()
    assert m["random_uses_scaled"] > 0 and m["uses_guarded"] >= 0
    fresh = Engine(compose(overrides))
    fresh.load_state_dict(engine.state_dict())
    assert fresh.protect.ema.keys() == engine.protect.ema.keys() and fresh.metrics()["random_uses_scaled"] == m["random_uses_scaled"]
    assert {"random_uses_scaled", "uses_guarded"} <= {k.name for k in engine.diagnostics()}


@pytest.mark.parametrize("override,key", [
    ("pu_optim.random_use_scale=1.5", "pu_optim.random_use_scale"),
    ("pu_optim.use_guard=0.5", "pu_optim.use_guard"),
])
def test_bad_protection_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        compose(["experiment=multitask/cu_inputs", override])


def test_use_guard_and_use_normalise_together_are_refused():
    with pytest.raises(ConfigError, match="pu_optim.use_guard: use_normalise"):
        compose(["experiment=multitask/cu_inputs", "pu_optim.use_guard=3", "pu_optim.use_normalise=true"])
