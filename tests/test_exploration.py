"""Exploration driven by counts or by the CU's uncertainty (paper 6.2; cu.exploration), in place of a fixed
epsilon decay: constructed cases for the bonus, and what the learner and the engine report."""
from __future__ import annotations

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError
from inet.engine import Engine


def engine(*overrides: str) -> Engine:
    return Engine(compose(["experiment=multitask/cu_inputs", "lanes=4", *overrides]))


def test_counts_pick_the_least_taken_action_until_counts_even_out():
    e = engine("cu.exploration=counts", "cu.exploration_bonus=1000", "cu.exploration_final_eps=0")
    cu = e.cu
    obs = torch.zeros(4, e.obs_dim)
    cu.counts[:] = torch.arange(e.n_actions, 0, -1, dtype=torch.float) * 10  # the last action is the rarest
    actions, info = cu.act(obs, 0)
    assert (actions == e.n_actions - 1).all() and info.explored.all()  # the bonus overrode the greedy choice
    assert cu.counts[-1] == 10 + 4 and cu.metrics()["bonus_share"] == 1.0
    for _ in range(200):
        cu.act(obs, 0)
    spread = cu.counts.max() - cu.counts.min()
    assert spread <= 4, cu.counts  # a huge bonus keeps every action within a lockstep of the others
    greedy, ginfo = cu.act(obs, 0, greedy=True)
    assert greedy.equal(ginfo.greedy) and not ginfo.explored.any()  # greedy acting ignores the bonus


def test_counts_concentrate_as_the_bonus_fades():
    e = engine("cu.exploration=counts", "cu.exploration_bonus=0.001", "cu.exploration_final_eps=0")
    cu = e.cu
    cu.counts[:] = 1e6  # every action taken often: the bonus is ~1e-6, below any Q gap
    actions, info = cu.act(torch.randn(4, e.obs_dim), 0)
    assert actions.equal(info.greedy) and cu.metrics()["bonus_share"] == 0.0


def test_uncertainty_prefers_the_action_with_the_widest_return_distribution():
    e = engine("cu=qr_dqn", "cu.exploration=uncertainty", "cu.exploration_bonus=100", "cu.exploration_final_eps=0")
    obs = torch.randn(4, e.obs_dim)
    actions, info = e.cu.act(obs, 0)
    assert actions.equal(info.quantiles.std(2).argmax(1))
    assert e.cu.epsilon(0) == 0.0  # no epsilon decay: the bonus explores


def test_uncertainty_needs_a_distributional_learner_and_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="cu.exploration: 'uncertainty' needs return quantiles"):
        engine("cu.exploration=uncertainty")
    with pytest.raises(ConfigError, match="cu.exploration:"):
        compose(["experiment=multitask/cu_inputs", "cu.exploration=ucb"])
    with pytest.raises(ConfigError, match="cu.exploration_bonus"):
        compose(["experiment=multitask/cu_inputs", "cu.exploration_bonus=-1"])


def test_an_engine_with_counts_runs_logs_its_bonus_share_and_resumes_the_counts():
    e = engine("cu.exploration=counts", "cu.exploration_bonus=0.5")
    while e.iteration < 400:
        e.step()
    m = e.metrics()
    assert 0.0 <= m["bonus_share"] <= 1.0 and m["epsilon"] == e.cfg.cu.exploration_final_eps
    assert e.cu.counts.sum() == 400
    fresh = engine("cu.exploration=counts", "cu.exploration_bonus=0.5")
    fresh.load_state_dict(e.state_dict())
    assert fresh.cu.counts.equal(e.cu.counts)
    plain = engine()
    assert plain.metrics()["bonus_share"] != plain.metrics()["bonus_share"]  # nan: the bonus is off
