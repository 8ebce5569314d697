"""Nodes: named fixed-shape tensors with a leading lane dimension.

Besides its value, each node remembers per lane which tape record wrote the
value (-1: an Environment or the initial zeros). That id is how a loss on a
node finds the PU runs that produced it.

A node with `round_to` snaps every value written into it, from iteration
`round_from` on, to the nearest listed value (paper 5.2.2.5). The tape recomputes a record's forward pass without the
rounding and hands it the node's gradient unchanged: a straight-through gradient.

A node of another kind than `vector` (inet/node_kinds.py: accumulating, memory,
combiner) keeps `size` entries per lane, [B, size, *shape], with the writer of each
entry (`slot_writers`) and the number filled (`counts`); its kind reads and writes it.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from torch import nn

from .config import NodeConfig, PUConfig
from .node_kinds import ENV, KINDS, CombinedInputs, Combiner, NodeKind


def every_lane(lanes: Sequence[int], b: int) -> bool:
    """Whether `lanes` is exactly 0..b-1 in order, so a per-lane tensor needs no indexing.

    The length alone is not enough: lanes listed in another order (e.g. two PUs
    writing the same node in one iteration) must be indexed, not taken as is.
    """
    return len(lanes) == b and list(lanes) == list(range(b))


def groups_by_value(values: torch.Tensor) -> Tuple[List[int], List[int], torch.Tensor]:
    """(the distinct values ascending, how many positions hold each, the positions grouped by value in that
    order, ascending within a group): one stable sort, not a Python loop."""
    ordered, order = torch.sort(values, stable=True)
    names, counts = torch.unique_consecutive(ordered, return_counts=True)
    return names.tolist(), counts.tolist(), order


def positions_by_value(values: torch.Tensor) -> Dict[int, List[int]]:
    """{value: the positions holding it, ascending}, by value in ascending order."""
    if values.numel() == 1:
        return {int(values): [0]}
    names, counts, order = groups_by_value(values)
    positions, out, start = order.tolist(), {}, 0
    for v, n in zip(names, counts):
        out[v], start = positions[start:start + n], start + n
    return out


def snap(value: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Each element of `value` replaced by the nearest of `levels`."""
    nearest = (value.detach().unsqueeze(-1) - levels).abs().argmin(-1)
    return levels[nearest]


class Nodes:
    """All node values [B, *shape] and their writers, one list of record ids per node."""

    def __init__(self, specs: Dict[str, NodeConfig], lanes: int, device: torch.device):
        self.lanes = lanes
        self.device = device
        self.shapes: Dict[str, tuple] = {n: tuple(s.shape) for n, s in specs.items()}
        self.kinds: Dict[str, NodeKind] = {n: KINDS[s.kind](s) for n, s in specs.items() if s.kind != "vector"}
        self.values: Dict[str, torch.Tensor] = {
            n: torch.zeros(lanes, *(() if n not in self.kinds else (self.kinds[n].size,)), *shape, device=device)
            for n, shape in self.shapes.items()
        }
        self.writers: Dict[str, List[int]] = {n: [ENV] * lanes for n in specs}  # kinds: the last writer
        self.slot_writers: Dict[str, List[List[int]]] = {n: [[ENV] * k.size for _ in range(lanes)]
                                                         for n, k in self.kinds.items()}
        self.counts: Dict[str, List[int]] = {n: [0] * lanes for n in self.kinds}
        self._levels: Dict[str, torch.Tensor] = {
            n: torch.tensor(s.round_to, dtype=torch.float32, device=device)
            for n, s in specs.items() if s.round_to is not None}
        self._round_from = {n: specs[n].round_from for n in self._levels}
        self.round_to: Dict[str, torch.Tensor] = {}  # the nodes rounded now
        self.set_iteration(0)
        # CU view: (node, start, stop) over the flattened value, in declaration order.
        self.cu_views = []
        for n, s in specs.items():
            if s.cu_visible:
                numel = self.values[n][0].numel()
                start, stop = s.cu_view if s.cu_view is not None else (0, numel)
                self.cu_views.append((n, start, stop))

    def set_iteration(self, iteration: int) -> None:
        """Turn each node's rounding on once `iteration` reaches its `round_from`."""
        self.round_to = {n: v for n, v in self._levels.items() if iteration >= self._round_from[n]}

    @property
    def cu_size(self) -> int:
        return sum(stop - start for _, start, stop in self.cu_views)

    def write(self, name: str, lanes: Sequence[int], value: torch.Tensor, writer: int = ENV,
              index: Optional[torch.Tensor] = None) -> None:
        """Write `value` [len(lanes), *shape] into the given lanes, recording who wrote it; `index` is
        `lanes` as a tensor where the caller has one.

        Out of place: tape records keep references to the values they read.
        """
        if self.kinds and name in self.kinds:
            self.kinds[name].write(self, name, lanes, value, writer)
            w = self.writers[name]
            for lane in lanes:
                w[lane] = writer
            return
        if name in self.round_to:
            value = snap(value, self.round_to[name])
        w = self.writers[name]
        if every_lane(lanes, self.lanes):
            self.values[name] = value.detach()
            w[:] = [writer] * self.lanes
        else:
            if index is None:
                index = torch.tensor(lanes, device=value.device)
            self.values[name] = self.values[name].index_put((index,), value.detach())
            for lane in lanes:
                w[lane] = writer

    def read(self, name: str, lanes: Sequence[int], idx: Optional[torch.Tensor]) -> List[tuple]:
        """What a PU on `lanes` (`idx`: their index tensor, None for all) reads from node `name`:
        [(tensor, parents per row)], one pair per tensor the PU gets (inet/node_kinds.py)."""
        kind = self.kinds.get(name)
        if kind is not None:
            return kind.read(self, name, lanes, idx)
        w = self.writers[name]
        if idx is None:
            return [(self.values[name], list(w))]
        return [(self.values[name][idx], list(map(w.__getitem__, lanes)))]

    def clear(self, name: str, lanes: Sequence[int]) -> None:
        """Empty node `name` in `lanes` (the CU's `clear_<node>` action)."""
        self.kinds[name].clear(self, name, lanes)

    def cu_input(self) -> torch.Tensor:
        """[B, cu_size]: the CU-visible views, concatenated."""
        parts = [self.values[n].reshape(self.lanes, -1)[:, a:b] for n, a, b in self.cu_views]
        return torch.cat(parts, 1)

    def live_writers(self) -> set:
        """Ids of all records whose output is still held by some node in some lane."""
        live = set()
        for w in self.writers.values():
            live.update(w)
        for slots in self.slot_writers.values():
            for w in slots:
                live.update(w)
        live.discard(ENV)
        return live

    def fork(self) -> "Nodes":
        """A copy whose writes leave this one as it is (a what-if's sandbox). Writes are out of place, so the
        copy shares the value tensors and copies only the dicts and writer lists. Methods wrapped on this
        instance (the trace's write log wraps `write`) are not carried over: the copy's are the class's."""
        other = object.__new__(Nodes)
        other.__dict__ = {k: v for k, v in vars(self).items() if not callable(v)}
        other.values = dict(self.values)
        other.writers = {n: list(w) for n, w in self.writers.items()}
        other.slot_writers = {n: [list(w) for w in ws] for n, ws in self.slot_writers.items()}
        other.counts = {n: list(c) for n, c in self.counts.items()}
        return other

    def state_dict(self) -> dict:
        state = {"values": {n: v.clone() for n, v in self.values.items()},
                 "writers": {n: list(w) for n, w in self.writers.items()}}
        if self.kinds:
            state["slot_writers"] = {n: [list(w) for w in ws] for n, ws in self.slot_writers.items()}
            state["counts"] = {n: list(c) for n, c in self.counts.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.values = {n: v.clone() for n, v in state["values"].items()}
        self.writers = {n: list(w) for n, w in state["writers"].items()}
        if self.kinds:
            self.slot_writers = {n: [list(w) for w in ws] for n, ws in state["slot_writers"].items()}
            self.counts = {n: list(c) for n, c in state["counts"].items()}


def pu_view(cfg: PUConfig, nodes: Nodes) -> Tuple[PUConfig, Dict[str, tuple]]:
    """The PU's config and node shapes as the PU itself sees them: a node of another kind may hand it several
    tensors (an accumulating node: entries and mask, named `<node>` and `<node>.mask`)."""
    if not set(cfg.inputs) & nodes.kinds.keys():
        return cfg, nodes.shapes
    shapes, inputs = dict(nodes.shapes), []
    for n in cfg.inputs:
        kind = nodes.kinds.get(n)
        for suffix, shape in kind.pieces() if kind is not None else [("", nodes.shapes[n])]:
            shapes[n + suffix] = shape
            inputs.append(n + suffix)
    return dataclasses.replace(cfg, inputs=inputs), shapes


def reader(pu: nn.Module, cfg: PUConfig, nodes: Nodes, node_modules: nn.ModuleDict) -> nn.Module:
    """The PU as the rollout and tape run it: wrapped to combine its combiner inputs first, if it reads any."""
    if not any(isinstance(nodes.kinds.get(n), Combiner) for n in cfg.inputs):
        return pu
    plan = []
    for n in cfg.inputs:
        kind = nodes.kinds.get(n)
        if isinstance(kind, Combiner):
            plan.append(node_modules[f"node:{n}"])
        else:
            plan += [None] * (len(kind.pieces()) if kind is not None else 1)
    return CombinedInputs(pu, plan)
