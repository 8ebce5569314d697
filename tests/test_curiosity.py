"""Curiosity (paper 6.3; inet/cu/curiosity.py): each kind's intrinsic reward on constructed cases, its
schedule and normalisation, and how the engine adds it to the CU's reward."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CuriosityConfig
from inet.cu import ActInfo, Transition
from inet.cu.curiosity import Curiosity
from inet.engine import Engine

CPU = torch.device("cpu")


def curiosity(kind: str, learner=None, obs_dim: int = 3, n_actions: int = 2, node_dim: int = 2, **kw) -> Curiosity:
    cfg = dataclasses.replace(CuriosityConfig(), **{"kind": kind, "normalise": False, "weight": 1.0, **kw})
    return Curiosity(cfg, obs_dim, n_actions, node_dim, learner, seed=0, device=CPU)


def transition(obs: torch.Tensor, actions: torch.Tensor, next_obs=None, terminal=None) -> Transition:
    b = obs.shape[0]
    return Transition(obs, actions, torch.zeros(b), obs if next_obs is None else next_obs,
                      torch.zeros(b) if terminal is None else terminal)


@pytest.mark.parametrize("kind", ["forward", "rnd"])
def test_a_familiar_outcome_pays_less_than_a_new_one(kind):
    """Train on one outcome (action 0 leads to nodes [1, -1]) until familiar; a new outcome then pays more."""
    c = curiosity(kind, lr=1e-2)
    obs = torch.tensor([[0.5, 0.0, 1.0]])
    seen = torch.tensor([[1.0, -1.0]])
    first = c.reward(transition(obs, torch.tensor([0])), seen, None, 0).item()
    for _ in range(300):
        last = c.reward(transition(obs, torch.tensor([0])), seen, None, 0).item()
    assert last < 0.05 * first
    c.optimizer.param_groups[0]["lr"] = 0.0  # the probes below must not train the model
    familiar = c.reward(transition(obs, torch.tensor([0])), seen, None, 0).item()
    new = c.reward(transition(obs, torch.tensor([1])), torch.tensor([[-3.0, 2.0]]), None, 0).item()
    assert new > 20 * familiar, (familiar, new)


class Quantiles:
    """A fake distributional learner: action a's quantiles at obs x are x[0] + (a + 1) * x[1] * [-1, 0, 1]."""

    def act(self, obs, iteration, greedy=False, explore_scale=None):
        spread = torch.tensor([-1.0, 0.0, 1.0])
        z = obs[:, :1, None] + (torch.arange(2.0) + 1).view(1, 2, 1) * obs[:, 1:2, None] * spread
        q = z.mean(2)
        greedy_a = torch.zeros(obs.shape[0], dtype=torch.long)  # action 0, the narrower one
        return greedy_a, ActInfo(q, torch.zeros(obs.shape[0], dtype=torch.bool), greedy_a, 0.0, z)


def test_spread_pays_the_drop_of_the_return_spread_clipped_at_zero_and_cut_at_task_ends():
    learner = Quantiles()
    c = curiosity("spread", learner, obs_dim=2)
    obs = torch.tensor([[0.0, 2.0], [0.0, 1.0], [0.0, 2.0]])
    nxt = torch.tensor([[0.0, 1.0], [0.0, 3.0], [0.0, 0.5]])
    _, info = learner.act(obs, 0)
    r = c.reward(transition(obs, torch.tensor([1, 0, 0]), nxt, torch.tensor([0.0, 0.0, 1.0])), None,
                 info.quantiles, 0)
    std = torch.tensor([-1.0, 0.0, 1.0]).std()
    # lane 0: action 1 at width 2 -> spread 4 std; next greedy (action 0) at width 1 -> 1 std: pays 3 std
    # lane 1: spread grows (1 -> 3): clipped to 0; lane 2: its task instance ended: 0
    torch.testing.assert_close(r, torch.tensor([3 * std, 0.0, 0.0]))


def test_spread_with_a_learner_without_quantiles_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="curiosity.kind: 'spread' needs a learner that reports return quantiles"):
        Engine(compose(["experiment=multitask/cu_inputs", "curiosity.kind=spread"]))


def test_without_cu_visible_nodes_forward_models_the_next_cu_input():
    engine = Engine(compose(["experiment=reduce/xor", "curiosity.kind=forward"]))
    assert engine.nodes.cu_size == 0
    assert engine.curiosity.model[-1].out_features == engine.obs_dim
    while engine.iteration < 50:
        engine.step()
    assert engine.metrics()["curiosity_loss"] > 0


def test_bad_curiosity_settings_name_the_key():
    for override, key in (("curiosity.kind=novelty", "curiosity.kind"), ("curiosity.weight=-1", "curiosity.weight"),
                          ("curiosity.decay_iterations=-5", "curiosity.decay_iterations")):
        with pytest.raises(ConfigError, match=key):
            compose(["experiment=multitask/cu_inputs", override])


def test_the_weight_falls_linearly_to_zero_and_normalisation_makes_the_spread_one():
    c = curiosity("rnd", decay_iterations=1000, weight=0.5)
    assert [c.weight(i) for i in (0, 500, 1000, 2000)] == [0.5, 0.25, 0.0, 0.0]
    n = dataclasses.replace(CuriosityConfig(), kind="rnd", weight=1.0, lr=1e-12)
    c = Curiosity(n, 3, 2, 2, None, seed=0, device=CPU)
    torch.manual_seed(1)
    rewards = torch.cat([c.reward(transition(torch.zeros(64, 3), torch.zeros(64, dtype=torch.long)),
                                  torch.randn(64, 2) * 100, None, 0) for _ in range(50)])
    assert 0.8 < rewards[-64 * 25:].std().item() < 1.25  # raw rewards are ~1e4; normalised they are O(1)


@pytest.mark.parametrize("kind,cu", [("forward", "dqn"), ("rnd", "dqn"), ("spread", "qr_dqn")])
def test_the_engine_adds_the_intrinsic_reward_to_what_the_learner_observes(kind, cu):
    overrides = ["experiment=multitask/cu_inputs", f"cu={cu}", "lanes=2", f"curiosity.kind={kind}"]
    engine = Engine(compose(overrides))
    seen, observe = [], engine.cu.observe
    engine.cu.observe = lambda t, *a: (seen.append(t), observe(t, *a))[1]
    extra = []
    while engine.iteration < 200:
        step = engine.step()
        extra.append(seen[-1].reward - step.reward)
    extra = torch.stack(extra)
    assert torch.isfinite(extra).all() and extra.abs().sum() > 0
    m = engine.metrics()
    assert m["curiosity_reward"] == pytest.approx(extra[-1].mean().item(), rel=1e-5)
    plain = Engine(compose(overrides[:-1]))
    assert plain.metrics()["curiosity_reward"] != plain.metrics()["curiosity_reward"]  # nan: off
    resumed = Engine(compose(overrides))
    resumed.load_state_dict(engine.state_dict())
    assert resumed.curiosity.seen == engine.curiosity.seen
    if kind != "spread":
        for a, b in zip(resumed.curiosity.model.parameters(), engine.curiosity.model.parameters()):
            assert a.equal(b)
