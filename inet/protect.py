"""Protecting trained PUs from unusual uses (paper 6.1, 6.6): a weight per use on the gradient a PU run receives.

The CU decides what the PUs train on. A PU run the CU chose at random, or one whose
loss gradient is far above what that PU usually gets, is most likely a use the PU
is not meant for; a full-size update from it can undo what the PU has learned
(the double-optimisation problem of 6.1). `pu_optim.guard` damps a PU's whole step;
the options here act per use (per tape record row, in the sweep, before backward):

- `pu_optim.random_use_scale: w` multiplies the gradient reaching a PU run the CU
  took by exploration by w (1 = off, 0 = such runs teach nothing);
- `pu_optim.use_guard: k` scales a use whose output-gradient norm exceeds k times
  the PU's running average per use down to k times that average;
- `pu_optim.use_normalise: true` rescales every use's output gradient from
  Environment losses to unit norm, so uses along routes of different depth and loss
  scale (the "variable gradients" of 3.1.2) reach Adam at one scale. Adam divides
  out the common scale, so only the uses' relative sizes matter; each use then
  counts by its direction alone, which keeps pulling a PU's small errors down as
  hard as its large ones. The CU's gradient into the nodes keeps its size: how large
  it is says how much the CU's TD error depends on the node, and at unit norm its
  noise would make full-size steps (docs/results/ablations.md, stop 27: routing
  through a PU the CU trains fell from 0.96-0.97 to 0.87-0.95 correct).

The weight scales the gradient on the record's outputs, so it applies to the PU's
own parameters and to everything the gradient passes on to upstream records: a
signal that went through an unusual use is suspect for them too. The running
average (factor `pu_optim.guard_beta`) is kept on the device, without host syncs.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch

from .config import PUOptimConfig
from .tasks.kpi_registry import KPI, Panel

PROTECTION = Panel("learning", "PU protection")
KPIS = (
    KPI("random_uses_scaled", "PU runs chosen by exploration whose gradient random_use_scale weighted (total)",
        integer=True, summary=None, plot=PROTECTION, tag_group="train"),
    KPI("uses_guarded", "PU runs whose gradient use_guard damped (total)", integer=True, summary=None,
        plot=PROTECTION, tag_group="train"),
)


class UseScaler:
    """Per-use weights on the output gradients of tape records (see the module docstring)."""

    def __init__(self, cfg: PUOptimConfig, device: torch.device):
        self.cfg = cfg
        self.per_norm = cfg.use_guard is not None or cfg.use_normalise
        self.ema: Dict[str, torch.Tensor] = {}  # use_guard: PU -> running average output-gradient norm per use
        self.counts = {k.name: torch.zeros((), dtype=torch.long, device=device) for k in KPIS}

    @property
    def active(self) -> bool:
        return self.cfg.random_use_scale != 1.0 or self.per_norm

    def scale(self, pu: str, grads: List[Optional[torch.Tensor]], random: Optional[torch.Tensor],
              from_cu: Union[None, bool, torch.Tensor] = None) -> List[Optional[torch.Tensor]]:
        """The record rows' output gradients, weighted; `random` [n] marks rows the CU chose by exploration,
        `from_cu` those whose gradient is the CU's (True: all; [n] bool; None: none), which `use_normalise`
        leaves at their size."""
        present = [g for g in grads if g is not None]
        if not present:
            return grads
        n = present[0].shape[0]
        w = torch.ones(n, device=present[0].device)
        if random is not None and self.cfg.random_use_scale != 1.0:
            w = torch.where(random, self.cfg.random_use_scale, w)
            self.counts["random_uses_scaled"] += random.sum()
        if self.per_norm:
            norm = torch.stack([g.reshape(n, -1).square().sum(1) for g in present]).sum(0).sqrt()
            if self.cfg.use_normalise:
                if from_cu is not True:
                    rescale = norm > 0 if from_cu is None else (norm > 0) & ~from_cu
                    w = torch.where(rescale, w / norm.clamp_min(torch.finfo(norm.dtype).tiny), w)
            else:
                w = self._guarded(pu, norm, w)
        return [None if g is None else g * w.reshape(n, *([1] * (g.dim() - 1))) for g in grads]

    def _guarded(self, pu: str, norm: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        used = norm > 0  # rows the loss reached (a record swept for other rows has zero rows)
        ema = self.ema.get(pu)
        if ema is None:
            ema = torch.full((), float("nan"), device=norm.device)
        known = ~torch.isnan(ema)  # no average yet: the first use sets it, unscaled
        safe = norm.clamp_min(torch.finfo(norm.dtype).tiny)
        over = used & known & (norm > self.cfg.use_guard * ema)
        w = torch.where(over, w * self.cfg.use_guard * ema / safe, w)
        self.counts["uses_guarded"] += over.sum()
        count = used.sum()
        mean = (norm * w * used).sum() / count.clamp_min(1)
        b = self.cfg.guard_beta
        moved = torch.where(known, b * ema + (1 - b) * mean, mean)
        self.ema[pu] = torch.where((count > 0) & torch.isfinite(mean), moved, ema)
        return w

    def metrics(self) -> Dict[str, float]:
        return {k: float(v) for k, v in self.counts.items()}

    def state_dict(self) -> dict:
        return {"ema": {k: v.clone() for k, v in self.ema.items()}, "counts": {k: v.clone() for k, v in self.counts.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.ema = {k: v.clone() for k, v in state["ema"].items()}
        self.counts = {k: v.clone() for k, v in state["counts"].items()}
