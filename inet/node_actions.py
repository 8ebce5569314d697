"""Node-level actions with a learned rater (paper 6.7): one CU action per node instead of one per PU.

With `cu.node_actions`, the CU's PU actions are replaced by `node:<n>`, one per node some PU
writes (in node declaration order). Running `node:<n>` on some lanes runs every PU that writes n
(its writers, in PU declaration order) on its current inputs (inet/rollout.py `run_node`). A rater
per node predicts the loss each candidate value will receive, and per lane the candidate with the
lowest prediction is written; with probability `cu.node_rater_epsilon` a uniformly drawn candidate
is written instead (training only, from a generator of its own). Only the winner's run is recorded
on the tape and written, as a PU action's run is, so a loss on n trains the winning PU and no
other. A node with one writer just runs it.

A rater is an MLP on [the values of the nodes its node's writers read (`cu.node_rater_context`),
the candidate value as it would be written (rounded where the node rounds), a one-hot of the
candidate PU]. It learns when an Environment loss arrives on n in a lane whose value is still the
one the lane's last pick wrote (the same tape record): the loss callable is a function of the
value alone, so it is evaluated on every candidate of that pick, winner and losers, and the rater's
predictions regress to those losses (MSE, Adam `cu.node_rater_lr`, one step per iteration). Each
pick teaches once, with the first loss its value gets. A loss callable that returns one sum over
several lanes instead of per-lane losses cannot be split, and teaches nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from .config import CUConfig, RunConfig
from .nodes import ENV, Nodes, snap
from .pus import mlp
from .tasks.kpi_registry import KPI, Panel

RATER = Panel("learning", "node rater")
KPIS = (
    KPI("rater_loss", "squared error of the node raters' predicted losses (summed over rated nodes), mean over the "
        "log interval's updates (cu.node_actions; null: off or no update)", summary=None, plot=RATER, tag_group="train"),
    KPI("rater_agreement", "share of the log interval's rated picks whose rater favourite had the lowest actual "
        "loss among the candidates (cu.node_actions; null: off or none rated)", rate=True, summary=None,
        plot=RATER, tag_group="train"),
)


def action_name(node: str) -> str:
    """The CU action that runs node `node`'s writers."""
    return f"node:{node}"


def writers_by_node(cfg: RunConfig) -> Dict[str, List[str]]:
    """Each node some PU writes (node declaration order) -> the PUs that write it (PU declaration order)."""
    out = {n: [p for p, pu in cfg.pus.items() if n in pu.outputs] for n in cfg.nodes}
    return {n: ps for n, ps in out.items() if ps}


@dataclass
class Picks:
    """One rated node's last pick per lane: the record that wrote it and what the rater saw."""

    rid: List[int]  # [B] the tape record the pick wrote (ENV: none, or already taught)
    context: torch.Tensor  # [B, C] the context the rater saw
    values: torch.Tensor  # [B, K, V] every candidate's value as it would be written
    valid: torch.Tensor  # [B, K] bool: the candidate ran (a non-finite one is left out)
    greedy: torch.Tensor  # [B] long: the rater's favourite

    def state_dict(self) -> dict:
        return {"rid": list(self.rid), "context": self.context.clone(), "values": self.values.clone(),
                "valid": self.valid.clone(), "greedy": self.greedy.clone()}


class NodeRaters:
    """The raters of the nodes with several writers, their picks, their training and their scalars."""

    def __init__(self, cfg: CUConfig, writers: Dict[str, List[str]], pu_inputs: Dict[str, List[str]], nodes: Nodes,
                 seed: int, device: torch.device):
        self.writers = writers
        self.epsilon = cfg.node_rater_epsilon
        self.rated = [n for n, ps in writers.items() if len(ps) > 1]
        order = list(nodes.shapes)
        self.context = {n: [m for m in order if cfg.node_rater_context and any(m in pu_inputs[p] for p in writers[n])]
                        for n in self.rated}
        sizes = {n: nodes.values[n][0].numel() for n in order}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.raters = nn.ModuleDict({n: mlp([sum(sizes[m] for m in self.context[n]) + sizes[n] + len(writers[n]),
                                                 *cfg.node_rater_hidden, 1]) for n in self.rated}).to(device)
        self.optimizer = torch.optim.Adam(self.raters.parameters(), lr=cfg.node_rater_lr) if self.rated else None
        self.gen = torch.Generator(device).manual_seed(seed)
        b = nodes.lanes
        self.picks = {n: Picks([ENV] * b, torch.zeros(b, sum(sizes[m] for m in self.context[n]), device=device),
                               torch.zeros(b, len(writers[n]), sizes[n], device=device),
                               torch.zeros(b, len(writers[n]), dtype=torch.bool, device=device),
                               torch.zeros(b, dtype=torch.long, device=device)) for n in self.rated}
        self._batch: Dict[str, List[tuple]] = {}  # this iteration's examples per node, until `learn`
        self._last: Optional[tuple] = None  # the pick `choose` made for `track`
        self.start_interval()

    def start_interval(self) -> None:
        """Start a new log interval: the scalars count from here."""
        dev = self.gen.device
        self.loss_sum = torch.zeros((), device=dev)
        self.updates = 0
        self.agreed = torch.zeros((), dtype=torch.long, device=dev)
        self.compared = 0

    @staticmethod
    def _features(context: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """[n, K, C + V + K]: each candidate's context, value and one-hot."""
        n, k, _ = values.shape
        onehot = torch.eye(k, device=values.device).expand(n, k, k)
        return torch.cat([context.unsqueeze(1).expand(n, k, context.shape[1]), values, onehot], 2)

    def predict(self, node: str, context: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """[n, K] the rater's predicted loss of each candidate value."""
        return self.raters[node](self._features(context, values)).squeeze(2)

    def choose(self, node: str, nodes: Nodes, lanes: List[int], idx: Optional[torch.Tensor],
               outputs: Dict[int, torch.Tensor], training: bool) -> torch.Tensor:
        """Per lane, the writer (index into `writers[node]`) whose value to write; `outputs`: writer index ->
        its value [len(lanes), *shape], for the writers that ran. Training keeps the pick for `track`."""
        n, k = len(lanes), len(self.writers[node])
        if node not in self.raters:
            return torch.zeros(n, dtype=torch.long, device=self.gen.device)
        levels = nodes.round_to.get(node)
        values = torch.zeros(n, k, self.picks[node].values.shape[2], device=self.gen.device)
        valid = torch.zeros(k, dtype=torch.bool, device=self.gen.device)
        for j, out in outputs.items():
            values[:, j] = (out if levels is None else snap(out, levels)).reshape(n, -1)
            valid[j] = True
        read = [nodes.values[m] if idx is None else nodes.values[m][idx] for m in self.context[node]]
        context = torch.cat([v.reshape(n, -1) for v in read], 1) if read else values.new_zeros(n, 0)
        with torch.no_grad():
            greedy = self.predict(node, context, values).masked_fill(~valid, float("inf")).argmin(1)
        choice = greedy
        if training and self.epsilon > 0:
            explore = torch.rand(n, generator=self.gen, device=self.gen.device) < self.epsilon
            drawn = torch.multinomial(valid.float().expand(n, k).contiguous(), 1, generator=self.gen).squeeze(1)
            choice = torch.where(explore, drawn, greedy)
        self._last = (node, lanes, context, values, valid.expand(n, k), greedy) if training else None
        return choice

    def track(self, node: str, lanes: List[int], rids: List[int]) -> None:
        """Keep the last `choose`'s pick in `lanes`, written by the records `rids` (one per lane)."""
        if self._last is None or self._last[0] != node:
            return
        _, chosen_lanes, context, values, valid, greedy = self._last
        self._last = None
        p = self.picks[node]
        at = torch.tensor(chosen_lanes, device=context.device)
        p.context[at], p.values[at], p.valid[at], p.greedy[at] = context, values, valid, greedy
        for lane, rid in zip(chosen_lanes, rids):
            p.rid[lane] = rid

    def observe(self, node: str, lanes: List[int], value: torch.Tensor, writers: List[int],
                loss: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """An Environment loss on `node` in `lanes` (its value then and writers): the lanes whose value is still
        their last pick's get every candidate's loss, for the next `learn`."""
        p = self.picks.get(node)
        if p is None:
            return
        rows = [i for i, (lane, w) in enumerate(zip(lanes, writers)) if w != ENV and p.rid[lane] == w]
        if not rows:
            return
        at = torch.tensor([lanes[i] for i in rows], device=value.device)
        sel = torch.tensor(rows, device=value.device)
        values = p.values[at]
        shape = value.shape[1:]
        losses = []
        with torch.no_grad():
            for j in range(values.shape[1]):
                per_lane = loss(value.index_put((sel,), values[:, j].reshape(len(rows), *shape)))
                if per_lane.dim() == 0 and len(lanes) > 1:
                    return  # one sum over several lanes: not split into lanes
                losses.append(per_lane.reshape(-1)[sel])
        for i in rows:
            p.rid[lanes[i]] = ENV  # taught once
        target = torch.stack(losses, 1)
        self._batch.setdefault(node, []).append((p.context[at], values, target, p.valid[at], p.greedy[at]))

    def learn(self) -> None:
        """One Adam step of the raters on this iteration's examples (none: nothing happens)."""
        if not self._batch:
            return
        total = 0.0
        with torch.enable_grad():
            for node, parts in self._batch.items():
                context, values, target, valid, greedy = (torch.cat(t) for t in zip(*parts))
                actual = target.masked_fill(~valid, float("inf"))
                self.agreed += (actual.gather(1, greedy.unsqueeze(1)).squeeze(1) <= actual.min(1).values).sum()
                self.compared += len(greedy)
                error = (self.predict(node, context, values) - target).square()
                total = total + error[valid].mean()
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
        self.optimizer.step()
        self.loss_sum += total.detach()
        self.updates += 1
        self._batch = {}

    def metrics(self) -> Dict[str, float]:
        nan = float("nan")
        return {"rater_loss": float(self.loss_sum) / self.updates if self.updates else nan,
                "rater_agreement": float(self.agreed) / self.compared if self.compared else nan}

    def state_dict(self) -> dict:
        return {"raters": self.raters.state_dict(),
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
                "gen": self.gen.get_state(), "picks": {n: p.state_dict() for n, p in self.picks.items()},
                "loss_sum": self.loss_sum.clone(), "updates": self.updates, "agreed": self.agreed.clone(),
                "compared": self.compared}

    def load_state_dict(self, state: dict) -> None:
        self.raters.load_state_dict(state["raters"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"])
        self.picks = {n: Picks(**{k: (list(v) if k == "rid" else v.clone()) for k, v in p.items()})
                      for n, p in state["picks"].items()}
        self.loss_sum, self.updates = state["loss_sum"].clone(), state["updates"]
        self.agreed, self.compared = state["agreed"].clone(), state["compared"]
