"""A learner that lives outside inet (`cu._target_=toy_learner.Bandit`): the extension point's test.

It ignores its input and keeps a running mean reward per action, acting greedily on it
with a fixed exploration rate: a bandit, enough to show a user's class runs, logs,
checkpoints and resumes with no change to inet.
"""
from typing import Dict, List, Optional, Tuple

import torch

from inet.config import CUConfig
from inet.cu import ActInfo, Transition


class Bandit:
    def __init__(self, cfg: CUConfig, obs_dim: int, n_actions: int, total_iterations: int, device: torch.device,
                 generator: torch.Generator):
        self.epsilon = float(cfg.params.get("epsilon", 0.1))
        self.gen = generator
        self.total = torch.zeros(n_actions, device=device)
        self.count = torch.zeros(n_actions, device=device)

    def act(self, obs: torch.Tensor, iteration: int, greedy: bool = False,
            explore_scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ActInfo]:
        values = (self.total / self.count.clamp(min=1)).expand(obs.shape[0], -1)
        best = values.argmax(1)
        eps = 0.0 if greedy else self.epsilon
        explore = torch.rand(obs.shape[0], generator=self.gen) < eps
        actions = torch.where(explore, torch.randint(values.shape[1], best.shape, generator=self.gen), best)
        return actions, ActInfo(values, explore, best, eps)

    def observe(self, t: Transition, before: int, after: int) -> List[str]:
        self.total.index_add_(0, t.actions, t.reward)
        self.count.index_add_(0, t.actions, torch.ones_like(t.reward))
        return []

    def input_grad(self, t: Transition, iteration: int) -> Optional[torch.Tensor]:
        return None

    def metrics(self) -> Dict[str, float]:
        return {"bandit_best_value": float((self.total / self.count.clamp(min=1)).max())}

    def state_dict(self) -> dict:
        return {"total": self.total.clone(), "count": self.count.clone(), "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.count = state["total"].clone(), state["count"].clone()
        self.gen.set_state(state["gen"])


class NoInputGrad(Bandit):
    """Lacks a protocol method."""

    input_grad = None
