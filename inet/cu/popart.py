"""PopArt (van Hasselt et al. 2016; multi-task use: Hessel et al. 2019): value targets normalised per head.

Each value head (one per Environment) learns `(target - mean) / std` of its own
TD targets, with running statistics of those targets: "Pop" (Preserving Outputs
Precisely) rescales the head's last layer whenever the statistics change, so that
its unnormalised values `std * output + mean` stay what they were, and "Art"
(Adaptively Rescaling Targets) keeps the targets the network learns of order one,
whatever an Environment's reward scale.

The statistics are exponential moving averages of each head's batch-mean target and
squared target with step size beta_t = beta / (1 - (1 - beta)^t) at update t (the
paper's time-varying step; the first update takes the batch's statistics as they
are, so there is no warm-up from an arbitrary start). Before any update they are
mean 0, std 1: the identity.
"""
from __future__ import annotations

from typing import Tuple

import torch


class PopArt:
    """Running mean and standard deviation of the TD targets of `heads` value heads."""

    def __init__(self, heads: int, beta: float, device: torch.device, min_std: float = 1e-4):
        self.beta = beta
        self.min_std = min_std
        self.mean = torch.zeros(heads, device=device)
        self.second = torch.ones(heads, device=device)  # the running mean of the squared targets
        self.updates = 0

    @property
    def std(self) -> torch.Tensor:
        """[heads] the standard deviation of each head's targets (at least `min_std`)."""
        return (self.second - self.mean.square()).clamp(min=self.min_std ** 2).sqrt()

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        """Unnormalised values [B] (one head) or [B, heads] -> what the network learns."""
        return (values - self.mean) / self.std

    def unnormalise(self, outputs: torch.Tensor) -> torch.Tensor:
        """Network outputs [B] (one head) or [B, heads] -> values on each Environment's reward scale."""
        return outputs * self.std + self.mean

    @torch.no_grad()
    def update(self, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Move the statistics towards a batch of targets [B] or [B, heads]. Returns (scale, shift) [heads]:
        a head whose normalised output was o must now output scale * o + shift to keep its value."""
        y = targets.reshape(targets.shape[0], -1)
        self.updates += 1
        step = self.beta / (1.0 - (1.0 - self.beta) ** self.updates)
        old_mean, old_std = self.mean.clone(), self.std
        self.mean.lerp_(y.mean(0), step)
        self.second.lerp_(y.square().mean(0), step)
        new_std = self.std
        return old_std / new_std, (old_mean - self.mean) / new_std

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "second": self.second.clone(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.mean.copy_(state["mean"])
        self.second.copy_(state["second"])
        self.updates = state["updates"]
