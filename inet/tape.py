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
has arrived before it passes gradient on to older records. Depth counts records
along each path from a loss, per lane (DESIGN.md section 5): gradient that reached
a record at depth d updates its PU and is passed on only while d < `horizon`, so
a shorter path to the same record, or another lane's loss on a record both lanes
share, never carries a contribution further. Gradient that started as the CU's
gradient into the nodes is held apart from that of Environment losses, because
`pu_optim.use_normalise` rescales only the latter (inet/protect.py). `prune` drops
records no live node value can reach within the horizon, which bounds memory over
any run length.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .node_kinds import Slots, slot_ids
from .nodes import ENV, groups_by_value
from .pus import run_pu

if TYPE_CHECKING:
    from .protect import UseScaler
    from .pu_replay import PUReplay


@dataclass
class Record:
    """One PU run on a subset of lanes."""

    rid: int
    pu: str
    lanes: List[int]
    in_nodes: List[str]
    inputs: List[torch.Tensor]  # detached values read, [len(lanes), *shape] each
    parents: List[List[int]]  # per input, per row: id of the record that wrote it (Slots: per row and entry)
    outputs: List[str]
    version: int = 0  # with `recompute: stored`, the version of the PU's parameters it ran with
    random: Optional[torch.Tensor] = None  # [len(lanes)] bool: the CU chose this run by exploration (inet/protect.py)
    row: Dict[int, int] = field(default_factory=dict)  # lane -> row

    def __post_init__(self) -> None:
        self.row = dict(zip(self.lanes, range(len(self.lanes))))
        if any(type(ps) is Slots for ps in self.parents):
            self.parent_ids = set().union(*map(slot_ids, self.parents)) - {ENV}
        else:
            self.parent_ids = set().union(*self.parents) - {ENV}


@dataclass
class Pending:
    """Gradient waiting on a record's outputs at one depth from one source (the CU or Environment losses):
    per output, [len(lanes), *shape] or None, and the rows (lane positions) it reached, None for all. While
    only one gradient has arrived, on ascending rows of one output, it is kept as it came (`piece`: the
    output's index, the rows, their gradient), so a batched sweep uses it as is instead of scattering it
    into zeros and gathering it back."""

    grads: List[Optional[torch.Tensor]]
    rows: Optional[set]
    piece: Optional[Tuple[int, List[int], torch.Tensor]] = None

    def device(self) -> torch.device:
        return self.piece[2].device if self.piece is not None else next(g.device for g in self.grads if g is not None)

    def dense(self, n: int) -> None:
        """Scatter the piece into its output's [n, *shape] gradient."""
        j, rows, grad = self.piece
        self.piece = None
        self.grads[j] = grad.new_zeros(n, *grad.shape[1:]).index_add(0, torch.tensor(rows, device=grad.device), grad)


class Tape:
    """Records of PU runs, pending node gradients, and the newest-first sweep."""

    def __init__(self, horizon: int, depth_decay: float = 1.0, recompute: str = "current",
                 scaler: Optional["UseScaler"] = None, replay: Optional["PUReplay"] = None):
        self.horizon = horizon
        self.scaler = scaler if scaler is not None and scaler.active else None  # per-use gradient weights
        self.replay = replay  # keeps the uses that got gradient, as supervised pairs
        self.depth_decay = depth_decay
        self.recompute = recompute
        self.versions: Dict[str, int] = {}  # `stored`: each PU's parameter version
        self.snapshots: Dict[Tuple[str, int], List[torch.Tensor]] = {}  # `stored`: (PU, version) -> parameters
        self.records: Dict[int, Record] = {}
        self.next_id = 0
        # rid -> (depth, from the CU) -> the gradient that reached it there
        self._pending: Dict[int, Dict[Tuple[int, bool], Pending]] = {}
        self._heap: List[int] = []

    def __len__(self) -> int:
        return len(self.records)

    def record(self, pu: str, lanes: List[int], in_nodes: List[str], inputs: List[torch.Tensor],
               parents: List[List[int]], outputs: List[str], random: Optional[torch.Tensor] = None) -> int:
        """Append a record and return its id (ids grow with time); `random` marks lanes run by exploration."""
        rid = self.next_id
        self.next_id += 1
        self.records[rid] = Record(rid, pu, lanes, in_nodes, inputs, parents, outputs, self.versions.get(pu, 0), random)
        return rid

    def before_step(self, pus: Dict[str, nn.Module]) -> None:
        """With `recompute: stored`, call before the PUs' optimizer step: each PU about to change (it has
        gradients) that records ran with keeps its parameters as they are, and starts a new version."""
        if self.recompute != "stored":
            return
        used = {(r.pu, r.version) for r in self.records.values()}
        for name, pu in pus.items():
            version = self.versions.get(name, 0)
            if (name, version) in used and any(p.grad is not None for p in pu.parameters()):
                self.snapshots[(name, version)] = [p.detach().clone() for p in pu.parameters()]
                self.versions[name] = version + 1

    def add_grad(self, writers: Sequence[int], node: str, lanes: Sequence[int], grad: torch.Tensor,
                 depth: int = 1, cu: bool = False) -> None:
        """Add d(loss)/d(value) of `node` in `lanes` to the records that wrote those values; `cu`: the loss is
        the CU's (its gradient into the nodes), not an Environment's."""
        if len(set(writers)) == 1:
            self._add(writers[0], node, lanes, grad, (depth, cu))
            return
        names, counts, order = groups_by_value(torch.tensor(writers))
        positions, start = order.tolist(), 0
        for w, n, part in zip(names, counts, grad[order.to(grad.device)].split(counts)):
            if w != ENV:
                self._add(w, node, list(map(lanes.__getitem__, positions[start:start + n])), part, (depth, cu))
            start += n

    def _add(self, rid: int, node: str, lanes: Sequence[int], grad: torch.Tensor, key: Tuple[int, bool]) -> None:
        """Hold a gradient on the record's output `node` in `lanes`, apart from those of other depths and
        sources (`key`: depth, from the CU)."""
        rec = self.records.get(rid)
        if rec is None:  # an Environment value, or pruned (beyond every horizon)
            return
        by_depth = self._pending.get(rid)
        if by_depth is None:
            by_depth = self._pending[rid] = {}
            heapq.heappush(self._heap, -rid)
        j = rec.outputs.index(node)
        rows = list(map(rec.row.__getitem__, lanes)) if list(lanes) != rec.lanes else None
        entry = by_depth.get(key)
        if entry is None:
            entry = by_depth[key] = Pending([None] * len(rec.outputs), set())
            if rows is not None and all(a < b for a, b in zip(rows, rows[1:])):
                entry.rows.update(rows)
                entry.piece = (j, rows, grad)
                return
        elif entry.piece is not None:
            entry.dense(len(rec.lanes))
        if rows is not None:
            if entry.rows is not None:
                entry.rows.update(rows)
            grad = grad.new_zeros(len(rec.lanes), *grad.shape[1:]).index_add(0, torch.tensor(rows, device=grad.device), grad)
        else:
            entry.rows = None
        entry.grads[j] = grad if entry.grads[j] is None else entry.grads[j] + grad

    def sweep(self, pus: Dict[str, nn.Module]) -> int:
        """Backpropagate all pending gradients; parameter gradients accumulate in `.grad`.

        Newest first, so everything a record gets has arrived before it passes gradient on.
        Gradient that reached a record at different depths (along paths of different
        lengths, or in different lanes) is passed on separately, each only while its own
        depth is under the horizon (and gradient from the CU apart from that of Environment
        losses); one recompute serves them all, the record's inputs stacked once per depth
        and source. A pending record that no record reads from (no child on
        the tape) can get no more gradient, so it runs in the same recompute as every other
        such pending record of its PU: with many lanes, one forward and backward per PU
        instead of one per record. Returns the number of records visited.
        """
        visited = 0
        read_from = None  # ids of records some record reads from, computed once a batch is possible
        while self._heap:
            rid = -heapq.heappop(self._heap)
            if rid not in self._pending:  # already swept in an earlier record's batch
                continue
            group = [rid]
            if len(self._pending) > 1:
                if read_from is None:
                    read_from = set().union(*(r.parent_ids for r in self.records.values()))
                pu = self.records[rid].pu
                if rid not in read_from:
                    version = self.records[rid].version
                    group += [r for r in self._pending if r != rid and r not in read_from and self.records[r].pu == pu
                              and self.records[r].version == version]
            visited += len(group)
            items = [(self.records[r], key, entry) for r in group for key, entry in self._pending.pop(r).items()]
            rec, key, entry = items[0]
            if len(items) == 1 and (entry.rows is None or len(entry.rows) == len(rec.lanes)):
                if entry.piece is not None:
                    entry.dense(len(rec.lanes))
                self._visit(pus, rec, entry.grads, key)
            else:
                self._visit_batch(pus, items)
        return visited

    def _leaf(self, x: torch.Tensor, parents: List[List[int]], deeper: List[bool]) -> torch.Tensor:
        """The input to recompute from: a leaf that takes a gradient when some row's writer is on the tape."""
        needs = any(d and not self.records.keys().isdisjoint(ps if type(ps) is not Slots else slot_ids(ps))
                    for d, ps in zip(deeper, parents))
        return x.detach().requires_grad_() if needs else x

    def _run(self, pus: Dict[str, nn.Module], rec: Record, leaves: List[torch.Tensor], n: int) -> tuple:
        """The record's recompute on `leaves` (n rows): its outputs, and the stored parameters it used (None:
        the PU's current ones)."""
        pu = pus[rec.pu]
        if rec.version == self.versions.get(rec.pu, 0):
            return run_pu(pu, leaves, n), None
        params = [s.detach().requires_grad_(p.requires_grad)
                  for s, p in zip(self.snapshots[(rec.pu, rec.version)], pu.parameters())]
        names = [name for name, _ in pu.named_parameters()]
        out = torch.func.functional_call(pu, dict(zip(names, params)), tuple(leaves), {} if leaves else {"n": n})
        return (out if isinstance(out, tuple) else (out,)), params

    @staticmethod
    def _to_current(pu: nn.Module, stored: Optional[List[torch.Tensor]]) -> None:
        """Gradients taken at stored parameters are the gradients for the PU's current ones."""
        for p, s in zip(pu.parameters(), stored or ()):
            if s.grad is not None:
                p.grad = s.grad if p.grad is None else p.grad + s.grad

    def _backward(self, outs: tuple, grads: List[Optional[torch.Tensor]]) -> bool:
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return bool(pairs)

    def _pass_on(self, rec: Record, input_grads: List[Optional[torch.Tensor]], key: Tuple[int, bool],
                 rows: Optional[List[int]] = None) -> None:
        """Hand the gradients on the record's inputs (in `rows`, or all) to the records that wrote them, one
        step deeper from the same source."""
        depth, cu = key
        lanes = rec.lanes if rows is None else [rec.lanes[r] for r in rows]
        for node, g, ps in zip(rec.in_nodes, input_grads, rec.parents):
            if g is None:
                continue
            g = g if self.depth_decay == 1.0 else g * self.depth_decay
            if type(ps) is Slots:  # entries read as a batch: entry j's gradient goes to entry j's writer
                ps = ps if rows is None else [ps[r] for r in rows]
                for j in range(g.shape[1]):
                    self.add_grad([row[j] for row in ps], node, lanes, g[:, j], depth + 1, cu)
                continue
            ps = ps if rows is None else [ps[r] for r in rows]
            self.add_grad(ps, node, lanes, g, depth + 1, cu)

    def _visit(self, pus: Dict[str, nn.Module], rec: Record, grads: list, key: Tuple[int, bool]) -> None:
        deeper = key[0] < self.horizon
        leaves = [self._leaf(x, [ps], [deeper]) for x, ps in zip(rec.inputs, rec.parents)]
        if self.scaler is not None:
            grads = self.scaler.scale(rec.pu, grads, rec.random, True if key[1] else None)
        with torch.enable_grad():
            outs, stored = self._run(pus, rec, leaves, len(rec.lanes))
            if not self._backward(outs, grads):
                return
        if self.replay is not None:
            self.replay.add(rec.pu, leaves, outs, grads)
        self._to_current(pus[rec.pu], stored)
        if deeper:
            self._pass_on(rec, [leaf.grad for leaf in leaves], key)

    def _visit_batch(self, pus: Dict[str, nn.Module], items: List[tuple]) -> None:
        """(record, (depth, from the CU), Pending) items of one PU in one recompute: each item's rows that got
        gradient, inputs and output gradients stacked along the lanes; each item passes on its own part."""
        rows = [None if e.rows is None else sorted(e.rows) for _, _, e in items]
        deeper = [key[0] < self.horizon for _, key, _ in items]
        sizes = [len(rec.lanes) if r is None else len(r) for (rec, _, _), r in zip(items, rows)]
        # the rows to keep of the items' tensors stacked whole: one index for all items (None: every row)
        index, offsets, offset = [], [], 0
        for (rec, _, _), r in zip(items, rows):
            index.extend(range(offset, offset + len(rec.lanes)) if r is None else [offset + x for x in r])
            offsets.append(offset)
            offset += len(rec.lanes)
        gather = None if len(index) == offset else torch.tensor(index, device=items[0][2].device())
        starts = [0, *itertools.accumulate(sizes)]

        def stacked(xs: List[torch.Tensor]) -> torch.Tensor:
            """The items' tensors (whole, one per item) on the items' rows, stacked."""
            x = torch.cat(xs)
            return x if gather is None else x[gather]

        def part(x: torch.Tensor, k: int) -> torch.Tensor:
            return x if rows[k] is None else x[gather[starts[k]:starts[k + 1]] - offsets[k]]

        def grad_part(e: Pending, j: int, k: int) -> Optional[torch.Tensor]:
            """Item k's gradient on output j, on its rows (None: none arrived)."""
            if e.piece is not None:
                return e.piece[2] if e.piece[0] == j else None
            return None if e.grads[j] is None else part(e.grads[j], k)

        first = items[0][0]
        leaves = [self._leaf(stacked([rec.inputs[i] for rec, _, _ in items]),
                             [rec.parents[i] for rec, _, _ in items], deeper) for i in range(len(first.inputs))]
        with torch.enable_grad():
            outs, stored = self._run(pus, first, leaves, sum(sizes))
            grads = []
            for j, o in enumerate(outs):
                parts = [grad_part(e, j, k) for k, (_, _, e) in enumerate(items)]
                grads.append(None if all(g is None for g in parts) else torch.cat(
                    [o.new_zeros(n, *o.shape[1:]) if g is None else g for g, n in zip(parts, sizes)]))
            if self.scaler is not None:
                random = stacked([torch.zeros(len(rec.lanes), dtype=torch.bool, device=outs[0].device)
                                  if rec.random is None else rec.random for rec, _, _ in items])
                cu = [key[1] for _, key, _ in items]
                from_cu = None if not any(cu) else torch.cat(
                    [torch.full((n,), c, device=random.device) for n, c in zip(sizes, cu)])
                grads = self.scaler.scale(first.pu, grads, random, from_cu)
            if not self._backward(outs, grads):
                return
        if self.replay is not None:
            self.replay.add(first.pu, leaves, outs, grads)
        self._to_current(pus[first.pu], stored)
        split = [None if leaf.grad is None else leaf.grad.split(sizes) for leaf in leaves]
        for k, (rec, key, _) in enumerate(items):
            if deeper[k]:
                self._pass_on(rec, [None if s is None else s[k] for s in split], key, rows[k])

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
        if self.snapshots:
            used = {(r.pu, r.version) for r in self.records.values()}
            self.snapshots = {k: v for k, v in self.snapshots.items() if k in used}

    def state_dict(self) -> dict:
        return {
            "next_id": self.next_id,
            "records": [(r.rid, r.pu, r.lanes, r.in_nodes, r.inputs,
                         [{"slots": [list(t) for t in ps]} if type(ps) is Slots else ps for ps in r.parents],
                         r.outputs, r.version, r.random)
                        for r in self.records.values()],
            "versions": dict(self.versions),
            "snapshots": [(pu, v, ps) for (pu, v), ps in self.snapshots.items()],
        }

    def load_state_dict(self, state: dict) -> None:
        self.next_id = state["next_id"]
        self.records = {t[0]: Record(*t[:5], [Slots(map(tuple, ps["slots"])) if isinstance(ps, dict) else ps
                                              for ps in t[5]], *t[6:])
                        for t in state["records"]}  # 7-tuples (format 4): version 0; 8: no random
        self.versions = dict(state.get("versions", {}))
        self.snapshots = {(pu, v): ps for pu, v, ps in state.get("snapshots", [])}
        self._pending, self._heap = {}, []
