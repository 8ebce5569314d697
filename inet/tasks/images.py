"""Image classification posed as a task: the CNN emulation of paper 3.2 (emulate/cnn).

Each task instance draws a small grey image of one of four shapes (a horizontal
bar, a vertical bar, a diagonal, a square outline) at a random place and size, plus
Gaussian noise, generated in-process from the Environment's own generator, and
writes it into the input node [1, H, W]. The IN submits by writing the output node
(K = 4 logits), which gets the cross-entropy loss against the class; the submit
succeeds when the argmax is the class.

`params.route` names the two PUs of the emulated CNN: `features` (a conv PU,
image -> feature node) and `head` (feature node -> logits). With the scripted CU
`script` (features at a new instance, then head) the IN is exactly the plain
network head(features(x)) trained with one image per lane per step: the tape's
equivalence test. A learned CU must find that route: `optimal_route_rate` is the
share of submits made by exactly features then head on the current image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ConfigError
from .env import TASK_SUCCESS_PANEL, Environment, Step
from .kpi_registry import KPI, MAIN_TABLE

CLASSES = ("horizontal", "vertical", "diagonal", "box")
ROUTE = {"features": "conv", "head": "head"}


def shapes_batch(n: int, height: int, width: int, noise: float, generator: torch.Generator) -> tuple:
    """n images [n, 1, H, W] of random shapes and their classes [n] (one of CLASSES), from `generator`."""
    dev = generator.device
    u = torch.rand(n, 6, generator=generator, device=dev)
    label = (u[:, 0] * len(CLASSES)).long()
    size = 3 + (u[:, 1] * (min(height, width) - 2)).long()  # 3 .. min side
    top = (u[:, 2] * (height - size + 1)).long()
    left = (u[:, 3] * (width - size + 1)).long()
    row = top + (u[:, 4] * size).long()  # the row of a horizontal bar
    col = left + (u[:, 5] * size).long()  # the column of a vertical bar
    r = torch.arange(height, device=dev).view(1, height, 1)
    c = torch.arange(width, device=dev).view(1, 1, width)
    top, left, size, row, col = (t.view(n, 1, 1) for t in (top, left, size, row, col))
    in_rows = (r >= top) & (r < top + size)
    in_cols = (c >= left) & (c < left + size)
    shapes = torch.stack([
        (r == row) & in_cols,
        (c == col) & in_rows,
        (r - top == c - left) & in_rows & in_cols,
        in_rows & in_cols & ((r == top) | (r == top + size - 1) | (c == left) | (c == left + size - 1)),
    ], 1)
    image = shapes[torch.arange(n, device=dev), label].float()
    image = image + noise * torch.randn(n, height, width, generator=generator, device=dev)
    return image.unsqueeze(1), label


class Images(Environment):
    """An image in inputs[0] [1, H, W]; submit the class by writing logits into outputs[0] [4]."""

    kpis = (  # per task instance, through `finish(..., extras)`
        KPI("optimal_route_rate", "fraction of the last kpi_window submits made by the features PU on the "
            "current image, then the head", better="higher", rate=True, plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != 1 or len(self.cfg.outputs) != 1:
            raise ConfigError(f"{key}: images needs inputs: [image_node] and outputs: [logits_node]")
        self.x_node, self.y_node = self.cfg.inputs[0], self.cfg.outputs[0]
        shape = self.nodes.shapes[self.x_node]
        if len(shape) != 3 or shape[0] != 1 or min(shape[1:]) < 3:
            raise ConfigError(f"{key}.inputs: '{self.x_node}' must have shape [1, H, W] with H, W >= 3, "
                              f"has {list(shape)}")
        if self.nodes.shapes[self.y_node] != (len(CLASSES),):
            raise ConfigError(f"{key}.outputs: '{self.y_node}' must have shape [{len(CLASSES)}] (one logit per "
                              f"class), has {list(self.nodes.shapes[self.y_node])}")
        self.noise = float(self.params.get("noise", 0.2))
        self.route = {**ROUTE, **self.params.get("route", {})}
        b, dev = self.lanes, self.device
        self.label = torch.zeros(b, dtype=torch.long, device=dev)
        self.fresh = torch.zeros(b, dtype=torch.bool, device=dev)  # features ran on this image, head not yet

    def bind(self, action_index: dict) -> None:
        super().bind(action_index)
        self.require_route(self.route)
        self.features, self.head = action_index[self.route["features"]], action_index[self.route["head"]]

    def start(self, lanes: torch.Tensor) -> None:
        _, h, w = self.nodes.shapes[self.x_node]
        image, label = shapes_batch(len(lanes), h, w, self.noise, self.gen)
        self.label[lanes] = label.to(self.device)
        self.fresh[lanes] = False
        self.nodes.write(self.x_node, lanes.tolist(), image.to(self.device))

    def respond(self, step: Step) -> None:
        lanes = step.written.get(self.y_node)
        if lanes:
            idx = torch.tensor(lanes, device=self.device)
            label = self.label[idx]
            ok = self.nodes.values[self.y_node][idx].argmax(1) == label
            optimal = self.fresh[idx] & (step.ran[idx] == self.head) & (self.age[idx] == 1)
            step.add_loss(self.y_node, lanes, lambda v: F.cross_entropy(v, label, reduction="sum"))
            self.finish(idx, ok, torch.where(ok, self.reward.success, self.reward.wrong_answer),
                        {"optimal_route_rate": optimal})
        self.fresh = step.ran == self.features

    def task_state(self) -> dict:
        return {"label": self.label.clone(), "fresh": self.fresh.clone()}

    def load_task_state(self, state: dict) -> None:
        self.label = state["label"].clone()
        self.fresh = state["fresh"].clone()


def script(env: Images) -> torch.Tensor:
    """The scripted CU: the features PU at a new task instance, the head after it (a plain CNN)."""
    return torch.where(env.age == 0, env.features, env.head)
