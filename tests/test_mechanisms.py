"""Each learning mechanism pinned against an independent computation.

Every test here computes what a mechanism must produce without the mechanism:
plain autograd through copies of the PUs and Q-networks, hand-set network
weights with known outputs, or closed-form arithmetic. A mechanism that is
skipped, mis-scaled or mis-routed (depth decay, target-network updates, TD
targets and the Huber loss, n-step returns, the CU's gradient into nodes,
straight-through rounding, tape pruning) makes its test fail, where a
"something changed" check would still pass.
"""
import copy
import math

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CUConfig, EnvConfig, NodeConfig, PUConfig, RunConfig, TapeConfig, validate
from inet.cu.dqn import DQN
from inet.engine import Engine

SCRIPTED = dict(script="inet.tasks.regression.teacher", inputs=["history"])  # no DQN learns


def regression_engine(nodes, pus, x, y, lanes=1, **tape) -> Engine:
    """An engine whose regression env writes node `x`, puts an MSE loss on `y`, with a scripted CU running pus[0]."""
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=[x], outputs=[y],
                    params={"pu": next(iter(pus))})
    return Engine(RunConfig(nodes=nodes, pus=pus, envs={"r": env}, lanes=lanes, tape=TapeConfig(**tape),
                            cu=CUConfig(**SCRIPTED)))


def chain4(**tape) -> Engine:
    """Nodes a -> b -> c -> d -> e through p1..p4 (MLPs); the env writes a."""
    nodes = {n: NodeConfig(shape=[4]) for n in "abcde"}
    pus = {f"p{i + 1}": PUConfig(inputs=[src], outputs=[dst], hidden=[8])
           for i, (src, dst) in enumerate(zip("abcd", "bcde"))}
    return regression_engine(nodes, pus, "a", "e", **tape)


def spy_pu_grads(engine: Engine) -> dict:
    """Record every PU parameter's gradient at the moment the PU optimizer is called (before clip and Adam)."""
    seen = {}
    step = engine.pu_optimizer.step

    def spy():
        seen.update({n: [None if p.grad is None else p.grad.clone() for p in pu.parameters()]
                     for n, pu in engine.pus.items()})
        return step()

    engine.pu_optimizer.step = spy
    return seen


def huber(x: torch.Tensor) -> torch.Tensor:
    """Smooth L1 with beta 1, written out: 0.5 x^2 where |x| < 1, else |x| - 0.5."""
    return torch.where(x.abs() < 1, 0.5 * x * x, x.abs() - 0.5)


# -- depth decay ------------------------------------------------------------------------

def test_depth_decay_scales_each_record_by_its_depth():
    """Gradient factors 1, 0.5, 0.25, 0.125 for p4..p1 (depth 1..4) times plain autograd through the chain."""
    engine = chain4(horizon=5, depth_decay=0.5)
    ref = copy.deepcopy(engine.pus)
    a = engine.nodes.values["a"].clone()
    for name in ("p1", "p2", "p3", "p4"):
        engine.run_pu(name, [0], {})
    g = torch.linspace(-1.0, 1.0, 4).reshape(1, 4)
    engine.tape.add_grad(engine.nodes.writers["e"], "e", [0], g)
    assert engine.tape.sweep(engine.pus) == 4
    e = ref["p4"](ref["p3"](ref["p2"](ref["p1"](a)[0])[0])[0])[0]
    e.backward(g)
    for name, factor in {"p4": 1.0, "p3": 0.5, "p2": 0.25, "p1": 0.125}.items():
        for p, q in zip(engine.pus[name].parameters(), ref[name].parameters()):
            assert q.grad.abs().sum() > 0
            torch.testing.assert_close(p.grad, q.grad * factor, rtol=1e-6, atol=1e-9,
                                       msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("decay", [0.0, 1.5])
def test_depth_decay_outside_0_1_is_rejected(decay):
    """depth_decay must lie in (0, 1]: validate and Engine construction both name tape.depth_decay."""
    nodes = {n: NodeConfig(shape=[4]) for n in "ab"}
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=["a"], outputs=["b"], params={"pu": "p1"})
    cfg = RunConfig(nodes=nodes, pus={"p1": PUConfig(inputs=["a"], outputs=["b"])}, envs={"r": env},
                    tape=TapeConfig(depth_decay=decay), cu=CUConfig(**SCRIPTED))
    with pytest.raises(ConfigError, match=r"tape\.depth_decay"):
        validate(cfg)
    with pytest.raises(ConfigError, match=r"tape\.depth_decay"):
        Engine(cfg)


# -- target network -----------------------------------------------------------------------

def params_of(net: torch.nn.Module) -> list:
    return [p.detach().clone() for p in net.parameters()]


def same(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_hard_target_update_copies_the_online_net_at_each_interval_boundary_only():
    """tau = 1: right after every target_update_interval boundary (once training runs) target == online
    exactly; between boundaries the target does not move while the online net does."""
    engine = Engine(compose(["experiment=multitask/cu_inputs", "cu.learning_starts=4", "cu.batch_size=4",
                             "cu.target_update_interval=5", "iterations=40"]))
    initial = params_of(engine.cu.target)
    copies = 0
    for _ in range(23):
        target_before, online_before = params_of(engine.cu.target), params_of(engine.cu.q)
        engine.step()
        it = engine.iteration  # lanes = 1, n_step = 1: `it` transitions in replay; training from it = 4 on
        target, online = params_of(engine.cu.target), params_of(engine.cu.q)
        if it >= 4:
            assert not same(online, online_before), f"the online net did not train at iteration {it}"
        if it >= 5 and it % 5 == 0:
            assert same(target, online), f"target != online right after the boundary at iteration {it}"
            copies += 1
        else:
            assert same(target, target_before), f"the target moved between boundaries at iteration {it}"
    assert copies == 4 and not same(params_of(engine.cu.target), initial)


def test_soft_target_update_moves_tau_of_the_way_to_the_online_net():
    """tau < 1: target <- target + tau * (online - target), parameter by parameter."""
    unit = DQN(CUConfig(tau=0.3, hidden=[5, 4]), obs_dim=3, n_actions=2, total_iterations=10,
                       device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in unit.q.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    old, online = params_of(unit.target), params_of(unit.q)
    assert not same(old, online)
    unit.update_target()
    for t, o, q in zip(unit.target.parameters(), old, online):
        torch.testing.assert_close(t.detach(), o + 0.3 * (q - o), rtol=1e-6, atol=1e-7)
    assert same(params_of(unit.q), online)  # the online net is untouched


# -- TD target, n-step returns and the Huber loss ------------------------------------------

ONLINE = [[0.0, 1.0], [2.0, 0.0], [1.0, 3.0]]  # Q(e1) = [0, 2, 1], Q(e2) = [1, 0, 3]: argmax 1, 2
TARGET = [[5.0, 7.0], [1.0, 2.0], [0.0, 4.0]]  # Q'(e1) = [5, 1, 0], Q'(e2) = [7, 2, 4]: argmax 0, 0


def set_q(net: torch.nn.Module, head: list) -> None:
    """A QNetwork with hidden [2]: identity trunk, so Q(obs) = head @ obs for obs >= 0."""
    with torch.no_grad():
        net.trunk[0].weight.copy_(torch.eye(2))
        net.trunk[0].bias.zero_()
        net.head.weight.copy_(torch.tensor(head))
        net.head.bias.zero_()


def hand_cu(double=False, **cfg) -> DQN:
    unit = DQN(CUConfig(hidden=[2], double=double, **cfg), obs_dim=2, n_actions=3, total_iterations=100,
                       device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    set_q(unit.q, ONLINE)
    set_q(unit.target, TARGET)
    return unit


E1, E2 = [1.0, 0.0], [0.0, 1.0]


@pytest.mark.parametrize("double, want", [(False, [0.5 + 0.5 * 5, -1 + 0.25 * 7]),  # max of the target net
                                          (True, [0.5 + 0.5 * 1, -1 + 0.25 * 4])])  # target's value at online argmax
def test_td_target_vanilla_and_double(double, want):
    """r + discount * V(next): V = max_a Q'(next, a), or for double DQN Q'(next, argmax_a Q(next, a))."""
    unit = hand_cu(double)
    next_obs = torch.tensor([E1, E2])
    assert torch.equal(unit.q(next_obs), torch.tensor([[0.0, 2, 1], [1, 0, 3]]))
    assert torch.equal(unit.target(next_obs), torch.tensor([[5.0, 1, 0], [7, 2, 4]]))
    got = unit._td_target(torch.tensor([0.5, -1.0]), next_obs, torch.tensor([0.5, 0.25]))
    assert got.tolist() == want


def test_td_loss_is_the_mean_huber_of_q_minus_target():
    """Q(obs, a) - target = 0.5, 1.5, -0.25, -2.5 -> huber 0.125, 1.0, 0.03125, 2.0, mean 0.7890625."""
    unit = hand_cu()
    obs = torch.tensor([E1, E2, [1.0, 1.0], [1.0, 1.0]])  # Q rows [0,2,1], [1,0,3], [1,2,4], [1,2,4]
    actions = torch.tensor([1, 2, 0, 2])  # Q = 2, 3, 1, 4
    next_obs = torch.tensor([E1, E2, E1, E2])  # max Q' = 5, 7, 5, 7
    rewards, discount = torch.tensor([1.5, -2.0, 0.0, 3.0]), torch.tensor([0.0, 0.5, 0.25, 0.5])
    loss = unit._td_loss(obs, actions, rewards, next_obs, discount)  # targets 1.5, 1.5, 1.25, 6.5
    assert loss.item() == (0.125 + 1.0 + 0.03125 + 2.0) / 4 == 0.7890625


def test_n_step_td_targets_with_task_ends_inside_the_window():
    """3-step returns, gamma 0.5, two lanes, obs_t = [t, 1] so max Q'(obs_t) = max(t, 3, t/2 + 1).

    Lane 0 ends an instance at t = 3, lane 1 at t = 1; rewards 1, 2, 4, 8, 16 at t = 0..4. The TD
    target of each stored transition, and train_step's loss on a sampled batch, follow by hand."""
    unit = hand_cu(n_step=3, gamma=0.5, batch_size=5)
    set_q(unit.target, [[1.0, 0.0], [0.0, 3.0], [0.5, 1.0]])
    set_q(unit.q, [[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])  # Q(obs_t) = [t, 1, 2t - 1]
    ends = {1: [0.0, 1.0], 3: [1.0, 0.0]}
    for t in range(5):
        obs = torch.tensor([[float(t), 1.0]] * 2)
        unit.remember(obs, torch.full((2,), t % 3), torch.full((2,), 2.0 ** t), obs + torch.tensor([1.0, 0.0]),
                      torch.tensor(ends.get(t, [0.0, 0.0])))
    want = [1 + 0.5 * 2 + 0.25 * 4 + 0.125 * 3,  # t0 lane 0: three rewards, bootstrap from obs_3
            1 + 0.5 * 2,  # t0 lane 1: its instance ends at t1, the next instance's reward is not counted
            2 + 0.5 * 4 + 0.25 * 8,  # t1 lane 0: ends at t3 (inside the window), no bootstrap
            2,  # t1 lane 1: ends at once
            4 + 0.5 * 8,  # t2 lane 0: ends at t3
            4 + 0.5 * 8 + 0.25 * 16 + 0.125 * 5]  # t2 lane 1: bootstrap from obs_5
    r = unit.replay
    assert r.size == 6
    assert unit._td_target(r.rewards[:6], r.next_obs[:6], r.discount[:6]).tolist() == want
    q_taken = torch.tensor([0.0, 0.0, 1.0, 1.0, 3.0, 3.0])  # Q(obs_t, t % 3) for t = 0, 0, 1, 1, 2, 2
    idx = torch.randint(6, (5,), generator=torch.Generator().set_state(unit.gen.get_state()))
    expected = huber(q_taken[idx] - torch.tensor(want)[idx]).mean()
    assert unit.train_step() is None
    assert float(unit.last_loss) == pytest.approx(expected.item(), rel=1e-6)


# -- the CU's gradient into the nodes --------------------------------------------------------

@pytest.mark.parametrize("view, scale, cu_scale", [([1, 3], 0.5, 1.0), (None, 0.5, 3.0)])
def test_cu_gradient_reaches_the_pu_writing_a_cu_visible_node(view, scale, cu_scale):
    """pu0 writes n3 ([4], the CU sees n3[view]); its gradient from one Engine.step equals plain autograd
    of scale * cu_scale * huber(Q(obs(pu0(n0, n1)), a) - fixed TD target), mean over both lanes."""
    over = ["experiment=multitask/base", "lanes=2", "nodes.n3.shape=[4]", "cu.inputs=[nodes,signals]",
            "cu.learning_starts=0", f"cu.grad_to_nodes_scale={scale}", f"tape.cu_scale={cu_scale}"]
    if view is not None:
        over.append(f"+nodes.n3.cu_view={view}")
    engine = Engine(compose(over))
    a = engine.action_index
    false = torch.zeros(2, dtype=torch.bool)
    engine._choose = lambda: (torch.tensor([a["pu0"], a["pu0"]]), false, ~false)
    n0, n1 = engine.nodes.values["n0"].clone(), engine.nodes.values["n1"].clone()
    engine.step()  # pu0 writes n3 in both lanes; the CU has not seen it yet, so no gradient
    pu0, q, target = (copy.deepcopy(m) for m in (engine.pus["pu0"], engine.cu.q, engine.cu.target))
    obs = engine.obs.clone()
    actions = torch.tensor([a["pu0"], a["pu2"]])  # lane 1 submits with pu2: its instance ends (terminal)
    engine._choose = lambda: (actions, false, ~false)
    seen = spy_pu_grads(engine)
    step = engine.step()
    assert step.terminal.tolist() == [False, True]

    n3 = pu0(n0, n1)[0]
    shown = n3 if view is None else n3[:, view[0]:view[1]]
    k = shown.shape[1]
    obs_ref = torch.cat([shown, obs[:, k:]], 1)
    torch.testing.assert_close(obs_ref.detach(), obs, rtol=0, atol=1e-7)  # the CU input is n3[view], then signals
    with torch.no_grad():
        td_target = step.reward + engine.cfg.cu.gamma * (1 - step.terminal.float()) * target(engine.obs).max(1).values
    loss = scale * cu_scale * huber(q(obs_ref).gather(1, actions.unsqueeze(1)).squeeze(1) - td_target).mean()
    loss.backward()
    for got, p in zip(seen["pu0"], pu0.parameters()):
        assert p.grad.abs().sum() > 0
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-8)


# -- straight-through rounding ----------------------------------------------------------------

def test_rounding_passes_the_gradient_at_the_rounded_value_straight_to_the_writer():
    """m = round(w(x)) to {0, 1}; the MSE loss on m gives w the gradient dL/dm (taken at the rounded m)
    backpropagated from w's unrounded output, as if the rounding were the identity."""
    nodes = {"x": NodeConfig(shape=[3]), "m": NodeConfig(shape=[3], round_to=[0.0, 1.0], round_from=0)}
    engine = regression_engine(nodes, {"w": PUConfig(inputs=["x"], outputs=["m"], hidden=[8])}, "x", "m", lanes=2)
    with torch.no_grad():
        engine.pus["w"].net[-1].bias.fill_(0.5)  # raw outputs around 0.5: both levels occur
    ref = copy.deepcopy(engine.pus["w"])
    x = engine.nodes.values["x"].clone()
    seen = spy_pu_grads(engine)
    engine.step()

    raw = ref(x)[0]
    m = (raw > 0.5).float()  # the nearest of {0, 1}
    assert torch.equal(engine.nodes.values["m"], m) and set(m.reshape(-1).tolist()) == {0.0, 1.0}
    d_m = 2 * (m - torch.sin(math.pi * x)) / 3 / 2  # d/dm of sum over lanes of mean((m - y)^2), / 2 lanes
    raw.backward(d_m)
    for got, p in zip(seen["w"], ref.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-8)


# -- pruning on a memory loop -------------------------------------------------------------------

def test_pruned_memory_loop_backpropagates_through_exactly_the_last_horizon_runs():
    """mem: (x, m) -> m run 6 times with a prune after each (as Engine.step does); the tape keeps only the last
    3 (the horizon) and a later loss on m equals autograd through the last 3 runs from the older m as a constant."""
    nodes = {n: NodeConfig(shape=[2]) for n in ("x", "m", "y")}
    pus = {"sub": PUConfig(inputs=["m"], outputs=["y"], hidden=[4]),
           "mem": PUConfig(inputs=["x", "m"], outputs=["m"], hidden=[8])}
    engine = regression_engine(nodes, pus, "x", "y", lanes=2, horizon=3)
    ref = copy.deepcopy(engine.pus["mem"])
    x = engine.nodes.values["x"].clone()
    values, rids = [engine.nodes.values["m"].clone()], []
    for _ in range(6):
        engine.run_pu("mem", [0, 1], {})
        engine.tape.prune(engine.nodes.live_writers())
        values.append(engine.nodes.values["m"].clone())
        rids.append(engine.nodes.writers["m"][0])
        assert len(engine.tape) <= 3
    assert sorted(engine.tape.records) == rids[-3:]
    g = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    engine.tape.add_grad(engine.nodes.writers["m"], "m", [0, 1], g)
    assert engine.tape.sweep(engine.pus) == 3

    m = values[-4]  # written by a pruned run: a constant
    for _ in range(3):
        m = ref(x, m)[0]
    torch.testing.assert_close(m.detach(), values[-1])
    m.backward(g)
    for got, p in zip(engine.pus["mem"].parameters(), ref.parameters()):
        torch.testing.assert_close(got.grad, p.grad, rtol=1e-5, atol=1e-8)
