"""Lanes: B copies of one IN in lockstep, sharing weights (DESIGN.md section 4)."""
import copy
import math

import torch
import torch.nn.functional as F

from inet.cli import compose
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
