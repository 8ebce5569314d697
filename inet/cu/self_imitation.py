"""Self-imitation (Oh et al. 2018) for the CU (paper 6.4 (b): replay of action sequences that led to a reward).

Every finished task instance's iterations go, with their discounted Monte-Carlo
returns R, into a buffer of their own. Each CU update adds
`cu.self_imitation` x 0.5 * max(R - Q(s, a), 0)^2 over a batch from it: where a route
once paid more than the CU now expects, its value is pulled up to what it paid, and
never pushed down (the TD loss does that). So a rare success found by exploration is
learned from more than once, before the CU's values have caught up with it.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch

from .replay import ReplayBuffer


class SelfImitation:
    """The finished task instances' (obs, action, return) and the self-imitation loss."""

    def __init__(self, capacity: int, obs_dim: int, gamma: float, device: torch.device):
        self.gamma = gamma
        self.buffer = ReplayBuffer(capacity, obs_dim, device)
        self.steps: List[tuple] = []  # the current task instances' iterations: (obs [B, D], actions [B], reward [B])
        self.start: Optional[torch.Tensor] = None  # [B] index into `steps` where each lane's instance began
        self.offset = 0  # how many steps were dropped from the front of `steps`
        self.last = {"sil_loss": float("nan"), "sil_share": float("nan")}

    def observe(self, obs: torch.Tensor, actions: torch.Tensor, reward: torch.Tensor, terminal: torch.Tensor) -> None:
        """Add one iteration of every lane; store the returns of the task instances that ended with it."""
        b = obs.shape[0]
        if self.start is None:
            self.start = torch.zeros(b, dtype=torch.long)
        self.steps.append((obs, actions, reward))
        now = self.offset + len(self.steps)  # index one past this iteration
        for lane in terminal.nonzero().flatten().tolist():
            first = int(self.start[lane]) - self.offset
            rows = self.steps[first:]
            ret, returns = 0.0, []
            for _, _, r in reversed(rows):
                ret = float(r[lane]) + self.gamma * ret
                returns.append(ret)
            returns.reverse()
            o = torch.stack([s[0][lane] for s in rows])
            self.buffer.add(o, torch.stack([s[1][lane] for s in rows]), torch.tensor(returns, device=o.device),
                            torch.zeros_like(o), torch.zeros(len(rows), device=o.device))
            self.start[lane] = now
        drop = int(self.start.min()) - self.offset
        if drop > 0:
            del self.steps[:drop]
            self.offset += drop

    def loss(self, values: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
             generator: torch.Generator) -> Optional[torch.Tensor]:
        """0.5 * mean(max(R - Q(s, a), 0)^2) over a batch, where `values(obs)` gives Q [n, n_actions]; None
        before the buffer holds a batch."""
        if self.buffer.size < batch_size:
            return None
        obs, actions, returns, _, _ = self.buffer.sample(batch_size, generator)
        q = values(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        gap = (returns - q).clamp_min(0.0)
        self.last = {"sil_loss": (0.5 * gap.square().mean()).detach(), "sil_share": (gap > 0).float().mean()}
        return 0.5 * gap.square().mean()

    def metrics(self) -> Dict[str, float]:
        return {k: float(v) for k, v in self.last.items()}

    def state_dict(self) -> dict:
        return {"buffer": self.buffer.state_dict(), "offset": self.offset,
                "start": None if self.start is None else self.start.clone(),
                "steps": [tuple(t.clone() for t in s) for s in self.steps]}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state["buffer"])
        self.offset = state["offset"]
        self.start = None if state["start"] is None else state["start"].clone()
        self.steps = [tuple(t.clone() for t in s) for s in state["steps"]]
