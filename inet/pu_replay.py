"""PU-side replay (paper 6.4 (a)): uses of a PU that received a loss gradient, replayed as supervised pairs.

When the tape's sweep backpropagates a gradient g into a PU run that read inputs x and
wrote y, the pair (x, y* = y - `replay_step` * g) is kept in that PU's ring buffer
(`replay_size` pairs). Every PU step then adds the gradient of
0.5 * mean ||pu(x) - y*||^2 over `replay` pairs drawn from it, so a PU learns from each
environment interaction more than once. `replay_step: 0.5` puts y* at the minimum of a
squared-error loss on the output (g = 2 (y - target)); the loss on y* shrinks as the PU
moves towards it, so old pairs fade instead of being applied again at full strength.
The pairs take every gradient that reached the run: Environment losses and the CU's
gradient into the nodes alike. Draws come from a generator of its own.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from .pus import run_pu
from .tasks.kpi_registry import KPI, Panel

KPIS = (KPI("pu_replay_loss", "the PU replay loss of the last step, summed over PUs (pu_optim.replay; null: off)",
            summary=None, plot=Panel("learning", "losses"), tag_group="train"),)


def pair_loss_backward(pu: nn.Module, inputs: List[torch.Tensor], targets: List[torch.Tensor],
                       weight: float = 1.0) -> torch.Tensor:
    """Add the gradient of `weight` x 0.5 mean ||pu(inputs) - targets||^2 (rows: the n pairs; summed over the
    outputs) to the PU's `.grad`, before the PU optimizer's step: the supervised path PU replay and shortcuts
    (inet/shortcut.py) share. Returns the loss, unweighted and detached."""
    n = targets[0].shape[0]
    with torch.enable_grad():
        outs = run_pu(pu, inputs, n)
        loss = sum(0.5 * (o - t).square().reshape(n, -1).sum(1).mean() for o, t in zip(outs, targets))
        if loss.requires_grad:
            (loss if weight == 1.0 else loss * weight).backward()
    return loss.detach()


class PUReplay:
    """Per PU: a ring of (inputs, target outputs) pairs and the replay loss's backward."""

    def __init__(self, count: int, size: int, step: float, seed: int, device: torch.device):
        self.count, self.size, self.step = count, size, step
        self.gen = torch.Generator(device).manual_seed(seed)
        self.inputs: Dict[str, List[torch.Tensor]] = {}
        self.targets: Dict[str, List[torch.Tensor]] = {}
        self.cursor: Dict[str, int] = {}
        self.filled: Dict[str, int] = {}
        self.last_loss = float("nan")

    def add(self, pu: str, inputs: List[torch.Tensor], outputs: tuple, grads: List[Optional[torch.Tensor]]) -> None:
        """Keep the rows of one recompute that got gradient: inputs [n, *shape] each, outputs and their grads."""
        present = [g for g in grads if g is not None]
        if not present:
            return
        n = present[0].shape[0]
        got = torch.stack([g.reshape(n, -1).abs().sum(1) for g in present]).sum(0) > 0
        rows = got.nonzero().flatten()
        if rows.numel() == 0:
            return
        targets = [(o.detach() - self.step * (g if g is not None else torch.zeros_like(o)))[rows]
                   for o, g in zip(outputs, grads)]
        xs = [x.detach()[rows] for x in inputs]
        if pu not in self.targets:
            self.inputs[pu] = [x.new_zeros(self.size, *x.shape[1:]) for x in xs]
            self.targets[pu] = [t.new_zeros(self.size, *t.shape[1:]) for t in targets]
            self.cursor[pu], self.filled[pu] = 0, 0
        k = min(rows.numel(), self.size)
        at = (torch.arange(k, device=rows.device) + self.cursor[pu]) % self.size
        for ring, x in zip(self.inputs[pu] + self.targets[pu], xs + targets):
            ring[at] = x[-k:]
        self.cursor[pu] = (self.cursor[pu] + k) % self.size
        self.filled[pu] = min(self.filled[pu] + k, self.size)

    def backward(self, pus: nn.ModuleDict) -> None:
        """Add the replay loss's gradient to every PU that has pairs (into `.grad`, before the optimizer step)."""
        total = 0.0
        for name, filled in self.filled.items():
            idx = torch.randint(filled, (self.count,), generator=self.gen, device=self.gen.device)
            loss = pair_loss_backward(pus[name], [x[idx] for x in self.inputs[name]], [t[idx] for t in self.targets[name]])
            total = total + loss
        self.last_loss = total

    def metrics(self) -> Dict[str, float]:
        return {"pu_replay_loss": float(self.last_loss)}

    def state_dict(self) -> dict:
        return {"inputs": {k: [t.clone() for t in v] for k, v in self.inputs.items()},
                "targets": {k: [t.clone() for t in v] for k, v in self.targets.items()},
                "cursor": dict(self.cursor), "filled": dict(self.filled), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.inputs = {k: [t.clone() for t in v] for k, v in state["inputs"].items()}
        self.targets = {k: [t.clone() for t in v] for k, v in state["targets"].items()}
        self.cursor, self.filled = dict(state["cursor"]), dict(state["filled"])
        self.gen.set_state(state["gen"])
