"""The learner protocol: DQN and QR-DQN behind it, a user's own class, and the check of a class."""

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CUConfig
from inet.cu import Learner, Transition
from inet.cu.dqn import DQN
from inet.cu.qr_dqn import QRDQN, quantile_huber_loss
from inet.engine import Engine
from inet.run.runner import run

from interrupt import run_until

SHORT = ["experiment=multitask/cu_inputs", "iterations=1200", "log_interval=200", "checkpoint_interval=400",
         "progress=false", "seed=1"]


def make(cls, **cfg):
    return cls(CUConfig(**cfg), obs_dim=3, n_actions=4, total_iterations=100, device=torch.device("cpu"),
               generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls", [DQN, QRDQN])
def test_the_dqn_family_implements_the_protocol(cls):
    assert isinstance(make(cls), Learner)


def test_quantile_huber_loss_equals_its_definition_on_a_hand_example():
    pred = torch.tensor([[0.0, 2.0]])  # quantiles at fractions 1/4 and 3/4
    target = torch.tensor([[1.0, 4.0]])
    # u = target - pred: for the quantile at 0: [1, 4]; at 2: [-1, 2]; huber(1) = 0.5, huber(4) = 3.5, huber(2) = 1.5
    expected = ((0.25 * 0.5 + 0.25 * 3.5) / 2) + ((0.25 * 0.5 + 0.75 * 1.5) / 2)
    assert quantile_huber_loss(pred, target, kappa=1.0).item() == pytest.approx(expected)


def test_qr_dqn_acts_on_the_mean_of_its_quantiles_and_exposes_them():
    unit = make(QRDQN, params={"n_quantiles": 5})
    obs = torch.randn(6, 3)
    actions, info = unit.act(obs, 0, greedy=True)
    z = unit.q(obs)
    assert info.quantiles.shape == (6, 4, 5) and torch.equal(info.quantiles, z)
    assert torch.equal(info.values, z.mean(2)) and torch.equal(actions, z.mean(2).argmax(1))


def test_qr_dqn_target_takes_the_target_nets_greedy_action_and_the_input_gradient_is_autograds():
    unit = make(QRDQN, params={"n_quantiles": 3}, learning_starts=0, gamma=0.5)
    with torch.no_grad():
        for p in unit.target.parameters():
            p.add_(torch.randn_like(p))
    obs, next_obs = torch.randn(4, 3), torch.randn(4, 3)
    t = Transition(obs, torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 0.0, -1.0, 2.0]), next_obs,
                   torch.tensor([0.0, 1.0, 0.0, 0.0]))
    x = obs.clone().requires_grad_()
    z = unit.q(x)[torch.arange(4), t.actions]
    z_next = unit.target(next_obs)
    best = z_next.mean(2).argmax(1)
    target = t.reward.unsqueeze(1) + 0.5 * (1 - t.terminal).unsqueeze(1) * z_next[torch.arange(4), best]
    quantile_huber_loss(z, target.detach(), 1.0).backward()
    torch.testing.assert_close(unit.input_grad(t, 0), x.grad)


@pytest.mark.parametrize("cls", [DQN, QRDQN])
def test_input_grad_reuses_the_act_forward_only_while_the_q_network_is_unchanged(cls):
    unit = make(cls, learning_starts=0, batch_size=2)
    obs = torch.randn(4, 3)
    t = Transition(obs, torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 0.0, -1.0, 2.0]), torch.randn(4, 3),
                   torch.tensor([0.0, 1.0, 0.0, 0.0]))
    fresh = unit.input_grad(t, 0)  # no act before: its own forward
    calls = []
    unit.q.register_forward_hook(lambda *_: calls.append(1))
    unit.act(obs, 0)
    assert unit.input_grad(t, 0).equal(fresh) and len(calls) == 1  # act's forward, none of its own
    unit.act(obs, 0)
    unit.observe(t, 0, 4)  # stores the transitions and takes a gradient step: the forward kept by act is stale
    changed = unit.input_grad(t, 0)
    assert not changed.equal(fresh)
    unit.act(obs.clone(), 0)  # a forward on other inputs is not used either
    assert unit.input_grad(t, 0).equal(changed)


@pytest.mark.parametrize("option, message", [
    ({"params": {"n_quantile": 5}}, "cu.params: QR-DQN has no option 'n_quantile'"),
    ({"params": {"n_quantiles": 0}}, "cu.params.n_quantiles: must be >= 1"),
    ({"dueling": True}, "cu.dueling: QR-DQN has no dueling head")])
def test_qr_dqn_refuses_options_it_does_not_have(option, message):
    with pytest.raises(ConfigError, match=message):
        make(QRDQN, **option)


def test_a_class_missing_a_protocol_method_is_refused_before_iteration_0_naming_it():
    with pytest.raises(ConfigError, match=r"cu._target_: toy_learner.NoInputGrad has no method 'input_grad'"):
        Engine(compose([*SHORT, "cu._target_=toy_learner.NoInputGrad"]))
    with pytest.raises(ConfigError, match=r"cu._target_: cannot import 'toy_learner.Nope'"):
        Engine(compose([*SHORT, "cu._target_=toy_learner.Nope"]))


def test_a_users_learner_runs_logs_and_resumes_exactly_with_no_change_to_inet(tmp_path, monkeypatch):
    over = [*SHORT, "cu._target_=toy_learner.Bandit", "+cu.params.epsilon=0.2"]
    full = tmp_path / "full"
    run(compose(over), full, "config: test\n")
    header = (full / "kpis.csv").read_text().splitlines()[0].split(",")
    assert "bandit_best_value" in header and "td_loss" not in header
    cut = tmp_path / "cut"
    run_until(monkeypatch, over, cut, 700)
    run(compose([*over, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
