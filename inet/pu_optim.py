"""The PUs' optimizer: one Adam step per iteration that produced gradients, with per-PU
clipping and the gradient guard of paper 6.1.

The guard protects trained PUs from wrongful use: when the CU runs a PU on data it
is not meant for, the PU's gradient is typically far larger than on its own task,
and Adam (which normalises by a running gradient scale) would turn one such
gradient into a full-size step. With `guard: k`, a PU whose gradient norm exceeds
k times its running average (EMA with factor `guard_beta`) has its gradient
scaled down to k times that average; the average is updated with the damped norm.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from torch import nn

from .adam import LeanAdam, total_norm
from .config import PUOptimConfig


class PUOptimizer:
    """Adam over all trainable PU parameters (one param group per PU)."""

    def __init__(self, pus: nn.ModuleDict, cfg: PUOptimConfig, lrs: Dict[str, Optional[float]]):
        """`lrs`: per-PU learning rates; None falls back to `cfg.lr`."""
        self.cfg = cfg
        self.params: Dict[str, List[nn.Parameter]] = {
            n: [p for p in pu.parameters() if p.requires_grad] for n, pu in pus.items()}
        self.params = {n: ps for n, ps in self.params.items() if ps}
        groups = [{"params": ps, "lr": lrs.get(n) or cfg.lr} for n, ps in self.params.items()]
        self.adam = LeanAdam(groups, lr=cfg.lr) if groups else None
        self.grad_ema: Dict[str, float] = {}
        self.guarded = 0  # how many PU updates the guard damped
        self.last_norms: Dict[str, float] = {}  # each PU's gradient norm at its last step (before clip/guard)

    def step(self) -> Optional[str]:
        """Clip/guard each PU's gradient, take one Adam step, clear gradients.

        A non-finite gradient skips the step; the return value then names the PU.
        """
        if self.adam is None:
            return None
        grads = {n: [p.grad for p in ps if p.grad is not None] for n, ps in self.params.items()}
        grads = {n: gs for n, gs in grads.items() if gs}
        if not grads:
            return None
        norms = dict(zip(grads, torch.stack([total_norm(gs) for gs in grads.values()]).tolist()))
        bad = next((n for n, x in norms.items() if not math.isfinite(x)), None)  # one host sync for all PUs
        if bad is not None:
            self.adam.zero_grad()
            return f"PU '{bad}' got a non-finite gradient"
        self.last_norms.update(norms)
        if self.cfg.clip_grad_norm is not None or self.cfg.guard is not None:
            for name, gs in grads.items():
                self._limit(name, gs, norms[name])
        self.adam.step()
        self.adam.zero_grad()
        return None

    def _limit(self, name: str, grads: List[torch.Tensor], norm: float) -> None:
        limit = self.cfg.clip_grad_norm if self.cfg.clip_grad_norm is not None else float("inf")
        if self.cfg.guard is not None:
            ema = self.grad_ema.get(name)
            if ema is not None and norm > self.cfg.guard * ema:
                limit = min(limit, self.cfg.guard * ema)
                self.guarded += 1
        if norm > limit:
            torch._foreach_mul_(grads, limit / norm)
            norm = limit
        if self.cfg.guard is not None:
            b = self.cfg.guard_beta
            self.grad_ema[name] = norm if name not in self.grad_ema else b * self.grad_ema[name] + (1 - b) * norm

    def learning_rates(self) -> Dict[str, float]:
        """Each trained PU's current learning rate."""
        if self.adam is None:
            return {}
        return {n: float(g["lr"]) for n, g in zip(self.params, self.adam.param_groups)}

    def state_dict(self) -> dict:
        return {"adam": self.adam.state_dict() if self.adam else None,
                "grad_ema": dict(self.grad_ema), "guarded": self.guarded, "last_norms": dict(self.last_norms)}

    def load_state_dict(self, state: dict) -> None:
        if self.adam is not None:
            self.adam.load_state_dict(state["adam"])
        self.grad_ema = dict(state["grad_ema"])
        self.guarded = state["guarded"]
        self.last_norms = dict(state.get("last_norms", {}))  # older checkpoints have none
