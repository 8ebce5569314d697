"""A lean step for `torch.optim.Adam(fused=True)`: the same kernel, without the per-step bookkeeping.

`Adam.step()` spends far longer in Python (profiler hooks, grouping tensors by
device and dtype, re-reading every parameter's state) than in its fused kernel
when the networks are as small as an IN's PUs and CU. `LeanAdam` keeps the
`torch.optim.Adam` object (so its state_dict, checkpoints and hyper-parameters
are torch's own) and calls the same `torch._fused_adam_` kernel in the same way:
the steps, the moments and the parameters come out bitwise equal
(tests/test_adam.py). The first step of any parameter goes through torch's own
`step()`, which creates its state.
"""
from __future__ import annotations

from typing import Iterable, List

import torch
from torch import nn


class LeanAdam:
    """`torch.optim.Adam(params, fused=True)` with a cheaper `step()` and `zero_grad()`."""

    def __init__(self, params: Iterable, lr: float):
        self.adam = torch.optim.Adam(params, lr=lr, fused=True)
        self.groups: List[List[nn.Parameter]] = [list(g["params"]) for g in self.adam.param_groups]

    @property
    def param_groups(self) -> list:
        return self.adam.param_groups

    def step(self) -> None:
        """One Adam step of every parameter that has a gradient (as `torch.optim.Adam.step`)."""
        state = self.adam.state
        todo = []
        for group, params in zip(self.adam.param_groups, self.groups):
            ps = [p for p in params if p.grad is not None]
            if not ps:
                continue
            if any(p not in state for p in ps):  # torch creates the state on a parameter's first step
                self.adam.step()
                return
            todo.append((group, ps))
        for group, ps in todo:
            st = [state[p] for p in ps]
            steps = [s["step"] for s in st]
            beta1, beta2 = group["betas"]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(ps, [p.grad for p in ps], [s["exp_avg"] for s in st], [s["exp_avg_sq"] for s in st],
                               [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
                               grad_scale=None, found_inf=None)

    def zero_grad(self) -> None:
        """Drop every gradient (`zero_grad(set_to_none=True)`)."""
        for params in self.groups:
            for p in params:
                p.grad = None

    def state_dict(self) -> dict:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.adam.load_state_dict(state)
