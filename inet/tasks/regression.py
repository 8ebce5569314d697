"""Supervised regression posed as a task: the plain-network emulation of paper 3.1 (emulate/fnn).

Each task instance writes x ~ U(-1, 1) into the input node; the IN submits by
writing the output node, which gets the MSE loss against y = sin(pi * x) (same
shape as x). With the scripted CU `teacher` (always run `params.pu`), the IN is
exactly a plain MLP trained with one sample per step: the tape's equivalence test.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch

from ..config import ConfigError
from .env import Environment, Step, TargetFunction


class Regression(Environment):
    """x in inputs[0]; submit sin(pi x) by writing outputs[0]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != 1 or len(self.cfg.outputs) != 1:
            raise ConfigError(f"{key}: regression needs inputs: [x_node] and outputs: [y_node]")
        self.x_node, self.y_node = self.cfg.inputs[0], self.cfg.outputs[0]
        shape = self.nodes.shapes[self.x_node]
        if self.nodes.shapes[self.y_node] != shape:
            raise ConfigError(f"{key}.outputs: '{self.y_node}' must have the shape of '{self.x_node}' {list(shape)}")
        self.tolerance = float(self.params.get("tolerance", 0.05))
        self.x = torch.zeros(self.lanes, *shape, device=self.device)

    def bind(self, action_index: dict) -> None:
        super().bind(action_index)
        pu = self.params.get("pu")
        if pu is not None and pu not in action_index:
            raise ConfigError(f"envs.{self.name}.params.pu: '{pu}' is not an action; choose from {list(action_index)}")

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(math.pi * x)

    def start(self, lanes: torch.Tensor) -> None:
        x = self.random(len(lanes), *self.x.shape[1:]) * 2 - 1
        self.x[lanes] = x
        self.nodes.write(self.x_node, lanes.tolist(), x)

    def respond(self, step: Step) -> None:
        lanes = step.written.get(self.y_node)
        if not lanes:
            return
        idx = torch.tensor(lanes, device=self.device)
        y = self.target(self.x[idx])
        err = (self.nodes.values[self.y_node][idx] - y).flatten(1).abs().amax(1)
        step.add_loss(self.y_node, lanes, lambda v: (v - y).square().flatten(1).mean(1))
        ok = err < self.tolerance
        self.finish(idx, ok, torch.where(ok, self.reward.success, self.reward.wrong_answer))

    def describe(self, lane: int) -> Dict[str, object]:
        x = self.x[lane]
        return {"inputs": {"x": x.flatten().tolist()}, "target": self.target(x).flatten().tolist()}

    def target_functions(self) -> List[TargetFunction]:
        pu = self.params.get("pu")
        return [] if pu is None else [TargetFunction(pu, (self.x_node,), self.target, "sin(pi x)")]

    def value_ranges(self) -> Dict[str, Tuple[float, float]]:
        return {self.x_node: (-1.0, 1.0), self.y_node: (-1.0, 1.0)}

    def task_state(self) -> dict:
        return {"x": self.x.clone()}

    def load_task_state(self, state: dict) -> None:
        self.x = state["x"].clone()


def teacher(env: Regression) -> torch.Tensor:
    """Always run the PU named in `params.pu` (a scripted CU that makes the IN a plain network)."""
    return torch.full((env.lanes,), env.action_index[env.params["pu"]], dtype=torch.long, device=env.device)
