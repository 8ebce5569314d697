"""LeanAdam takes the same steps as torch.optim.Adam(fused=True), bitwise, and saves the same state."""
from __future__ import annotations

import copy

import torch
from torch import nn

from inet.adam import LeanAdam


def _nets() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(3, 4), "b": nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))})


def test_lean_adam_matches_torch_adam_bitwise_with_groups_and_missing_grads() -> None:
    ours, theirs = _nets(), _nets()
    lean = LeanAdam([{"params": list(ours[k].parameters()), "lr": lr} for k, lr in (("a", 1e-2), ("b", 3e-3))], lr=1e-3)
    ref = torch.optim.Adam([{"params": list(theirs[k].parameters()), "lr": lr} for k, lr in (("a", 1e-2), ("b", 3e-3))],
                           lr=1e-3, fused=True)
    gen = torch.Generator().manual_seed(1)
    for i in range(12):
        x = torch.randn(6, 3, generator=gen)
        used = ["a", "b"] if i % 3 else (["a"] if i % 2 else ["b"])  # some steps leave a group without gradients
        for net, opt in ((ours, lean), (theirs, ref)):
            h = net["a"](x)
            loss = h.square().sum() if used == ["a"] else net["b"](h.detach() if used == ["b"] else h).square().sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
        for p, q in zip(ours.parameters(), theirs.parameters()):
            assert torch.equal(p, q), f"step {i}"
            assert p.grad is None
    assert str(lean.state_dict()) == str(ref.state_dict())


def test_lean_adam_state_dict_round_trip_continues_identically() -> None:
    net = _nets()
    opt = LeanAdam(net.parameters(), lr=1e-2)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))

    def step(n: nn.Module, o: LeanAdam) -> None:
        n["b"](n["a"](x)).sum().backward()
        o.step()
        o.zero_grad()

    step(net, opt)
    twin = copy.deepcopy(net)
    twin_opt = LeanAdam(twin.parameters(), lr=1e-2)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # torch shares, a checkpoint does not
    for _ in range(3):
        step(net, opt)
        step(twin, twin_opt)
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
