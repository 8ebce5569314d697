"""Greedy evaluation at fixed task lengths (DESIGN.md section 7: `max_length_reliable`).

Every `evaluation.interval` lane-iterations, the CU acts greedily (no exploration,
no learning) on `evaluation.instances` fresh task instances at each length in
`evaluation.lengths`, run side by side as lanes of a throw-away world (a copy of the
Environments and the nodes), stepped by the same rollout as training (inet/rollout.py).
Each Environment with task lengths is evaluated on its own; in an IN with several,
the others run beside it as configured (their own fresh task instances, their
curriculum at its start), since the CU sees and serves all of them, and only the
evaluated one's task instances count. The training state is not touched: PUs and the
Q-network are only read (under no_grad), nothing is recorded on the tape or put
in replay, and the task instances come from a generator of the evaluation's own,
seeded from the run's seed, the iteration and the length, so evaluating never
shifts a training random draw.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Dict, Optional

import torch

from .config import EvaluationConfig
from .nodes import Nodes

if TYPE_CHECKING:
    from .engine import Engine


def evaluation_generator(seed: int, iteration: int, length: int, device: torch.device) -> torch.Generator:
    """The evaluation's own generator for one (seed, iteration, length)."""
    return torch.Generator(device).manual_seed(((seed * 1_000_003 + iteration) * 1_009 + length) % 2**63)


@torch.no_grad()
def success_at_length(engine: "Engine", length: int, instances: int, generator: torch.Generator,
                      env_name: Optional[str] = None) -> float:
    """Fraction of `instances` fresh task instances of `length` of Environment `env_name` (default: the first)
    that the greedy CU (or the script) solves."""
    cfg, dev = engine.cfg, engine.device
    name = env_name or next(iter(cfg.envs))
    nodes = Nodes(cfg.nodes, instances, dev)
    nodes.set_iteration(engine.iteration)
    envs = {}
    for i, (other, ecfg) in enumerate(cfg.envs.items()):
        if other == name:
            ecfg, gen = dataclasses.replace(ecfg, curriculum=dataclasses.replace(
                ecfg.curriculum, enabled=False, start_length=length, min_length=1, max_length=length)), generator
        else:
            gen = torch.Generator(dev).manual_seed((generator.initial_seed() + i) % 2**63)
        envs[other] = type(engine.envs[other])(other, ecfg, nodes, instances, dev, gen)
        envs[other].bind(engine.ran_index)
        envs[other].reset()
    env = envs[name]
    world = engine.rollout.new_world(nodes, envs, greedy=True)
    done = torch.zeros(instances, dtype=torch.bool, device=dev)
    solved = torch.zeros(instances, dtype=torch.bool, device=dev)
    limit = int(torch.as_tensor(env.budget()).max().item()) + 1
    for _ in range(limit):
        if engine.script is not None:
            actions = engine.script(env).to(dev)
        else:
            actions, _ = engine.cu.act(engine.rollout.observe(world), engine.iteration, greedy=True)
        step = engine.rollout.apply(world, actions)
        for end in (e for e in step.ended if e.env == name):
            first = ~done[end.lanes]
            solved[end.lanes[first]] = end.success[first]
            done[end.lanes] = True
        if done.all():
            break
        engine.rollout.advance(world, actions, explored=torch.zeros_like(done), argmax=torch.ones_like(done))
    return solved.float().mean().item()


def reliable_prefix(results: Dict[int, float], threshold: float) -> int:
    """Largest L with success >= threshold at L and at every evaluated length below it (0: none)."""
    best = 0
    for n in sorted(results):
        if results[n] < threshold:
            break
        best = n
    return best


class Evaluator:
    """Schedules one Environment's evaluations and keeps their results (all of it in `state_dict`)."""

    def __init__(self, cfg: EvaluationConfig, env_name: Optional[str] = None):
        self.cfg = cfg
        self.env_name = env_name
        self.results: Dict[int, float] = {}  # length -> success at the last evaluation
        self.evaluated_at: int | None = None
        self._best = 0

    @property
    def best_reliable(self) -> Optional[int]:
        """The best max_length_reliable of all evaluations; None before the first (never measured, not 0)."""
        return None if self.evaluated_at is None else self._best

    def due(self, before: int, after: int) -> bool:
        k = self.cfg.interval
        return k > 0 and after // k != before // k

    def run(self, engine: "Engine") -> Dict[int, float]:
        """Evaluate at every configured length now; returns length -> success."""
        self.results = {
            n: success_at_length(engine, n, self.cfg.instances,
                                 evaluation_generator(engine.cfg.seed, engine.iteration, n, engine.device), self.env_name)
            for n in self.cfg.lengths}
        self.evaluated_at = engine.iteration
        self._best = max(self._best, self.max_length_reliable)
        return self.results

    @property
    def max_length_reliable(self) -> int:
        """Largest evaluated length with success >= threshold at the last evaluation (0: none)."""
        return max((n for n, s in self.results.items() if s >= self.cfg.threshold), default=0)

    @property
    def max_length_reliable_prefix(self) -> int:
        """Largest evaluated length such that every evaluated length up to it reached the threshold (0: none)."""
        return reliable_prefix(self.results, self.cfg.threshold)

    def extrapolation(self, max_trained: float) -> Dict[int, float]:
        """Success at the evaluated lengths beyond the largest trained length."""
        return {n: s for n, s in self.results.items() if n > max_trained}

    def metrics(self, max_trained: float) -> Dict[str, float]:
        out = {f"eval_success_L{n}": self.results.get(n, float("nan")) for n in self.cfg.lengths}
        beyond = list(self.extrapolation(max_trained).values())
        out["eval_extrapolation_success"] = sum(beyond) / len(beyond) if beyond else float("nan")
        measured = self.evaluated_at is not None  # before the first evaluation: unmeasured (NaN -> null), not 0
        out["max_length_reliable"] = float(self.max_length_reliable) if measured else float("nan")
        out["max_length_reliable_prefix"] = float(self.max_length_reliable_prefix) if measured else float("nan")
        return out

    def summary(self, max_trained: float) -> Dict[str, object]:
        """The end-of-run values for summary.json."""
        return {"best_max_length_reliable": self.best_reliable, "evaluated_at": self.evaluated_at,
                "eval_success_by_length": dict(self.results), "extrapolation": self.extrapolation(max_trained)}

    def state_dict(self) -> dict:
        return {"results": dict(self.results), "evaluated_at": self.evaluated_at, "best_reliable": self._best}

    def load_state_dict(self, state: dict) -> None:
        self.results = dict(state["results"])
        self.evaluated_at = state["evaluated_at"]
        self._best = state["best_reliable"]
