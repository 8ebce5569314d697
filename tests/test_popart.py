"""A value per Environment (value decomposition) and PopArt: the DQN's heads, their n-step returns, and
the normalisation of their targets."""
import copy

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CUConfig
from inet.cu import Transition
from inet.cu.protocol import takes_heads
from inet.cu.dqn import DQN
from inet.cu.popart import PopArt
from inet.engine import Engine
from inet.run import checkpoint

MULTI = ["experiment=multi/multitask_reduce", "iterations=1200", "progress=false", "seed=3"]


def make(heads: int = 1, **cfg) -> DQN:
    return DQN(CUConfig(**cfg), obs_dim=3, n_actions=4, total_iterations=100, device=torch.device("cpu"),
               generator=torch.Generator().manual_seed(0), heads=heads)


def unnormalised(unit: DQN, net: torch.nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """Each head's values [B, heads, n_actions] on its Environment's reward scale."""
    q = net(obs)
    q = q.unsqueeze(1) if unit.heads == 1 else q
    return q * unit.popart.std.view(1, -1, 1) + unit.popart.mean.view(1, -1, 1)


def test_popart_statistics_match_a_hand_computation():
    beta = 0.1
    stats = PopArt(2, beta, torch.device("cpu"))
    assert torch.equal(stats.mean, torch.zeros(2)) and torch.equal(stats.std, torch.ones(2))  # the identity
    batches = [torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([[0.0, -20.0], [2.0, 0.0]]),
               torch.tensor([[5.0, 50.0], [5.0, 70.0]])]
    for y in batches:
        stats.update(y)
    # beta_t = beta / (1 - (1 - beta)^t): the average of the batch statistics weighted (1 - beta)^(age)
    weights = [(1 - beta) ** 2, 1 - beta, 1.0]
    mean = [sum(w * y[:, h].mean().item() for w, y in zip(weights, batches)) / sum(weights) for h in range(2)]
    second = [sum(w * y[:, h].square().mean().item() for w, y in zip(weights, batches)) / sum(weights)
              for h in range(2)]
    assert stats.mean.tolist() == pytest.approx(mean, rel=1e-6)
    assert stats.std.tolist() == pytest.approx([(s - m * m) ** 0.5 for s, m in zip(second, mean)], rel=1e-5)
    y = torch.tensor([[4.0, 4.0]])
    assert stats.normalise(y).tolist()[0] == pytest.approx([(4.0 - m) / (s - m * m) ** 0.5
                                                            for m, s in zip(mean, second)], rel=1e-5)
    assert torch.allclose(stats.unnormalise(stats.normalise(y)), y)


@pytest.mark.parametrize("heads,dueling", [(1, False), (3, False), (3, True)])
def test_a_statistics_update_leaves_the_unnormalised_values_of_both_networks_unchanged(heads, dueling):
    unit = make(heads, popart=True, popart_beta=0.5, dueling=dueling)
    # in float64, so that what remains is rounding (float32 loses ~1e-7 of the statistics' scale to it)
    unit.q.double(), unit.target.double()
    unit.popart.mean, unit.popart.second = unit.popart.mean.double(), unit.popart.second.double()
    with torch.no_grad():
        for p in unit.target.parameters():
            p.add_(torch.randn_like(p))
    obs = torch.randn(16, 3, dtype=torch.float64)
    for scale in (100.0, 0.01, 7.0):
        before = unnormalised(unit, unit.q, obs), unnormalised(unit, unit.target, obs)
        normalised = unit.q(obs).clone()
        targets = scale * torch.randn(32, heads, dtype=torch.float64) + scale
        unit.popart_update(targets if heads > 1 else targets[:, 0])
        assert not torch.allclose(unit.q(obs), normalised)  # the statistics did change the network
        after = unnormalised(unit, unit.q, obs), unnormalised(unit, unit.target, obs)
        for b, a in zip(before, after):
            assert (a - b).abs().max() <= 1e-12 * (1 + scale), (a - b).abs().max()


def random_transitions(steps: int, lanes: int, scale: float, seed: int):
    """A fixed stream of transitions over 2 Environments whose first reward is multiplied by `scale`."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        obs, next_obs = torch.randn(lanes, 3, generator=g), torch.randn(lanes, 3, generator=g)
        actions = torch.randint(4, (lanes,), generator=g)
        env_reward = torch.stack([(obs[:, 0] > 0).float() + (actions == 1).float(),
                                  -0.5 * (actions == 2).float() + 0.1 * obs[:, 1]], 1)
        env_terminal = (torch.rand(lanes, 2, generator=g) < torch.tensor([0.3, 0.1])).float()
        env_reward[:, 0] *= scale
        yield Transition(obs, actions, env_reward.sum(1), next_obs, env_terminal.amax(1), env_reward, env_terminal)


def normalised_targets(scale: float, popart: bool) -> torch.Tensor:
    """The targets [64, 2] of a probe batch after 1,200 lane-iterations of learning, normalised with PopArt."""
    unit = make(2, popart=popart, learning_starts=0, batch_size=32, n_step=2, target_update_interval=100)
    done = 0
    for t in random_transitions(150, 8, scale, seed=1):
        unit.observe(t, done, done + 8)
        done += 8
    probe = next(random_transitions(1, 64, scale, seed=2))
    with torch.no_grad():
        target = unit._td_target(probe.env_reward, probe.next_obs, 0.9 * (1 - probe.env_terminal))
    return unit.popart.normalise(target) if popart else target


def test_with_popart_scaling_one_environments_rewards_by_100_leaves_the_normalised_targets_close():
    plain, scaled = normalised_targets(1.0, True), normalised_targets(100.0, True)
    # Not equal: the networks' random initial outputs are read as values on either scale, and learning
    # amplifies that difference into one as large as another seed's (about 0.1 of the targets' spread).
    assert (scaled - plain).abs().mean() < 0.15, (scaled - plain).abs().mean()
    assert (scaled.mean(0) - plain.mean(0)).abs().max() < 0.1 and (scaled.std(0) / plain.std(0) - 1).abs().max() < 0.1
    raw, raw_scaled = normalised_targets(1.0, False), normalised_targets(100.0, False)
    assert raw_scaled[:, 0].std() > 50 * raw[:, 0].std()  # what PopArt takes away


def test_each_head_s_n_step_return_is_cut_only_by_its_own_environment_s_task_end():
    unit = make(2, n_step=3, gamma=0.5)
    obs = torch.zeros(1, 3)
    rewards = [[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]]
    terminal = [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    for r, d in zip(rewards, terminal):
        t = torch.tensor([r])
        unit.observe(Transition(obs, torch.zeros(1, dtype=torch.long), t.sum(1), obs, torch.tensor(d).amax().view(1),
                                t, torch.tensor([d])), 0, 1)
    assert unit.replay.size == 1 and unit.replay.rewards.shape[1:] == (2,)
    # head 0: its task instance ended at the second step (no bootstrapping); head 1: three steps, then gamma^3
    assert unit.replay.rewards[0].tolist() == [1.0 + 0.5 * 2.0, 10.0 + 0.5 * 20.0 + 0.25 * 40.0]
    assert unit.replay.discount[0].tolist() == [0.0, 0.125]


def test_one_environment_keeps_one_head_and_a_plain_replay():
    unit = make(1, dueling=True)
    assert unit.q.head.weight.shape == (4, 64) and unit.q.value.weight.shape == (1, 64)
    assert unit.replay.rewards.shape == (unit.cfg.buffer_size,) and unit.popart is None


def test_the_engine_hands_each_environment_s_reward_and_task_ends_to_a_head_each():
    engine = Engine(compose(MULTI))
    assert engine.cu.heads == 2 and engine.cu.q.head.out_features == 2 * engine.n_actions
    seen = []
    observe = engine.cu.observe
    engine.cu.observe = lambda t, before, after: seen.append(t) or observe(t, before, after)
    ends = []
    while engine.iteration < 300:
        ends.append({e.env for e in engine.step().ended})
    for t, ended in zip(seen, ends):
        assert torch.equal(t.env_reward.sum(1), t.reward)
        assert t.env_terminal[0].tolist() == [float("multitask" in ended), float("reduce" in ended)]
        assert torch.equal(t.env_terminal.amax(1), t.terminal)
    assert any(t.env_terminal[0, 0] != t.env_terminal[0, 1] for t in seen)


def test_qr_dqn_refuses_several_environments_and_popart_before_iteration_0():
    with pytest.raises(ConfigError, match=r"cu\._target_: QR-DQN keeps one value .* use cu=dqn"):
        Engine(compose([*MULTI, "cu=qr_dqn"]))
    with pytest.raises(ConfigError, match=r"cu\.popart: QR-DQN has no PopArt; set cu\.popart=false"):
        Engine(compose(["experiment=multitask/cu_inputs", "cu=qr_dqn", "cu.popart=true"]))


def test_popart_beta_out_of_range_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"cu\.popart_beta: must be in \(0, 1\]"):
        Engine(compose([*MULTI, "cu.popart=true", "cu.popart_beta=0"]))


def test_popart_statistics_are_in_the_state_dict_and_a_resumed_learner_continues_exactly():
    stream = list(random_transitions(40, 4, 100.0, seed=3))
    first = make(2, popart=True, learning_starts=0)
    for i, t in enumerate(stream[:20]):
        first.observe(t, 4 * i, 4 * i + 4)
    second = make(2, popart=True, learning_starts=0)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    for i, t in enumerate(stream[20:], 20):
        first.observe(t, 4 * i, 4 * i + 4)
        second.observe(t, 4 * i, 4 * i + 4)
    assert first.popart.updates == second.popart.updates > 100
    assert torch.equal(first.popart.mean, second.popart.mean) and torch.equal(first.popart.second, second.popart.second)
    for p, q in zip(first.q.parameters(), second.q.parameters()):
        assert torch.equal(p, q)


def test_a_learner_without_heads_gets_the_summed_reward_of_several_environments():
    engine = Engine(compose([*MULTI, "cu._target_=toy_learner.Bandit"]))
    assert not takes_heads(type(engine.cu)) and takes_heads(DQN)
    total = 0.0
    while engine.iteration < 20:
        step = engine.step()
        total += (step.env_reward["multitask"] + step.env_reward["reduce"]).sum().item()
    assert engine.cu.count.sum() == 20 and engine.cu.total.sum().item() == pytest.approx(total)


def test_a_checkpoint_written_before_popart_existed_resumes_unless_popart_is_turned_on(tmp_path):
    cfg = compose(["experiment=multitask/cu_inputs", "iterations=100", "progress=false"])
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, cfg, Engine(cfg).state_dict(), {})
    state = torch.load(path, weights_only=False)
    for key in ("cu.popart", "cu.popart_beta"):
        del state["config"][key]
    torch.save(state, path)
    assert checkpoint.load(path, cfg)["config"] == state["config"]
    with pytest.raises(ConfigError, match=r"different config \(cu\.popart: '<unset>' -> True\)"):
        checkpoint.load(path, compose(["experiment=multitask/cu_inputs", "iterations=100", "progress=false",
                                       "cu.popart=true"]))
