"""Experiment 1 of the paper (5.1): choose between alternative PUs.

Inputs a, b ~ U(0, 1) are written into the `inputs` nodes (n0, n1). The target is
2a if a > b else b/2; the IN submits by writing the `outputs` node (n2), with any
PU. The reward depends only on the submitted value's error (`reward.shape`), never
on which PU wrote it, and the node loss (MSE) trains whichever PU wrote it: the
double-optimisation problem of paper 6.1, left visible. A task instance succeeds
when |err| < `params.tolerance`.

`params.route` names the optimal route (compare first, then the PU for the larger
input); it defines the `optimal_route_rate` KPI and the training-wheels teacher.
`correct_pu_rate` is the share of submits made by the PU for the larger input, with
or without pu0 first: with it, a low `task_success` reads as wrong routing (low) or
imprecise PUs (high).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from .env import TASK_SUCCESS_PANEL, Environment, Step, TargetFunction
from .kpi_registry import KPI, MAIN_TABLE

ROUTE = {"first": "pu0", "a_greater": "pu1", "b_greater": "pu2"}


class Multitask(Environment):
    """a, b in n0, n1; submit 2a if a > b else b/2 into n2."""

    kpis = (  # per task instance, through `finish(..., extras)`
        KPI("optimal_route_rate", "fraction of the last kpi_window task instances solved via pu0 then the right PU",
            better="higher", rate=True, plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
        KPI("correct_pu_rate", "share of the last kpi_window submits made by the PU for the larger input",
            better="higher", rate=True, plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.require_scalar_io(2, 1, "multitask needs inputs: [a_node, b_node] and outputs: [submit_node]")
        self.a_node, self.b_node = self.cfg.inputs
        self.out_node = self.cfg.outputs[0]
        self.tolerance = float(self.params.get("tolerance", 0.05))
        self.route = {**ROUTE, **self.params.get("route", {})}
        b, dev = self.lanes, self.device
        self.a = torch.zeros(b, device=dev)
        self.b = torch.zeros(b, device=dev)
        self.target = torch.zeros(b, device=dev)
        self.ran_first = torch.zeros(b, dtype=torch.bool, device=dev)  # `first` run in this instance
        self.last_first = torch.zeros(b, dtype=torch.bool, device=dev)  # previous action was `first`

    def bind(self, action_index: dict) -> None:
        super().bind(action_index)
        self.require_route(self.route)
        self.first = action_index[self.route["first"]]

    def start(self, lanes: torch.Tensor) -> None:
        n = len(lanes)
        a, b = self.random(n), self.random(n)
        self.a[lanes], self.b[lanes] = a, b
        self.target[lanes] = torch.where(a > b, 2 * a, b / 2)
        self.ran_first[lanes] = False
        self.last_first[lanes] = False
        lane_list = lanes.tolist()
        self.nodes.write(self.a_node, lane_list, a.unsqueeze(1), index=lanes)
        self.nodes.write(self.b_node, lane_list, b.unsqueeze(1), index=lanes)

    def respond(self, step: Step) -> None:
        lanes = step.written.get(self.out_node)
        if lanes:
            idx = torch.tensor(lanes, device=self.device)
            target = self.target[idx]
            err = self.nodes.values[self.out_node][idx].reshape(-1) - target
            r = self.reward
            ok = err.abs() < self.tolerance
            if r.shape == "exp":
                reward = r.success * torch.exp(-err.square() / r.width) + r.bonus * ok
            else:
                reward = torch.where(ok, r.success, r.wrong_answer)
            correct = torch.where(self.a[idx] > self.b[idx], self.action_index[self.route["a_greater"]],
                                  self.action_index[self.route["b_greater"]])
            right_pu = step.ran[idx] == correct
            optimal = ok & self.last_first[idx] & right_pu
            step.add_loss(self.out_node, lanes, lambda v: (v.reshape(-1) - target).square())
            self.finish(idx, ok, reward, {"optimal_route_rate": optimal, "correct_pu_rate": right_pu})
        is_first = step.ran == self.first
        self.last_first = is_first
        self.ran_first |= is_first

    def describe(self, lane: int) -> Dict[str, object]:
        return {"inputs": {"a": self.a[lane].item(), "b": self.b[lane].item()}, "target": self.target[lane].item()}

    def target_functions(self) -> List[TargetFunction]:
        """The PU for the larger input computes 2a (a > b) or b/2 (b > a), on its own input node."""
        return [TargetFunction(self.route["a_greater"], (self.a_node,), lambda a: 2 * a, "2a"),
                TargetFunction(self.route["b_greater"], (self.b_node,), lambda b: b / 2, "b/2")]

    def value_ranges(self) -> Dict[str, Tuple[float, float]]:
        return {self.a_node: (0.0, 1.0), self.b_node: (0.0, 1.0)}

    def task_state(self) -> dict:
        return {k: getattr(self, k).clone() for k in ("a", "b", "target", "ran_first", "last_first")}

    def load_task_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v.clone())


def teacher(env: Multitask) -> torch.Tensor:
    """The scripted route: `first` once per task instance, then the PU for the larger input."""
    idx = env.action_index
    correct = torch.where(env.a > env.b, idx[env.route["a_greater"]], idx[env.route["b_greater"]])
    return torch.where(env.ran_first, correct, torch.full_like(correct, env.first))


def _uniform(batch_size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(batch_size, 1, generator=generator)


def compare_data(batch_size: int, generator: torch.Generator) -> Tuple[list, list]:
    """Pre-training data for pu0: (a, b) -> 1 if a > b else 0."""
    a, b = _uniform(batch_size, generator), _uniform(batch_size, generator)
    return [a, b], [(a > b).float()]


def double_data(batch_size: int, generator: torch.Generator) -> Tuple[list, list]:
    """Pre-training data for pu1: x -> 2x."""
    x = _uniform(batch_size, generator)
    return [x], [2 * x]


def halve_data(batch_size: int, generator: torch.Generator) -> Tuple[list, list]:
    """Pre-training data for pu2: x -> x/2."""
    x = _uniform(batch_size, generator)
    return [x], [x / 2]
