"""A task that exists only in the tests: it declares a KPI inet has never heard of, `mean_abs_error`."""
from collections import deque
from typing import Dict

import torch

from inet.tasks.env import KPI_FIGURE, Environment, Step
from inet.tasks.kpi_registry import KPI, MAIN_TABLE, Panel


class Echo(Environment):
    """x ~ U(0, 1) in inputs[0]; submit x by writing outputs[0] (solved within 0.1)."""

    kpis = (KPI("mean_abs_error", "mean |submitted - x| over the last 50 submits", better="lower",
                plot=Panel(KPI_FIGURE, "mean abs error"), table=MAIN_TABLE),)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.in_node, self.out_node = self.cfg.inputs[0], self.cfg.outputs[0]
        self.x = torch.zeros(self.lanes, device=self.device)
        self.errors: deque = deque(maxlen=50)

    def start(self, lanes: torch.Tensor) -> None:
        x = self.random(len(lanes))
        self.x[lanes] = x
        self.nodes.write(self.in_node, lanes.tolist(), x.unsqueeze(1))

    def respond(self, step: Step) -> None:
        lanes = step.written.get(self.out_node)
        if not lanes:
            return
        idx = torch.tensor(lanes, device=self.device)
        x = self.x[idx]
        err = self.nodes.values[self.out_node][idx].reshape(-1) - x
        self.errors.extend(err.abs().tolist())
        step.add_loss(self.out_node, lanes, lambda v: (v.reshape(-1) - x).square())
        ok = err.abs() < 0.1
        self.finish(idx, ok, ok.float())

    def metrics(self) -> Dict[str, float]:
        return {"mean_abs_error": sum(self.errors) / len(self.errors) if self.errors else float("nan")}


def teacher(env: Echo) -> torch.Tensor:
    """Always run pu0 (a scripted CU)."""
    return torch.full((env.lanes,), env.action_index["pu0"], dtype=torch.long, device=env.device)
