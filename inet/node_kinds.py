"""Node kinds (paper 3.4, 6.7): how a node stores what PUs write into it, and what a PU reading it gets.

A node's `kind` names a class in `KINDS`. `vector` is the plain node (one value per
lane, handled inline by inet/nodes.py at no extra cost). The others keep S entries of
the node's `shape` per lane, each with the id of the record that wrote it, so the
tape hands a reader's gradient on entry j to exactly the PU run that wrote entry j:

- `accumulating` (paper 3.4): a write appends an entry, up to `capacity` (a write into
  a full node drops the oldest). A reading PU gets two tensors in the node's place:
  the entries [n, capacity, *shape] (oldest first) and a mask [n, capacity] (1.0 for
  filled entries), so only a PU class with `accepts_batch = True` may read it. The CU
  gets the action `clear_<node>`, which empties it.
- `memory` (paper 6.7): `slots` (K) addressable entries. The slot a PU reads or writes
  is the argmax of the `address` node (a vector node of K values, e.g. one-hot) at the
  time the PU runs; a read hands the PU that slot's value, and the gradient on it goes
  to the PU run that wrote the slot.
- `combiner` (paper 3.1.3, 6.7): keeps the last `k` values written into it; a reading
  PU gets their linear combination sum_j w_j v_j (newest first), with weights w learned
  (initialised to [1, 0, ...]: the newest value, like a vector node). The weights
  belong to the node (trained with the PUs' optimizer, as the group `node:<name>`).

Each kind checks its own options (`check`), before any work. Environments and the
CU's input read only vector nodes.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import NodeConfig

ENV = -1  # writer id of values written by an Environment or at start (ends a gradient chain)
Problem = Optional[Tuple[str, str]]  # (key under nodes.<name>, message), or None when fine


class Slots(list):
    """Per row of a record, the writers of a node's entries read as one batch (a tuple per row).

    The tape hands entry j's gradient to the record that wrote entry j."""


def slot_ids(parents: list) -> set:
    """The record ids in a record's parents of one input, whether per row (ints) or per row and entry (Slots)."""
    if type(parents) is Slots:
        return set().union(*parents)
    return set(parents)


class NodeKind:
    """The plain node: one value of `shape` per lane (inet/nodes.py handles it inline)."""

    name = "vector"
    batch = False  # read as (entries, mask): only PUs with `accepts_batch = True` may read it
    options: Tuple[str, ...] = ()  # the NodeConfig keys this kind uses (set on another kind: refused)
    actions: Tuple[str, ...] = ()  # node actions the CU gets, as `<action>_<node>`

    def __init__(self, cfg: "NodeConfig"):
        self.cfg = cfg
        self.shape = tuple(cfg.shape)

    @classmethod
    def check(cls, name: str, cfg: "NodeConfig", nodes: Dict[str, "NodeConfig"]) -> Problem:
        """A bad setting of this kind's options, or None."""
        return None

    @property
    def size(self) -> int:
        """Entries per lane."""
        return 1

    def pieces(self) -> List[Tuple[str, tuple]]:
        """What a reading PU gets in this node's place: (suffix, shape per lane) per tensor."""
        return [("", self.shape)]

    # -- the state in inet/nodes.py: values[name] [B, size, *shape], slot_writers[name] (B lists), counts[name]
    def read(self, nodes, name: str, lanes: Sequence[int], idx: Optional[torch.Tensor]) -> List[tuple]:
        """[(tensor [n, ...], parents)] that a PU running on `lanes` reads."""
        raise NotImplementedError

    def write(self, nodes, name: str, lanes: Sequence[int], value: torch.Tensor, writer: int) -> None:
        raise NotImplementedError

    def clear(self, nodes, name: str, lanes: Sequence[int]) -> None:
        """Empty the node in `lanes`."""
        idx = torch.tensor(lanes, device=nodes.device)
        nodes.values[name] = nodes.values[name].index_fill(0, idx, 0.0)  # out of place: records keep the old
        for lane in lanes:
            nodes.slot_writers[name][lane] = [ENV] * self.size
            nodes.counts[name][lane] = 0
            nodes.writers[name][lane] = ENV


def _positive(cfg: "NodeConfig", key: str, kind: str) -> Problem:
    """The option `key` of a node of `kind` must be set and >= 1."""
    value = getattr(cfg, key)
    if value is None:
        return key, f"kind {kind} needs `{key}:` (an integer >= 1)"
    if value < 1:
        return key, f"must be >= 1, got {value}"
    return None


class _Batch(NodeKind):
    """Entries read as one batch (entries, mask)."""

    def _mask(self, nodes, name: str, lanes: Sequence[int]) -> torch.Tensor:
        counts = nodes.counts[name]
        filled = torch.tensor([counts[lane] for lane in lanes], device=nodes.device)
        return (torch.arange(self.size, device=nodes.device) < filled.unsqueeze(1)).float()

    def read(self, nodes, name, lanes, idx):
        value = nodes.values[name] if idx is None else nodes.values[name][idx]
        sw = nodes.slot_writers[name]
        return [(value, Slots(tuple(sw[lane]) for lane in lanes)),
                (self._mask(nodes, name, lanes), [ENV] * len(lanes))]

    def pieces(self):
        return [("", (self.size, *self.shape)), (".mask", (self.size,))]


class Accumulating(_Batch):
    """Appends entries up to `capacity`; read as (entries, mask); the CU may `clear` it."""

    name = "accumulating"
    batch = True
    options = ("capacity",)
    actions = ("clear",)

    @classmethod
    def check(cls, name, cfg, nodes):
        return _positive(cfg, "capacity", cls.name)

    @property
    def size(self) -> int:
        return self.cfg.capacity

    def write(self, nodes, name, lanes, value, writer):
        counts, sw, cap = nodes.counts[name], nodes.slot_writers[name], self.size
        store = nodes.values[name]
        full = [lane for lane in lanes if counts[lane] >= cap]
        if full:  # drop the oldest entry
            fidx = torch.tensor(full, device=nodes.device)
            store = store.index_put((fidx,), store[fidx].roll(-1, 1))
            for lane in full:
                sw[lane] = sw[lane][1:] + [ENV]
                counts[lane] = cap - 1
        pos = [counts[lane] for lane in lanes]
        index = (torch.tensor(lanes, device=nodes.device), torch.tensor(pos, device=nodes.device))
        nodes.values[name] = store.index_put(index, value.detach())
        for lane, p in zip(lanes, pos):
            sw[lane][p] = writer
            counts[lane] = p + 1


class Combiner(_Batch):
    """The last `k` values written; a reader gets their learned linear combination (see `Combine`)."""

    name = "combiner"
    options = ("k",)

    @classmethod
    def check(cls, name, cfg, nodes):
        return _positive(cfg, "k", cls.name)

    @property
    def size(self) -> int:
        return self.cfg.k

    def pieces(self):
        return [("", self.shape)]  # what the PU itself sees, once `Combine` has combined the entries

    def write(self, nodes, name, lanes, value, writer):
        counts, sw = nodes.counts[name], nodes.slot_writers[name]
        idx = torch.tensor(lanes, device=nodes.device)
        store = nodes.values[name]
        shifted = torch.cat([value.detach().unsqueeze(1), store[idx, :-1]], 1)  # newest first
        nodes.values[name] = store.index_put((idx,), shifted)
        for lane in lanes:
            sw[lane] = [writer] + sw[lane][:-1]
            counts[lane] = min(counts[lane] + 1, self.size)


class Memory(NodeKind):
    """`slots` addressable entries; the slot is the argmax of the `address` node when a PU runs."""

    name = "memory"
    options = ("slots", "address")

    @classmethod
    def check(cls, name, cfg, nodes):
        problem = _positive(cfg, "slots", cls.name)
        if problem:
            return problem
        if not cfg.address:
            return "address", "kind memory needs `address:` (a vector node of `slots` values; its argmax is the slot)"
        other = nodes.get(cfg.address)
        if other is None:
            return "address", f"node '{cfg.address}' does not exist; choose one of {sorted(nodes)}"
        if other.kind != "vector":
            return "address", f"node '{cfg.address}' is {other.kind}; an address is a vector node"
        numel = math.prod(other.shape)
        if numel != cfg.slots:
            return "address", (f"node '{cfg.address}' has {numel} values (shape {list(other.shape)}); an address "
                               f"needs one per slot ({cfg.slots})")
        return None

    @property
    def size(self) -> int:
        return self.cfg.slots

    def _slots(self, nodes, lanes, idx) -> torch.Tensor:
        address = nodes.values[self.cfg.address]
        address = address if idx is None else address[idx]
        return address.reshape(len(lanes), -1).argmax(1)

    def read(self, nodes, name, lanes, idx):
        slot = self._slots(nodes, lanes, idx)
        rows = torch.arange(len(lanes), device=nodes.device) if idx is None else idx
        sw = nodes.slot_writers[name]
        return [(nodes.values[name][rows, slot], [sw[lane][s] for lane, s in zip(lanes, slot.tolist())])]

    def write(self, nodes, name, lanes, value, writer):
        idx = torch.tensor(lanes, device=nodes.device)
        slot = self._slots(nodes, lanes, idx)
        nodes.values[name] = nodes.values[name].index_put((idx, slot), value.detach())
        sw = nodes.slot_writers[name]
        for lane, s in zip(lanes, slot.tolist()):
            sw[lane][s] = writer


KINDS: Dict[str, type] = {k.name: k for k in (NodeKind, Accumulating, Memory, Combiner)}
OPTIONS = sorted({o for k in KINDS.values() for o in k.options})


def check_node(name: str, cfg: "NodeConfig", nodes: Dict[str, "NodeConfig"]) -> Problem:
    """The first bad kind setting of node `name` as (key under nodes.<name>, message), or None."""
    cls = KINDS.get(cfg.kind)
    if cls is None:
        return "kind", f"unknown kind '{cfg.kind}'; choose one of {list(KINDS)}"
    for option in OPTIONS:
        if option not in cls.options and getattr(cfg, option) is not None:
            users = [k for k, c in KINDS.items() if option in c.options]
            return option, f"is only used with kind {' or '.join(users)}; this node is {cfg.kind}"
    if cls is not NodeKind:
        if cfg.cu_visible:
            return "cu_visible", f"the CU sees only vector nodes; node '{name}' is {cfg.kind}"
        if cfg.round_to is not None:
            return "round_to", f"rounding applies to vector nodes; node '{name}' is {cfg.kind}"
    return cls.check(name, cfg, nodes)


class Combine(nn.Module):
    """A combiner node's learned weights: (entries [n, k, *shape] newest first, mask [n, k]) -> [n, *shape]."""

    def __init__(self, k: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(1, k).squeeze(0))

    def forward(self, entries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        w = (self.weight * mask).reshape(*mask.shape, *([1] * (entries.dim() - 2)))
        return (entries * w).sum(1)


class CombinedInputs(nn.Module):
    """A PU that reads combiner nodes: each combiner's (entries, mask) is combined by its node's weights first.

    The weights are held outside the module tree (they belong to the node, not to this PU),
    so the PU's parameters, checkpoints and `tape.recompute: stored` are the PU's alone."""

    def __init__(self, pu: nn.Module, plan: List[Optional[Combine]]):
        super().__init__()
        self.pu = pu
        self._plan = tuple((c,) if c is not None else None for c in plan)  # a tuple hides the modules

    def forward(self, *inputs: torch.Tensor) -> tuple:
        out, i = [], 0
        for step in self._plan:
            if step is None:
                out.append(inputs[i])
                i += 1
            else:
                out.append(step[0](inputs[i], inputs[i + 1]))
                i += 2
        return self.pu(*out)
