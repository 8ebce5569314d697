"""The tape's correctness contract (DESIGN.md section 5)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from inet.compose import compose
from inet.config import CUConfig, EnvConfig, NodeConfig, PUConfig, RunConfig, TapeConfig
from inet.engine import Engine


def test_scripted_in_equals_plain_mlp_training():
    """Env writes x into n0, pu0 writes n1, MSE on n1: same parameters as plain PyTorch after 200 steps."""
    cfg = compose(["experiment=emulate/fnn", "iterations=200", "seed=3"])
    engine = Engine(cfg)
    ref = copy.deepcopy(engine.pus["pu0"])
    start = [p.detach().clone() for p in ref.parameters()]
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.pu_optim.lr, fused=True)
    for _ in range(200):
        x = engine.nodes.values["n0"].clone()  # the sample the environment wrote for this step
        engine.step()
        loss = F.mse_loss(ref(x)[0], torch.sin(math.pi * x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = 0.0
    for p, q, p0 in zip(engine.pus["pu0"].parameters(), ref.parameters(), start):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
        moved = max(moved, (q - p0).abs().max().item())
    assert moved > 1e-2, "training did not move the parameters; the comparison would be vacuous"


def chain_engine(horizon: int, kinds=("mlp", "mlp", "mlp")) -> Engine:
    """Nodes a -> b -> c -> d through p1, p2, p3; the regression env writes a."""
    nodes = {n: NodeConfig(shape=[4]) for n in "abcd"}
    pus = {f"p{i + 1}": PUConfig(kind=k, inputs=[src], outputs=[dst], hidden=[8])
           for i, (k, src, dst) in enumerate(zip(kinds, "abc", "bcd"))}
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=["a"], outputs=["d"], params={"pu": "p1"})
    cfg = RunConfig(nodes=nodes, pus=pus, envs={"regression": env}, tape=TapeConfig(horizon=horizon),
                    cu=CUConfig(script="inet.tasks.regression.teacher", inputs=["history"]))
    return Engine(cfg)


def run_chain(engine: Engine) -> None:
    for name in ("p1", "p2", "p3"):
        engine.run_pu(name, [0], {})
    engine.tape.add_grad(engine.nodes.writers["d"], "d", [0], torch.ones(1, 4))
    engine.tape.sweep(engine.pus)


@pytest.mark.parametrize("horizon, reached", [(3, {"p1", "p2", "p3"}), (2, {"p2", "p3"}), (1, {"p3"})])
def test_loss_reaches_exactly_horizon_records(horizon, reached):
    engine = chain_engine(horizon)
    run_chain(engine)
    got = {n for n, pu in engine.pus.items() if any(p.grad is not None for p in pu.parameters())}
    assert got == reached


def test_tape_gradients_equal_autograd_through_the_chain():
    engine = chain_engine(3)
    pus = copy.deepcopy(engine.pus)
    a = engine.nodes.values["a"].clone()
    run_chain(engine)
    d = pus["p3"](pus["p2"](pus["p1"](a)[0])[0])[0]
    d.sum().backward()
    for name in ("p1", "p2", "p3"):
        for p, q in zip(engine.pus[name].parameters(), pus[name].parameters()):
            torch.testing.assert_close(p.grad, q.grad)


def test_gradient_passes_through_mover_and_frozen_pu():
    """p1 -> mover (an identity copy) -> frozen p3: p1's gradients equal autograd through the three; p3 gets none."""
    engine = chain_engine(3, kinds=("mlp", "mover", "mlp"))
    engine.pus["p3"].requires_grad_(False)
    ref = copy.deepcopy(engine.pus)
    a = engine.nodes.values["a"].clone()
    run_chain(engine)
    b = ref["p1"](a)[0]
    ref["p3"](b.clone())[0].sum().backward()
    for p, q in zip(engine.pus["p1"].parameters(), ref["p1"].parameters()):
        assert q.grad.abs().sum() > 0
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-8)
    assert all(p.grad is None for p in engine.pus["p3"].parameters())


def test_diamond_visits_each_record_once_and_sums_both_paths():
    """p1 writes b; p2 reads b, p3 reads b (two readers); losses on both outputs in one sweep."""
    nodes = {n: NodeConfig(shape=[3]) for n in "abcd"}
    pus = {"p1": PUConfig(inputs=["a"], outputs=["b"], hidden=[5]),
           "p2": PUConfig(inputs=["b"], outputs=["c"], hidden=[5]),
           "p3": PUConfig(inputs=["b"], outputs=["d"], hidden=[5])}
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=["a"], outputs=["d"], params={"pu": "p1"})
    engine = Engine(RunConfig(nodes=nodes, pus=pus, envs={"r": env},
                              cu=CUConfig(script="inet.tasks.regression.teacher", inputs=["history"])))
    ref = copy.deepcopy(engine.pus)
    a = engine.nodes.values["a"].clone()
    for name in ("p1", "p2", "p3"):
        engine.run_pu(name, [0], {})
    engine.tape.add_grad(engine.nodes.writers["c"], "c", [0], torch.ones(1, 3))
    engine.tape.add_grad(engine.nodes.writers["d"], "d", [0], 2 * torch.ones(1, 3))
    assert engine.tape.sweep(engine.pus) == 3
    b = ref["p1"](a)[0]
    (ref["p2"](b)[0].sum() + 2 * ref["p3"](b)[0].sum()).backward()
    for p, q in zip(engine.pus["p1"].parameters(), ref["p1"].parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_loss_after_optimizer_step_recomputes_with_current_parameters():
    """The pitfall of DESIGN.md 5: an optimizer step between a run and its loss must not break the sweep."""
    engine = chain_engine(3)
    engine.run_pu("p1", [0], {})
    a = engine.nodes.values["a"].clone()
    with torch.no_grad():
        for p in engine.pus["p1"].parameters():
            p.add_(0.1)  # an in-place update, as any optimizer step does
    engine.tape.add_grad(engine.nodes.writers["b"], "b", [0], torch.ones(1, 4))
    engine.tape.sweep(engine.pus)
    ref = copy.deepcopy(engine.pus["p1"])
    ref.zero_grad()
    ref(a)[0].sum().backward()
    for p, q in zip(engine.pus["p1"].parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_tape_stays_bounded_over_50k_iterations_of_multitask_base():
    cfg = compose(["experiment=multitask/base", "iterations=50000", "seed=0"])
    engine = Engine(cfg)
    pu_nodes = {n for p in cfg.pus.values() for n in p.outputs}
    bound = len(pu_nodes) * cfg.tape.horizon * cfg.lanes
    largest = 0
    while engine.iteration < cfg.iterations:
        engine.step()
        largest = max(largest, len(engine.tape))
    assert engine.tape.next_id > 10_000  # many records were made...
    # ...but all PU inputs here are env-written, so only the live writers of n2 and n3 may stay.
    assert largest <= len(pu_nodes) <= bound


def test_batched_sweep_of_childless_records_equals_autograd_and_passes_gradient_on():
    """Two runs of pu 'b' on different lanes (no record reads them) are swept in one batch; the
    parameters of 'b' and of the record they read from ('a') get plain autograd's gradients."""
    from inet.tape import Tape

    torch.manual_seed(0)
    pus = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 2), "b": torch.nn.Linear(2, 1)})
    tape = Tape(horizon=3)
    x = torch.randn(4, 3)
    y = pus["a"](x).detach()
    ra = tape.record("a", [0, 1, 2, 3], ["x"], [x], [[-1] * 4], ["y"])
    rb1 = tape.record("b", [0, 1], ["y"], [y[:2]], [[ra, ra]], ["z"])
    rb2 = tape.record("b", [2, 3], ["y"], [y[2:]], [[ra, ra]], ["z"])
    g1, g2 = torch.randn(2, 1), torch.randn(2, 1)
    tape.add_grad([rb1, rb1], "z", [0, 1], g1)
    tape.add_grad([rb2, rb2], "z", [2, 3], g2)
    batches = []
    visit_batch = tape._visit_batch
    tape._visit_batch = lambda pus, items: (batches.append([rec.rid for rec, _, _ in items]), visit_batch(pus, items))
    assert tape.sweep(pus) == 3
    assert batches == [[rb2, rb1]]  # both runs of b in one recompute
    got = {n: p.grad.clone() for n, p in pus.named_parameters()}

    pus.zero_grad()
    out = pus["b"](pus["a"](x))
    out.backward(torch.cat([g1, g2]))
    for n, p in pus.named_parameters():
        torch.testing.assert_close(got[n], p.grad, atol=1e-6, rtol=1e-5)
