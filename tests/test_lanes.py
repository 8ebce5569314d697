"""Lanes: B copies of one IN in lockstep, sharing weights (DESIGN.md section 4)."""
import copy
import math

import torch
import torch.nn.functional as F

from inet.compose import compose
from inet.engine import Engine


def test_lanes_average_losses_into_one_step_like_a_batch():
    """8 lanes of the scripted FNN emulation train exactly like a plain MLP on batches of 8."""
    cfg = compose(["experiment=emulate/fnn", "lanes=8", "seed=5"])
    engine = Engine(cfg)
    ref = copy.deepcopy(engine.pus["pu0"])
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.pu_optim.lr, fused=True)
    for _ in range(50):
        x = engine.nodes.values["n0"].clone()
        engine.step()
        loss = F.mse_loss(ref(x)[0], torch.sin(math.pi * x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p, q in zip(engine.pus["pu0"].parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    assert engine.iteration == 50 * 8  # iterations count lane-iterations


def test_each_action_runs_once_per_iteration_on_the_lanes_that_chose_it():
    cfg = compose(["experiment=multitask/base", "lanes=16", "seed=0", "cu.exploration_initial_eps=1.0"])
    engine = Engine(cfg)
    for _ in range(20):
        before = engine.tape.next_id
        actions = None
        step = engine.step()
        actions = step.actions.tolist()
        pu_actions = {a for a in actions if engine.actions[a][0] is None}
        assert engine.tape.next_id - before == len(pu_actions)  # one record per chosen PU, not per lane
        for rid in range(before, engine.tape.next_id):
            rec = engine.tape.records.get(rid)
            if rec is not None:
                assert rec.lanes == [lane for lane, a in enumerate(actions) if engine.action_names[a] == rec.pu]


def test_a_node_written_by_two_pus_in_one_iteration_gets_each_lanes_own_loss():
    """All lanes submit, lane 0 with pu2 and lane 1 with pu1: the submit node's lanes are listed as
    [1, 0] (the order the PUs ran in), and each lane's loss must still reach the PU that wrote it."""
    cfg = compose(["experiment=multitask/cu_inputs", "lanes=2", "seed=0", "cu.script=inet.tasks.multitask.teacher"])
    engine = Engine(cfg)
    env = engine.first_env
    engine.step()  # the teacher runs pu0 in both lanes first
    a, b = torch.tensor([0.2, 0.9]), torch.tensor([0.7, 0.1])  # lane 0: b > a (pu2), lane 1: a > b (pu1)
    env.a[:], env.b[:], env.target[:] = a, b, torch.where(a > b, 2 * a, b / 2)
    engine.nodes.write("n0", [0, 1], a.unsqueeze(1))
    engine.nodes.write("n1", [0, 1], b.unsqueeze(1))
    grads = {}
    adam_step = engine.pu_optimizer.step
    def capture():
        grads.update({n: p.grad.clone() for n, p in engine.pus.named_parameters() if p.grad is not None})
        return adam_step()
    engine.pu_optimizer.step = capture
    ref = copy.deepcopy(engine.pus)

    step = engine.step()
    assert [engine.action_names[x] for x in step.actions.tolist()] == ["pu2", "pu1"]
    assert step.written["n2"] == [1, 0]
    loss = ((ref["pu2"](b[:1].unsqueeze(1))[0] - 0.35).square().sum()
            + (ref["pu1"](a[1:].unsqueeze(1))[0] - 1.8).square().sum()) / 2
    loss.backward()
    expected = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
    assert grads.keys() == expected.keys()
    for n, g in expected.items():
        torch.testing.assert_close(grads[n], g, atol=1e-6, rtol=0)


def test_positions_by_value_matches_a_python_grouping() -> None:
    """The sort-based grouping that lanes_by_action and the tape use equals the plain loop it replaced."""
    from inet.nodes import positions_by_value

    gen = torch.Generator().manual_seed(0)
    for n, k in [(1, 1), (2, 3), (7, 2), (300, 5), (1000, 40)]:
        values = torch.randint(-1, k, (n,), generator=gen)
        expected: dict = {}
        for i, v in enumerate(values.tolist()):
            expected.setdefault(v, []).append(i)
        got = positions_by_value(values)
        assert list(got.items()) == sorted(expected.items())
