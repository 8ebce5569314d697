"""The tape: every PU run, and how a loss on a node reaches the PUs that produced it.

A record stores the PU, its lanes, the detached values it read and, per input row,
the id of the record that wrote that value (-1: an Environment, which ends the
chain). It does not keep an autograd graph: the sweep recomputes the record's
forward pass from the stored inputs with the PU's current parameters
(activation-checkpoint style). So an optimizer step between a run and a later loss
never invalidates anything ("modified by an inplace operation" cannot happen), and
memory per record is just its inputs. Within one iteration the parameters have
not changed since the forward, so gradients equal plain backpropagation; a loss
arriving after a PU optimizer step uses the newer parameters.

A sweep visits each record once, newest first, so all gradient reaching a record
has arrived before it passes gradient on to older records, up to `horizon`
records deep. `prune` drops records no live node value can reach within the
horizon, which bounds memory over any run length.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch
from torch import nn

from .nodes import ENV, positions_by_value
from .pus import run_pu


@dataclass
class Record:
    """One PU run on a subset of lanes."""

    rid: int
    pu: str
    lanes: List[int]
    in_nodes: List[str]
    inputs: List[torch.Tensor]  # detached values read, [len(lanes), *shape] each
    parents: List[List[int]]  # per input, per row: id of the record that wrote it
    outputs: List[str]
    row: Dict[int, int] = field(default_factory=dict)  # lane -> row

    def __post_init__(self) -> None:
        self.row = dict(zip(self.lanes, range(len(self.lanes))))
        self.parent_ids = set().union(*self.parents) - {ENV}


class Tape:
    """Records of PU runs, pending node gradients, and the newest-first sweep."""

    def __init__(self, horizon: int, depth_decay: float = 1.0):
        self.horizon = horizon
        self.depth_decay = depth_decay
        self.records: Dict[int, Record] = {}
        self.next_id = 0
        self._pending: Dict[int, list] = {}  # rid -> [grads per output, depth]
        self._heap: List[int] = []

    def __len__(self) -> int:
        return len(self.records)

    def record(self, pu: str, lanes: List[int], in_nodes: List[str], inputs: List[torch.Tensor],
               parents: List[List[int]], outputs: List[str]) -> int:
        """Append a record and return its id (ids grow with time)."""
        rid = self.next_id
        self.next_id += 1
        self.records[rid] = Record(rid, pu, lanes, in_nodes, inputs, parents, outputs)
        return rid

    def add_grad(self, writers: Sequence[int], node: str, lanes: Sequence[int], grad: torch.Tensor,
                 depth: int = 1) -> None:
        """Add d(loss)/d(value) of `node` in `lanes` to the records that wrote those values."""
        if len(set(writers)) == 1:
            self._add(writers[0], node, lanes, grad, depth)
            return
        for w, idx in positions_by_value(torch.tensor(writers)).items():
            if w != ENV:
                self._add(w, node, list(map(lanes.__getitem__, idx)), grad[torch.tensor(idx, device=grad.device)], depth)

    def _add(self, rid: int, node: str, lanes: Sequence[int], grad: torch.Tensor, depth: int) -> None:
        rec = self.records.get(rid)
        if rec is None:  # an Environment value, or pruned (beyond every horizon)
            return
        j = rec.outputs.index(node)
        entry = self._pending.get(rid)
        if entry is None:
            entry = self._pending[rid] = [[None] * len(rec.outputs), depth]
            heapq.heappush(self._heap, -rid)
        entry[1] = min(entry[1], depth)
        if list(lanes) != rec.lanes:
            rows = list(map(rec.row.__getitem__, lanes))
            full = grad.new_zeros(len(rec.lanes), *grad.shape[1:])
            grad = full.index_add(0, torch.tensor(rows, device=grad.device), grad)
        entry[0][j] = grad if entry[0][j] is None else entry[0][j] + grad

    def sweep(self, pus: Dict[str, nn.Module]) -> int:
        """Backpropagate all pending gradients; parameter gradients accumulate in `.grad`.

        Returns the number of records visited.
        """
        visited = 0
        while self._heap:
            rid = -heapq.heappop(self._heap)
            grads, depth = self._pending.pop(rid)
            rec = self.records[rid]
            visited += 1
            deeper = depth < self.horizon
            leaves = []
            for x, ps in zip(rec.inputs, rec.parents):
                needs = deeper and not self.records.keys().isdisjoint(ps)
                leaves.append(x.detach().requires_grad_(needs) if needs else x)
            with torch.enable_grad():
                outs = run_pu(pus[rec.pu], leaves, len(rec.lanes))
                pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
                if not pairs:
                    continue
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            if not deeper:
                continue
            for node, leaf, ps in zip(rec.in_nodes, leaves, rec.parents):
                if leaf.grad is not None:
                    g = leaf.grad if self.depth_decay == 1.0 else leaf.grad * self.depth_decay
                    self.add_grad(ps, node, rec.lanes, g, depth + 1)
        return visited

    def prune(self, live: set) -> None:
        """Keep only records within `horizon` records of a live node value."""
        keep = {r for r in live if r in self.records}
        frontier = keep
        for _ in range(self.horizon - 1):
            frontier = {p for r in frontier for p in self.records[r].parent_ids if p in self.records} - keep
            if not frontier:
                break
            keep |= frontier
        if len(keep) != len(self.records):
            self.records = {r: rec for r, rec in self.records.items() if r in keep}

    def state_dict(self) -> dict:
        return {
            "next_id": self.next_id,
            "records": [(r.rid, r.pu, r.lanes, r.in_nodes, r.inputs, r.parents, r.outputs)
                        for r in self.records.values()],
        }

    def load_state_dict(self, state: dict) -> None:
        self.next_id = state["next_id"]
        self.records = {t[0]: Record(*t) for t in state["records"]}
        self._pending, self._heap = {}, []
