"""A PU's output as another PU's target (paper 6.7): shortcuts that learn what established chains compute.

A student PU (`pus.<student>.shortcut.weight > 0`) keeps its own reads R and its one
output node W, and stays an action of the CU. Every other PU writing W that is not a
student itself is a teacher: the last step of a chain. Whenever a teacher writes W in
some lanes, the values of R in those lanes (read before the write) and the teacher's
new W value form a pair, both detached. At the end of the iteration the student is run
on the pairs' inputs (its own run, not on the tape) and the gradient of
`weight` x 0.5 mean ||student(R) - W_teacher||^2 is added to its `.grad` before the
PUs' optimizer step, through the path PU replay uses (inet/pu_replay.py,
`pair_loss_backward`). Neither the teacher nor its chain get any gradient from it.

With `max_loss`, a pair waits in its lane until an Environment loss arrives on W for
that same value (the writer ids match), and is used only if that lane's loss (before
`tape.env_scale`) is <= `max_loss`: the student learns only from chains that worked.
A pair whose value is overwritten first is never matched, and the next teacher write in
the lane replaces it. Judging needs the loss per lane: an Environment's loss function
returns one value per lane (a loss summed over several lanes cannot be split).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .config import ConfigError, PUConfig
from .nodes import ENV, Nodes, snap
from .pu_replay import pair_loss_backward
from .tasks.kpi_registry import KPI, Panel

KPIS = (
    KPI("shortcut_loss", "mean over the log interval of the shortcut students' 0.5 ||student - teacher||^2 per pair, "
        "unweighted (pus.<name>.shortcut; null: off or no pair)", summary=None, plot=Panel("learning", "losses"),
        tag_group="train"),
    KPI("shortcut_pairs", "(teacher value, student input) pairs trained on per lane-iteration over the log interval "
        "(null: off)", summary=None, plot=Panel("learning", "shortcut pairs"), tag_group="train"),
)
Pair = Tuple[List[torch.Tensor], torch.Tensor]  # the student's inputs [n, *shape] each, the target [n, *shape]


class Shortcut:
    """The students, their teachers, the pairs waiting for a loss and the pairs of this iteration."""

    def __init__(self, pus: Dict[str, PUConfig], nodes: Nodes):
        self.students = {s: p for s, p in pus.items() if p.shortcut.weight > 0}
        self.node = {s: p.outputs[0] for s, p in self.students.items()}
        self.teachers: Dict[str, List[Tuple[str, int]]] = {}  # teacher PU -> (student, index of W in its outputs)
        for s, w in self.node.items():
            for t, p in pus.items():
                if t not in self.students and w in p.outputs:
                    self.teachers.setdefault(t, []).append((s, p.outputs.index(w)))
        judged = {s: p for s, p in self.students.items() if p.shortcut.max_loss is not None}
        self.judged: Dict[str, List[str]] = {}  # node -> its students with max_loss
        for s in judged:
            self.judged.setdefault(self.node[s], []).append(s)
        b, dev = nodes.lanes, nodes.device
        # max_loss: per student and lane, the pair waiting for its loss and the id of the record that wrote it
        self.waiting_inputs = {s: [torch.zeros(b, *nodes.shapes[r], device=dev) for r in p.inputs]
                               for s, p in judged.items()}
        self.waiting_target = {s: torch.zeros(b, *nodes.shapes[self.node[s]], device=dev) for s in judged}
        self.waiting_writer = {s: [ENV] * b for s in judged}
        self.ready: Dict[str, List[Pair]] = {s: [] for s in self.students}
        self.start_interval()

    def start_interval(self) -> None:
        """Start a new log interval: the loss and pair counts count from here."""
        self.loss_sum: torch.Tensor | float = 0.0
        self.pairs = 0
        self.lane_iterations = 0

    def watch(self, nodes: Nodes, teacher: str, lanes: List[int], idx: Optional[torch.Tensor], outs: tuple,
              writer: int) -> None:
        """Teacher PU `teacher` is about to write `outs` into `lanes` (`idx`: their index tensor, None for all) as
        record `writer`: pair its value of each student's node with the student's inputs as they are now."""
        for s, j in self.teachers[teacher]:
            w = self.node[s]
            target = outs[j].detach()
            if w in nodes.round_to:  # what the node will hold
                target = snap(target, nodes.round_to[w])
            xs = [nodes.values[r] if idx is None else nodes.values[r][idx] for r in self.students[s].inputs]
            if s not in self.waiting_writer:
                self.ready[s].append((xs, target))
                continue
            at = torch.tensor(lanes, device=target.device) if idx is None else idx
            for store, x in zip(self.waiting_inputs[s], xs):
                store.index_copy_(0, at, x)
            self.waiting_target[s].index_copy_(0, at, target)
            waiting = self.waiting_writer[s]
            for lane in lanes:
                waiting[lane] = writer

    def judge(self, node: str, lanes: List[int], writers: List[int], losses: torch.Tensor) -> None:
        """An Environment loss on `node` in `lanes` (`losses`: one per lane, or their sum) on the values written by
        `writers`: the waiting pairs of those values become this iteration's pairs where the loss is <= max_loss."""
        for s in self.judged.get(node, ()):
            waiting = self.waiting_writer[s]
            hits = [i for i, (lane, w) in enumerate(zip(lanes, writers)) if w != ENV and waiting[lane] == w]
            if not hits:
                continue
            if losses.dim() == 0 and len(lanes) > 1:
                raise ConfigError(f"pus.{s}.shortcut.max_loss: the Environment's loss on node '{node}' is summed over "
                                  "lanes, so no lane's loss can be judged; let its loss function return one value "
                                  "per lane (inet/tasks/env.py, Step.add_loss), or set max_loss: null")
            per_lane = losses.detach().reshape(-1)[torch.tensor(hits, device=losses.device)].tolist()  # one host sync
            limit = self.students[s].shortcut.max_loss
            used = [lanes[i] for i, loss in zip(hits, per_lane) if loss <= limit]
            for i in hits:
                waiting[lanes[i]] = ENV
            if used:
                at = torch.tensor(used, device=self.waiting_target[s].device)
                self.ready[s].append(([x[at] for x in self.waiting_inputs[s]], self.waiting_target[s][at]))

    def backward(self, pus: nn.ModuleDict, lane_iterations: int) -> bool:
        """Add each student's shortcut gradient over this iteration's pairs to its `.grad` (before the PUs'
        optimizer step); False when there were no pairs."""
        self.lane_iterations += lane_iterations
        taught = False
        for s, pairs in self.ready.items():
            if not pairs:
                continue
            xs = [torch.cat(parts) for parts in zip(*(x for x, _ in pairs))]
            target = torch.cat([t for _, t in pairs])
            n = target.shape[0]
            loss = pair_loss_backward(pus[s], xs, [target], self.students[s].shortcut.weight)
            self.loss_sum = self.loss_sum + loss * n
            self.pairs += n
            pairs.clear()
            taught = True
        return taught

    def metrics(self) -> Dict[str, float]:
        nan = float("nan")
        return {"shortcut_loss": float(self.loss_sum) / self.pairs if self.pairs else nan,
                "shortcut_pairs": self.pairs / self.lane_iterations if self.lane_iterations else nan}

    def state_dict(self) -> dict:
        return {"waiting_inputs": {s: [x.clone() for x in xs] for s, xs in self.waiting_inputs.items()},
                "waiting_target": {s: t.clone() for s, t in self.waiting_target.items()},
                "waiting_writer": {s: list(w) for s, w in self.waiting_writer.items()},
                "loss_sum": float(self.loss_sum), "pairs": self.pairs, "lane_iterations": self.lane_iterations}

    def load_state_dict(self, state: dict) -> None:
        self.waiting_inputs = {s: [x.clone() for x in xs] for s, xs in state["waiting_inputs"].items()}
        self.waiting_target = {s: t.clone() for s, t in state["waiting_target"].items()}
        self.waiting_writer = {s: list(w) for s, w in state["waiting_writer"].items()}
        self.loss_sum, self.pairs, self.lane_iterations = state["loss_sum"], state["pairs"], state["lane_iterations"]
