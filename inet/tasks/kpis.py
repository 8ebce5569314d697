"""KPI windows (DESIGN.md section 7): the values of the KPIs every task has (declared in inet/tasks/env.py),
rolling means over iterations and over task instances."""
from __future__ import annotations

import itertools
from collections import deque
from typing import Dict, Iterable, List, Optional

import torch

from .env import TaskEnd

CONVERGED = 0.95  # task_success that counts as converged


class Rolling:
    """Mean of the last `size` values, O(1) per value."""

    def __init__(self, size: int):
        self.values: deque = deque(maxlen=size)
        self.total = 0.0

    def extend(self, xs: Iterable[float]) -> None:
        """Append `xs` in order; the oldest values leave once `size` are held."""
        xs = list(xs)
        held = len(self.values)
        leaving = max(0, held + len(xs) - self.values.maxlen)  # the oldest of the held values, then of xs
        self.total -= sum(itertools.islice(self.values, min(leaving, held)))
        self.total += sum(xs[max(0, leaving - held):])
        self.values.extend(xs)

    @property
    def full(self) -> bool:
        return len(self.values) == self.values.maxlen

    @property
    def mean(self) -> float:
        return self.total / len(self.values) if self.values else float("nan")

    def state_dict(self) -> dict:
        return {"values": list(self.values), "total": self.total}

    def load_state_dict(self, state: dict) -> None:
        self.values = deque(state["values"], maxlen=self.values.maxlen)
        self.total = state["total"]


class KPITracker:
    """One Environment's reward_per_iteration, reward_per_task, task_success, extras, iterations_to_converge."""

    def __init__(self, lanes: int, window: int):
        self.lanes = lanes
        self.window = window
        self.reward = Rolling(max(1, window // lanes))  # mean reward per lockstep iteration
        self.success = Rolling(window)
        self.task_reward = Rolling(window)  # submitted task instances only
        self.extras: Dict[str, Rolling] = {}
        self.tasks = 0
        self.converged_at: Optional[int] = None

    def update(self, iteration: int, reward: torch.Tensor, ended: List[TaskEnd]) -> None:
        """Account one lockstep iteration that ended at lane-iteration `iteration`: the Environment's
        reward [B] and the task instances it ended."""
        self.reward.extend([reward.mean().item()])
        for end in ended:
            successes = end.success.float().tolist()
            self.tasks += len(successes)
            self.task_reward.extend(end.reward[end.submitted].tolist())
            for k, v in end.extras.items():
                self.extras.setdefault(k, Rolling(self.window)).extend(v.float().tolist())
            self._converge(iteration, successes)

    def _converge(self, iteration: int, successes: List[float]) -> None:
        """Add task successes (0/1) one by one: `converged_at` is the iteration at which the rolling
        success of a full window last reached CONVERGED and stayed there (None while below)."""
        values, window = self.success.values, self.success.values.maxlen
        held, k = len(values), len(successes)
        leaving = [0.0, *itertools.accumulate([*itertools.islice(values, 0, min(k, held)), *successes])]
        added = [0.0, *itertools.accumulate(successes)]  # whole numbers: the windows' sums are exact
        above = [held + j >= window and (self.success.total + added[j] - leaving[max(0, held + j - window)]) / window
                 >= CONVERGED for j in range(1, k + 1)]
        self.success.extend(successes)
        if above and not above[-1]:
            self.converged_at = None
        elif above and (self.converged_at is None or not all(above)):
            self.converged_at = iteration

    def snapshot(self) -> Dict[str, float]:
        out = {
            "reward_per_iteration": self.reward.mean,
            "reward_per_task": self.task_reward.mean,
            "task_success": self.success.mean,
            "tasks": self.tasks,
        }
        out.update({k: r.mean for k, r in self.extras.items()})
        return out

    def at_end(self) -> Dict[str, object]:
        """The values only the end of a run has (summary "end" KPIs)."""
        return {"iterations_to_converge": self.converged_at}

    def state_dict(self) -> dict:
        return {"reward": self.reward.state_dict(), "success": self.success.state_dict(),
                "task_reward": self.task_reward.state_dict(),
                "extras": {k: r.state_dict() for k, r in self.extras.items()},
                "tasks": self.tasks, "converged_at": self.converged_at}

    def load_state_dict(self, state: dict) -> None:
        self.reward.load_state_dict(state["reward"])
        self.success.load_state_dict(state["success"])
        self.task_reward.load_state_dict(state["task_reward"])
        self.extras = {}
        for k, s in state["extras"].items():
            self.extras[k] = Rolling(self.window)
            self.extras[k].load_state_dict(s)
        self.tasks, self.converged_at = state["tasks"], state["converged_at"]
