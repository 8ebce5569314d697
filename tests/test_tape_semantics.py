"""The horizon counts records along each path from a loss, per lane (DESIGN.md section 5; issue 17).

Each test builds a tape by hand and compares the sweep's parameter gradients with plain
autograd on the same computation, unrolled by hand and cut where the rule says a
contribution stops.
"""
from __future__ import annotations

import random
from typing import Dict, List

import pytest
import torch
from torch import nn

from inet.nodes import ENV
from inet.tape import Tape


def linears(names: str, seed: int = 0, width: int = 2) -> nn.ModuleDict:
    torch.manual_seed(seed)
    return nn.ModuleDict({n: nn.Linear(width, width) for n in names})


def grads_of(pus: nn.ModuleDict) -> Dict[str, torch.Tensor]:
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in pus.named_parameters()}


def assert_same(got: Dict[str, torch.Tensor], want: Dict[str, torch.Tensor]) -> None:
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-6, rtol=1e-5, msg=n)


def test_one_lane_loss_does_not_carry_another_lanes_gradient_past_the_horizon():
    """Issue 17's reproduction: lanes 0 and 1 run p0 -> p1 -> p2 -> p3 in lockstep, horizon 3. Lane 0's loss
    on p3's output is 4 records from p0, so p0 gets nothing from it, though lane 1's loss on p1's output
    (2 records from p0) reaches the same p0 record in the same sweep."""
    pus = linears("0123")
    x = torch.randn(2, 2)
    tape = Tape(horizon=3)
    values, rid = x, ENV
    for i in range(4):
        rid = tape.record(str(i), [0, 1], [f"n{i}"], [values], [[rid, rid]], [f"n{i + 1}"])
        values = pus[str(i)](values).detach()
    r1 = 1  # the record of p1 (ids count from 0)
    g0, g1 = torch.randn(1, 2), torch.randn(1, 2)
    tape.add_grad([rid], "n4", [0], g0)
    tape.add_grad([r1], "n2", [1], g1)
    tape.sweep(pus)
    got = grads_of(pus)

    pus.zero_grad()
    y0 = pus["0"](x)  # lane 0 below: cut at p1's input (p0 would be depth 4)
    lane0 = pus["3"](pus["2"](pus["1"](y0[:1].detach())))
    lane1 = pus["1"](y0[1:])  # lane 1: p1 at depth 1, p0 at depth 2
    ((lane0 * g0).sum() + (lane1 * g1).sum()).backward()
    assert_same(got, grads_of(pus))
    assert got["0.weight"].abs().sum() > 0, "lane 1's gradient must reach p0"


@pytest.mark.parametrize("horizon", [3, 4])
def test_diamond_counts_each_path(horizon):
    """x -> p0 -> w -> pa -> a; a -> pb -> b; (a, b) -> pc -> c; loss on c. pa is 2 records from the loss
    along a -> c and 3 along a -> b -> c, so p0 is 3 and 4 records away: with horizon 3 only the short
    path's contribution goes on from pa to p0 (both update pa), with horizon 4 both do."""
    torch.manual_seed(1)
    pus = nn.ModuleDict({"p0": nn.Linear(2, 2), "pa": nn.Linear(2, 2), "pb": nn.Linear(2, 2), "pc": nn.Linear(4, 2)})

    class Cat(nn.Module):
        def __init__(self, lin: nn.Linear):
            super().__init__()
            self.lin = lin

        def forward(self, a, b):
            return self.lin(torch.cat([a, b], 1))

    run = {"p0": pus["p0"], "pa": pus["pa"], "pb": pus["pb"], "pc": Cat(pus["pc"])}
    x = torch.randn(1, 2)
    tape = Tape(horizon=horizon)
    r0 = tape.record("p0", [0], ["x"], [x], [[ENV]], ["w"])
    w = run["p0"](x).detach()
    ra = tape.record("pa", [0], ["w"], [w], [[r0]], ["a"])
    a = run["pa"](w).detach()
    rb = tape.record("pb", [0], ["a"], [a], [[ra]], ["b"])
    b = run["pb"](a).detach()
    rc = tape.record("pc", [0], ["a", "b"], [a, b], [[ra], [rb]], ["c"])
    g = torch.randn(1, 2)
    tape.add_grad([rc], "c", [0], g)
    tape.sweep(run)
    got = grads_of(pus)

    pus.zero_grad()
    w_ = run["p0"](x)
    a_short = run["pa"](w_)
    a_long = a_short if horizon >= 4 else run["pa"](w_.detach())
    (run["pc"](a_short, run["pb"](a_long)) * g).sum().backward()
    assert_same(got, grads_of(pus))


def test_two_losses_at_different_depths_are_passed_on_apart():
    """Chain p0 -> p1 -> p2, horizon 2. Loss A on p2's output reaches p1 at depth 2 and must stop there;
    loss B on p1's output reaches p1 at depth 1 and p0 at depth 2. p0 gets only B's gradient."""
    pus = linears("012", seed=2)
    x = torch.randn(1, 2)
    tape = Tape(horizon=2)
    values, rid = x, ENV
    for i in range(3):
        rid = tape.record(str(i), [0], [f"n{i}"], [values], [[rid]], [f"n{i + 1}"])
        values = pus[str(i)](values).detach()
    ga, gb = torch.randn(1, 2), torch.randn(1, 2)
    tape.add_grad([2], "n3", [0], ga)
    tape.add_grad([1], "n2", [0], gb)
    tape.sweep(pus)
    got = grads_of(pus)

    pus.zero_grad()
    y0 = pus["0"](x)
    loss_a = (pus["2"](pus["1"](y0.detach())) * ga).sum()
    loss_b = (pus["1"](y0) * gb).sum()
    (loss_a + loss_b).backward()
    assert_same(got, grads_of(pus))


def simulate(pus: nn.ModuleDict, wiring: Dict[str, tuple], choices: List[List[str]], x: torch.Tensor,
             losses: List[tuple], horizon: int, lanes: List[int]) -> Dict[str, torch.Tensor]:
    """Run `choices[t][lane]` for the given lanes in lockstep on a fresh tape, then sweep `losses`
    ((lane, node, grad) each) and return the parameter gradients."""
    pus.zero_grad()
    tape = Tape(horizon=horizon)
    nodes = ["n0", "n1", "n2"]
    values = {n: x[lanes].clone() for n in nodes}
    writers = {n: [ENV] * len(lanes) for n in nodes}
    for step in choices:
        by_pu: Dict[str, List[int]] = {}
        for row, lane in enumerate(lanes):
            by_pu.setdefault(step[lane], []).append(row)
        for pu, rows in sorted(by_pu.items()):
            src, dst = wiring[pu]
            idx = torch.tensor(rows)
            rid = tape.record(pu, rows, [src], [values[src][idx]], [[writers[src][r] for r in rows]], [dst])
            with torch.no_grad():
                values[dst] = values[dst].index_put((idx,), pus[pu](values[src][idx]))
            for r in rows:
                writers[dst][r] = rid
    for lane, node, g in losses:
        if lane in lanes:
            row = lanes.index(lane)
            tape.add_grad([writers[node][row]], node, [row], g)
    tape.sweep(pus)
    return grads_of(pus)


@pytest.mark.parametrize("seed", range(6))
def test_lanes_give_the_gradients_of_separate_single_lane_tapes(seed):
    """B lanes sharing records give exactly the summed parameter gradients of B one-lane tapes (the
    engine then averages them over the lanes that had a loss), for random routes, losses and horizons."""
    rng = random.Random(seed)
    pus = linears("abcd", seed=seed)
    nodes = ["n0", "n1", "n2"]
    wiring = {p: (rng.choice(nodes), rng.choice(nodes)) for p in pus}
    b, steps = 5, rng.randint(2, 6)
    choices = [[rng.choice(list(pus)) for _ in range(b)] for _ in range(steps)]
    x = torch.randn(b, 2, generator=torch.Generator().manual_seed(seed))
    losses = [(lane, rng.choice(nodes), torch.randn(1, 2, generator=torch.Generator().manual_seed(seed * 10 + lane)))
              for lane in range(b) if rng.random() < 0.8]
    horizon = rng.randint(1, 4)
    together = simulate(pus, wiring, choices, x, losses, horizon, list(range(b)))
    apart: Dict[str, torch.Tensor] = {}
    for lane in range(b):
        for n, g in simulate(pus, wiring, choices, x, losses, horizon, [lane]).items():
            apart[n] = apart.get(n, 0) + g
    assert_same(together, apart)


@pytest.mark.parametrize("recompute", ["current", "stored"])
def test_recompute_after_an_optimizer_step(recompute):
    """p0 -> p1 run; both PUs take a step; then a loss on p1's output. `stored` gives autograd's gradient at
    the parameters the runs used, `current` the gradient at the stepped ones (what DESIGN.md calls cheap)."""
    pus = linears("01", seed=3)
    before = {n: p.detach().clone() for n, p in pus.named_parameters()}
    x = torch.randn(2, 2)
    tape = Tape(horizon=2, recompute=recompute)
    r0 = tape.record("0", [0, 1], ["n0"], [x], [[ENV, ENV]], ["n1"])
    y = pus["0"](x).detach()
    r1 = tape.record("1", [0, 1], ["n1"], [y], [[r0, r0]], ["n2"])
    for p in pus.parameters():  # an optimizer step of both PUs, with the tape told first
        p.grad = torch.ones_like(p)
    tape.before_step(pus)
    with torch.no_grad():
        for p in pus.parameters():
            p.add_(0.5)
    pus.zero_grad(set_to_none=True)
    g = torch.randn(2, 2)
    tape.add_grad([r1, r1], "n2", [0, 1], g)
    tape.sweep(pus)
    got = grads_of(pus)

    ref = linears("01", seed=3)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(before[n] if recompute == "stored" else before[n] + 0.5)
    h = ref["0"](x)
    if recompute == "current":  # p1 recomputes from the stored input y, and passes its gradient to p0 at x
        h = y + (h - h.detach())
    (ref["1"](h) * g).sum().backward()
    assert_same(got, grads_of(ref))
    assert (len(tape.snapshots) == 2) == (recompute == "stored")
    tape.prune(set())
    assert not tape.snapshots, "snapshots no record uses are dropped"


def test_stored_recompute_resumes_exactly_and_runs_in_an_engine():
    """reduce/xor with `tape.recompute=stored`: snapshots come and go with the records, and a tape
    restored from its state_dict sweeps to the same gradients."""
    from inet.compose import compose
    from inet.engine import Engine

    engine = Engine(compose(["experiment=reduce/xor", "iterations=400", "tape.recompute=stored"]))
    kept = 0
    for _ in range(300):
        engine.step()
        assert set(engine.tape.snapshots) <= {(r.pu, r.version) for r in engine.tape.records.values()}
        kept = max(kept, len(engine.tape.snapshots))
        if engine.tape.snapshots:
            state = engine.tape.state_dict()
    assert kept, "a reduce run keeps parameter versions for its records"
    twin = Tape(engine.cfg.tape.horizon, recompute="stored")
    twin.load_state_dict(state)
    assert twin.versions == state["versions"] and [(pu, v) for pu, v, _ in state["snapshots"]] == list(twin.snapshots)
