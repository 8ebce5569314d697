"""Curiosity (paper 6.3): an intrinsic reward that pays the CU for visiting what it does not know yet.

Three kinds (`curiosity.kind`), each a reward per lane for one iteration's transition:

- `forward`: a model predicts the CU-visible node values after the action from the
  CU input and the action (one-hot); the reward is its squared error, and the model
  takes one Adam step on it. Routes whose results the model cannot predict yet pay.
  Where no node is CU-visible, `forward` and `rnd` model the next CU input instead
  (its signals: task ends, new items).
- `rnd`: random network distillation (Burda et al. 2018): a fixed random network
  embeds the CU-visible node values after the action, a predictor learns to match it;
  the reward is the predictor's squared error (high on rarely seen node values).
- `spread`: the drop of the CU's return-distribution spread (the standard deviation
  of a distributional learner's quantiles, cu=qr_dqn) from the action taken to the
  greedy action at the next CU input: what the step taught the CU about its returns,
  clipped at 0 (the paper's preferred form).

With `normalise` the raw reward is divided by its running standard deviation (as
RND does), so `weight` means the same for every kind and task. The weight falls
linearly to 0 at `decay_iterations` (0: constant). The networks are built from a
generator of their own, so turning curiosity on shifts no other random draw.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, CuriosityConfig
from ..pus import mlp
from ..tasks.kpi_registry import KPI, Panel
from .protocol import Learner, Transition

CURIOSITY = Panel("learning", "curiosity")
KPIS = (
    KPI("curiosity_reward", "mean intrinsic reward of the last iteration (weighted; null: curiosity off)",
        summary=None, plot=CURIOSITY, tag_group="train"),
    KPI("curiosity_loss", "the forward model's / RND predictor's last loss (null: none)", summary=None,
        plot=CURIOSITY, tag_group="train"),
)


class Curiosity:
    """The intrinsic reward of one kind, its networks and its running statistics."""

    def __init__(self, cfg: CuriosityConfig, obs_dim: int, n_actions: int, node_dim: int, learner: Learner,
                 seed: int, device: torch.device):
        self.cfg, self.n_actions, self.learner = cfg, n_actions, learner
        self.mean = torch.zeros((), device=device)  # running mean and variance of the raw reward (normalise)
        self.var = torch.ones((), device=device)
        self.seen = 0
        self.last = {"curiosity_reward": float("nan"), "curiosity_loss": float("nan")}
        self.model: Optional[nn.Module] = None
        self.target: Optional[nn.Module] = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if cfg.kind == "forward":
                self.model = mlp([obs_dim + n_actions, *cfg.hidden, node_dim]).to(device)
            elif cfg.kind == "rnd":
                self.model = mlp([node_dim, *cfg.hidden, cfg.hidden[-1]]).to(device)
                self.target = mlp([node_dim, *cfg.hidden, cfg.hidden[-1]]).to(device).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr) if self.model is not None else None
        if cfg.kind == "spread":
            _, info = learner.act(torch.zeros(1, obs_dim, device=device), 0, greedy=True)
            if info.quantiles is None:
                raise ConfigError(f"curiosity.kind: 'spread' needs a learner that reports return quantiles "
                                  f"({type(learner).__name__} does not); use cu=qr_dqn or another kind")

    def weight(self, iteration: int) -> float:
        d = self.cfg.decay_iterations
        return self.cfg.weight * (max(0.0, 1.0 - iteration / d) if d else 1.0)

    def reward(self, t: Transition, next_nodes: torch.Tensor, quantiles: Optional[torch.Tensor],
               iteration: int) -> torch.Tensor:
        """The weighted intrinsic reward [B] of transition `t` (and one training step of the kind's model).
        `next_nodes` [B, node_dim]: the CU-visible node values after the action; `quantiles`: the learner's
        [B, n_actions, N] quantiles at `t.obs` (kind spread)."""
        raw = self._raw(t, next_nodes, quantiles).detach()
        if self.cfg.normalise:
            self._track(raw)
            raw = raw / torch.where(self.var > 1e-12, self.var, torch.ones_like(self.var)).sqrt()
        r = raw * self.weight(iteration)
        self.last["curiosity_reward"] = r.mean()
        return r

    def _raw(self, t: Transition, next_nodes: torch.Tensor, quantiles: Optional[torch.Tensor]) -> torch.Tensor:
        if self.cfg.kind == "spread":
            taken = quantiles.gather(1, t.actions.view(-1, 1, 1).expand(-1, 1, quantiles.shape[2])).squeeze(1)
            with torch.no_grad():
                _, info = self.learner.act(t.next_obs, 0, greedy=True)
            after = info.quantiles.gather(1, info.greedy.view(-1, 1, 1).expand(-1, 1, quantiles.shape[2])).squeeze(1)
            return (taken.std(1) - after.std(1)).clamp_min(0.0) * (1.0 - t.terminal)
        with torch.enable_grad():
            if self.cfg.kind == "forward":
                x = torch.cat([t.obs, F.one_hot(t.actions, self.n_actions).to(t.obs.dtype)], 1)
                error = (self.model(x) - next_nodes).square().mean(1)
            else:
                error = (self.model(next_nodes) - self.target(next_nodes)).square().mean(1)
            loss = error.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        self.last["curiosity_loss"] = loss.detach()
        return error

    def _track(self, raw: torch.Tensor) -> None:
        """The running mean and variance of the raw reward over every lane-iteration so far (batches merged
        as in Chan et al.'s parallel algorithm)."""
        n, m, v = raw.numel(), raw.mean(), raw.var(unbiased=False)
        if self.seen == 0:
            self.mean, self.var = m, v
        else:
            total = self.seen + n
            delta = m - self.mean
            self.mean = self.mean + delta * n / total
            self.var = (self.var * self.seen + v * n + delta.square() * self.seen * n / total) / total
        self.seen += n

    def metrics(self) -> Dict[str, float]:
        return {k: float(v) for k, v in self.last.items()}

    def state_dict(self) -> dict:
        return {"model": None if self.model is None else self.model.state_dict(),
                "target": None if self.target is None else self.target.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "var": self.var.clone(), "mean": self.mean.clone(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        for part in ("model", "target", "optimizer"):
            if getattr(self, part) is not None:
                getattr(self, part).load_state_dict(state[part])
        self.var, self.mean, self.seen = state["var"].clone(), state["mean"].clone(), state["seen"]
