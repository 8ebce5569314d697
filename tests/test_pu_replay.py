"""PU-side replay (paper 6.4 (a); inet/pu_replay.py): what is kept, the replay loss's gradient, the engine."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from inet.compose import compose
from inet.config import ConfigError
from inet.engine import Engine
from inet.nodes import ENV
from inet.pu_replay import PUReplay
from inet.tape import Tape

CPU = torch.device("cpu")


def test_a_swept_use_is_kept_with_the_squared_errors_minimum_as_its_target():
    torch.manual_seed(0)
    pus = nn.ModuleDict({"p": nn.Linear(3, 2)})
    replay = PUReplay(count=4, size=10, step=0.5, seed=0, device=CPU)
    tape = Tape(horizon=2, replay=replay)
    x, target = torch.randn(1, 3), torch.tensor([[0.3, -0.7]])
    rid = tape.record("p", [0], ["a"], [x], [[ENV]], ["b"])
    y = pus["p"](x).detach()
    tape.add_grad([rid], "b", [0], 2 * (y - target))  # d/dy of ||y - target||^2
    tape.sweep(pus)
    assert replay.filled == {"p": 1}
    torch.testing.assert_close(replay.targets["p"][0][0], target[0])
    torch.testing.assert_close(replay.inputs["p"][0][0], x[0])

    pus.zero_grad()
    replay.backward(pus)  # every draw is the one pair: 0.5 ||p(x) - target||^2
    got = [p.grad.clone() for p in pus.parameters()]
    pus.zero_grad()
    (0.5 * (pus["p"](x) - target).square().sum()).backward()
    for a, b in zip(got, pus.parameters()):
        torch.testing.assert_close(a, b.grad)
    assert replay.metrics()["pu_replay_loss"] > 0


def test_rows_that_got_no_gradient_are_not_kept_and_the_ring_wraps():
    replay = PUReplay(count=2, size=3, step=1.0, seed=0, device=CPU)
    x = torch.arange(4.0).view(4, 1)
    out = (x * 10,)
    grad = torch.tensor([[1.0], [0.0], [2.0], [3.0]])  # row 1 is padding of a batched recompute
    replay.add("p", [x], out, [grad])
    assert replay.filled["p"] == 3 and sorted(replay.inputs["p"][0].flatten().tolist()) == [0.0, 2.0, 3.0]
    replay.add("p", [torch.tensor([[9.0]])], (torch.tensor([[1.0]]),), [torch.tensor([[1.0]])])
    assert replay.filled["p"] == 3 and 9.0 in replay.inputs["p"][0].flatten().tolist()
    assert replay.targets["p"][0][replay.inputs["p"][0].flatten() == 9.0].item() == 0.0  # 1 - 1.0 x 1


def test_an_engine_with_pu_replay_trains_on_it_and_resumes_it():
    overrides = ["experiment=multitask/cu_inputs", "lanes=2", "pu_optim.replay=8", "pu_optim.replay_size=64"]
    engine = Engine(compose(overrides))
    while engine.iteration < 300:
        engine.step()
    m = engine.metrics()
    assert m["pu_replay_loss"] > 0 and set(engine.pu_replay.filled) <= set(engine.pus)
    fresh = Engine(compose(overrides))
    fresh.load_state_dict(engine.state_dict())
    assert fresh.pu_replay.filled == engine.pu_replay.filled
    assert all(a.equal(b) for a, b in zip(fresh.pu_replay.targets["pu0"], engine.pu_replay.targets["pu0"]))
    plain = Engine(compose(overrides[:2]))
    assert plain.pu_replay is None and plain.metrics()["pu_replay_loss"] != plain.metrics()["pu_replay_loss"]


@pytest.mark.parametrize("override,key", [("pu_optim.replay=-1", "pu_optim.replay"),
                                          ("pu_optim.replay_size=0", "pu_optim.replay_size"),
                                          ("pu_optim.replay_step=0", "pu_optim.replay_step")])
def test_bad_replay_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        compose(["experiment=multitask/cu_inputs", override])
