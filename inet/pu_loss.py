"""Per-PU loss: which Environment losses reach each PU through the tape, and how large they are.

A node loss (an Environment's `add_loss`) sends gradient to the records that wrote
the node's values and on through their inputs, `tape.horizon` records deep
(inet/tape.py). A PU's loss over a log interval is the mean per lane of the losses
that reached at least one record of that PU: the sum of those losses (each summed
over its lanes, before `tape.env_scale`) divided by the number of their lanes. The
CU's TD gradient into the nodes is not a loss on a node and is left out. The walk
that finds the reached records reads the tape only; it runs once per loss, before
the sweep, so it finds exactly the records the sweep visits from that loss.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Set, Union

import torch

from .tape import Tape


def reached_pus(tape: Tape, writers: Iterable[int], horizon: int) -> Set[str]:
    """The PUs of the records a loss on values written by `writers` reaches (record ids; an Environment's
    writes, -1, end the chain): the writers at depth 1, their inputs' writers at depth 2, up to `horizon`."""
    records = tape.records
    frontier = {w for w in writers if w in records}
    seen = set(frontier)
    pus: Set[str] = set()
    for depth in range(1, horizon + 1):
        pus.update(records[r].pu for r in frontier)
        if depth == horizon:
            break
        frontier = {p for r in frontier for p in records[r].parent_ids if p in records} - seen
        if not frontier:
            break
        seen |= frontier
    return pus


class PULosses:
    """Each PU's loss since the last `reset` (one log interval); part of the engine's state."""

    def __init__(self, pus: Sequence[str], horizon: int):
        self.pus = list(pus)
        self.horizon = horizon
        self.reset()

    def reset(self) -> None:
        self.sums: Dict[str, float] = {n: 0.0 for n in self.pus}
        self.lanes: Dict[str, int] = {n: 0 for n in self.pus}

    def add(self, tape: Tape, writers: List[int], loss: Union[float, torch.Tensor]) -> None:
        """One node loss (summed over its lanes, one writer per lane), before the sweep takes it; a tensor
        stays on its device until the log row reads it (no host sync per iteration)."""
        for pu in reached_pus(tape, set(writers), self.horizon):
            self.sums[pu] += loss
            self.lanes[pu] += len(writers)

    def means(self) -> Dict[str, float]:
        """`pu_loss/<pu>`: the mean per-lane loss that reached each PU (nan: none reached it)."""
        return {f"pu_loss/{n}": float(self.sums[n]) / self.lanes[n] if self.lanes[n] else float("nan") for n in self.pus}

    def state_dict(self) -> dict:
        return {"sums": {n: float(v) for n, v in self.sums.items()}, "lanes": dict(self.lanes)}

    def load_state_dict(self, state: dict) -> None:
        self.sums.update(state["sums"])
        self.lanes.update(state["lanes"])
