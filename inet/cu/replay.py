"""A ring-buffer replay memory of CU transitions, preallocated on the device."""
from __future__ import annotations

from typing import Tuple

import torch


class ReplayBuffer:
    """Stores (obs, action, return, next_obs, discount): the TD target is return + discount * V(next_obs).

    `discount` is gamma^n for an n-step transition and 0 where a task instance ended
    within it (task-instance ends cut TD bootstrapping). Returns and discounts have `value_shape`
    per transition: () for one value, (E,) for a value per Environment."""

    def __init__(self, capacity: int, obs_dim: int, device: torch.device, value_shape: Tuple[int, ...] = ()):
        self.capacity = capacity
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, *value_shape, device=device)
        self.discount = torch.zeros(capacity, *value_shape, device=device)
        self.cursor = 0
        self.size = 0

    def add(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
            next_obs: torch.Tensor, discount: torch.Tensor) -> None:
        """Add a batch of B transitions (one per lane)."""
        n = obs.shape[0]
        idx = (torch.arange(n, device=obs.device) + self.cursor) % self.capacity if self.cursor + n > self.capacity \
            else slice(self.cursor, self.cursor + n)
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.discount[idx] = discount
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tuple[torch.Tensor, ...]:
        idx = torch.randint(self.size, (batch_size,), generator=generator, device=generator.device)
        idx = idx.to(self.obs.device)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.discount[idx]

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n].clone(), "next_obs": self.next_obs[:n].clone(), "actions": self.actions[:n].clone(),
                "rewards": self.rewards[:n].clone(), "discount": self.discount[:n].clone(),
                "cursor": self.cursor, "size": n}

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        for k in ("obs", "next_obs", "actions", "rewards", "discount"):
            getattr(self, k)[:n] = state[k]
        self.cursor, self.size = state["cursor"], n
