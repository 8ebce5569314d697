"""QR-DQN (Dabney et al. 2018): a distributional CU that learns N quantiles of each action's return.

The network outputs [B, n_actions, N] quantile values; an action's value is their
mean, so acting, the schedule, replay and n-step returns are DQN's. The loss is
the quantile Huber loss between each predicted quantile (at the midpoint
fractions (2i + 1) / 2N) and every sample of the target distribution
r + discount * z'(next_obs, a*), with a* the greedy action of the target network
(or of the online one with `double`). `ActInfo.quantiles` exposes the per-action
quantiles, whose spread measures the CU's uncertainty about an action.

Options (`cu.params`): `n_quantiles` (default 25), `kappa` (the Huber threshold, 1).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from ..config import ConfigError, CUConfig
from .dqn import DQN, QNetwork


class QuantileNetwork(nn.Module):
    """An MLP from the CU input to N quantiles per action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: List[int], n_quantiles: int):
        super().__init__()
        self.n_actions, self.n_quantiles = n_actions, n_quantiles
        self.net = QNetwork(obs_dim, n_actions * n_quantiles, hidden, dueling=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).view(-1, self.n_actions, self.n_quantiles)


def quantile_huber_loss(pred: torch.Tensor, target: torch.Tensor, kappa: float) -> torch.Tensor:
    """pred [B, N] quantiles at fractions (2i + 1) / 2N, target [B, M] samples: the mean over the batch
    of the sum over predicted quantiles of the mean over target samples."""
    n = pred.shape[1]
    tau = (torch.arange(n, device=pred.device, dtype=pred.dtype) + 0.5) / n
    u = target.unsqueeze(1) - pred.unsqueeze(2)  # [B, N, M]
    huber = torch.where(u.abs() <= kappa, 0.5 * u.square(), kappa * (u.abs() - 0.5 * kappa))
    weight = (tau.view(1, n, 1) - (u.detach() < 0).to(pred.dtype)).abs()
    return (weight * huber / kappa).mean(2).sum(1).mean()


class QRDQN(DQN):
    """DQN with a quantile head and the quantile Huber loss."""

    distributional = True

    def __init__(self, cfg: CUConfig, *args, heads: int = 1, **kwargs):
        if heads > 1:
            raise ConfigError(f"cu._target_: QR-DQN keeps one value for all Environments, and this IN has {heads}; "
                              "use cu=dqn, which keeps a value per Environment")
        if cfg.popart:
            raise ConfigError("cu.popart: QR-DQN has no PopArt; set cu.popart=false or use cu=dqn")
        unknown = set(cfg.params) - {"n_quantiles", "kappa"}
        if unknown:
            raise ConfigError(f"cu.params: QR-DQN has no option {sorted(unknown)[0]!r}; it takes n_quantiles, kappa")
        self.n_quantiles = int(cfg.params.get("n_quantiles", 25))
        self.kappa = float(cfg.params.get("kappa", 1.0))
        if self.n_quantiles < 1:
            raise ConfigError(f"cu.params.n_quantiles: must be >= 1, got {self.n_quantiles}")
        if self.kappa <= 0:
            raise ConfigError(f"cu.params.kappa: must be > 0, got {self.kappa}")
        if cfg.dueling:
            raise ConfigError("cu.dueling: QR-DQN has no dueling head; set cu.dueling=false")
        super().__init__(cfg, *args, **kwargs)

    def network(self, obs_dim: int, n_actions: int) -> nn.Module:
        return QuantileNetwork(obs_dim, n_actions, self.cfg.hidden, self.n_quantiles)

    def _values(self, z: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return z.mean(2), z

    def _td_loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                 discount: torch.Tensor, online: Optional[torch.Tensor] = None) -> torch.Tensor:
        n = self.n_quantiles
        z = (self.q(obs) if online is None else online).gather(1, actions.view(-1, 1, 1).expand(-1, 1, n)).squeeze(1)
        with torch.no_grad():
            z_next = self.target(next_obs)
            chooser = self.q(next_obs) if self.cfg.double else z_next
            best = chooser.mean(2).argmax(1)
            z_best = z_next.gather(1, best.view(-1, 1, 1).expand(-1, 1, n)).squeeze(1)
            target = rewards.unsqueeze(1) + discount.unsqueeze(1) * z_best
        return quantile_huber_loss(z, target, self.kappa)
