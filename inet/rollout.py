"""One iteration's actions over nodes, PUs and Environments: the code training and evaluation share.

A `World` is what an iteration changes: the node values, the Environments, and
the CU's action history and meta flags, for B lanes. `Rollout` builds the CU's
input vector from a world (`observe`), runs the actions the lanes chose
(`apply`: each action once, on the lanes that chose it, then every Environment's
feedback) and moves the history on (`advance`). Training (`Engine.step`) passes its
tape, so PU runs are recorded; greedy evaluation (`inet/evaluation.py`) passes
none and its own world, so it changes no training state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import CUConfig, PUConfig
from .guards import finite
from .nodes import ENV, Nodes, every_lane
from .pus import run_pu
from .tape import Tape
from .tasks.env import Environment, Step, lanes_by_action

if TYPE_CHECKING:
    from .node_actions import NodeRaters
    from .shortcut import Shortcut

Action = Tuple[Optional[str], str]  # (Environment name, action) or (None, PU name, node action or node operation)


@dataclass
class World:
    """The state one iteration changes, for B lanes."""

    nodes: Nodes
    envs: Dict[str, Environment]
    history: torch.Tensor  # [B, history_length * n_actions] one-hot of the last actions, newest first
    meta: torch.Tensor  # [B, 2]: was the last action random, was it the argmax (paper 5.2.2.6)

    @property
    def lanes(self) -> int:
        return self.history.shape[0]


class Rollout:
    """Observation, action dispatch and history for any world of this IN's nodes, PUs and Environments."""

    def __init__(self, cu: CUConfig, pus: Dict[str, nn.Module], pu_cfgs: Dict[str, PUConfig], actions: Sequence[Action],
                 node_actions: Optional[Dict[str, Tuple[str, str]]] = None, kinded: Sequence[str] = (),
                 raters: Optional["NodeRaters"] = None, ran_index: Optional[Dict[str, int]] = None,
                 shortcut: Optional["Shortcut"] = None):
        """`node_actions`: action name -> (node, operation), e.g. clear_n2 -> (n2, clear); `kinded`: the PUs
        that read or write a node of another kind than vector; `raters`: with `cu.node_actions`, the node
        raters (inet/node_actions.py), and `ran_index` each PU's index in `Step.ran`; `shortcut`: the shortcut
        students (inet/shortcut.py), shown every teacher's write while training (with a tape)."""
        self.cu = cu
        self.pus = pus
        self.pu_cfgs = pu_cfgs
        self.actions = list(actions)
        self.n_actions = len(self.actions)
        self.node_actions = node_actions or {}
        self.kinded = set(kinded)
        self.raters = raters
        self.node_runs = {f"node:{n}": n for n in raters.writers} if raters is not None else {}
        self.ran_index = ran_index or {}
        self.teachers = shortcut.teachers if shortcut is not None else {}
        self.shortcut = shortcut

    def new_world(self, nodes: Nodes, envs: Dict[str, Environment], greedy: bool = False) -> World:
        """A world with an empty history; `greedy` marks every last action as the argmax, none as random."""
        b, dev = nodes.lanes, nodes.device
        meta = torch.tensor([[0.0, 1.0]], device=dev).expand(b, 2) if greedy else torch.zeros(b, 2, device=dev)
        return World(nodes, envs, torch.zeros(b, self.cu.history_length * self.n_actions, device=dev), meta)

    def observe(self, world: World, signals: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The CU input vector [B, obs_dim]: the configured parts, in order; `signals` [B, n] stands in for the
        Environments' own (a what-if's, which the Environments do not hold)."""
        parts = {"history": lambda: world.history,
                 "signals": lambda: torch.cat([e.signals() for e in world.envs.values()], 1) if signals is None
                 else signals,
                 "nodes": world.nodes.cu_input,
                 "meta": lambda: world.meta}
        return torch.cat([parts[p]() for p in self.cu.inputs], 1)

    def apply(self, world: World, actions: torch.Tensor, tape: Optional[Tape] = None,
              nonfinite: Optional[Callable[[str], None]] = None, explored: Optional[torch.Tensor] = None) -> Step:
        """Run each chosen action once on the lanes that chose it, in action order, then collect every
        Environment's feedback. With a tape, PU runs are recorded (with `explored` [B], which lanes chose
        by exploration) and a non-finite PU output is reported to `nonfinite` and not written."""
        b, dev = world.lanes, world.history.device
        step = Step(world.nodes, actions, {}, torch.zeros(b, device=dev), torch.zeros(b, dtype=torch.bool, device=dev))
        for a, lanes in lanes_by_action(actions).items():
            env, name = self.actions[a]
            if env is None and name in self.node_actions:
                node, operation = self.node_actions[name]
                getattr(world.nodes, operation)(node, lanes)
            elif env is None and name in self.node_runs:
                self.run_node(world.nodes, self.node_runs[name], lanes, step, tape, nonfinite, explored)
            elif env is None:
                self.run_pu(world.nodes, name, lanes, step.written, tape, nonfinite, explored)
            else:
                world.envs[env].act(name, torch.tensor(lanes, device=dev), step)
        for env in world.envs.values():
            env.feedback(step)
        return step

    def run_pu(self, nodes: Nodes, name: str, lanes: List[int], written: Dict[str, List[int]],
               tape: Optional[Tape] = None, nonfinite: Optional[Callable[[str], None]] = None,
               explored: Optional[torch.Tensor] = None) -> None:
        """Run PU `name` on `lanes`, write its outputs (recording the run on `tape`, if given)."""
        full = every_lane(lanes, nodes.lanes)
        idx = None if full else torch.tensor(lanes, device=nodes.device)
        in_nodes, inputs, parents = self._read(nodes, name, lanes, idx)
        with torch.no_grad():
            outs = run_pu(self.pus[name], inputs, len(lanes))
        if nonfinite is not None and not self._finite(name, outs, nonfinite):
            return
        self._write(nodes, name, lanes, full, idx, in_nodes, inputs, parents, outs, written, tape, explored)

    def run_node(self, nodes: Nodes, node: str, lanes: List[int], step: Step, tape: Optional[Tape] = None,
                 nonfinite: Optional[Callable[[str], None]] = None, explored: Optional[torch.Tensor] = None) -> None:
        """Node action (paper 6.7): run every writer of `node` on `lanes`, and per lane write (and record) the
        run of the writer the node's rater picks; `step.ran` gets that PU's index (inet/node_actions.py)."""
        full = every_lane(lanes, nodes.lanes)
        idx = None if full else torch.tensor(lanes, device=nodes.device)
        runs = {}
        for j, name in enumerate(self.raters.writers[node]):
            in_nodes, inputs, _ = self._read(nodes, name, lanes, idx)
            with torch.no_grad():
                outs = run_pu(self.pus[name], inputs, len(lanes))
            if nonfinite is None or self._finite(name, outs, nonfinite):
                runs[j] = (name, in_nodes, inputs, outs)
        if not runs:
            return
        choice = self.raters.choose(node, nodes, lanes, idx, {j: r[3][0] for j, r in runs.items()}, tape is not None)
        rids = [ENV] * len(lanes)
        for j, (name, in_nodes, inputs, outs) in runs.items():
            rows = (choice == j).nonzero().flatten()
            if rows.numel() == 0:
                continue
            won = [lanes[r] for r in rows.tolist()]
            full = every_lane(won, nodes.lanes)
            sub = None if full else torch.tensor(won, device=nodes.device)
            rid = self._write(nodes, name, won, full, sub, in_nodes, [x[rows] for x in inputs], None,
                              tuple(o[rows] for o in outs), step.written, tape, explored)
            for r in rows.tolist():
                rids[r] = rid
            if step.ran is step.actions:
                step.ran = step.actions.clone()
            step.ran[torch.tensor(won, device=step.ran.device)] = self.ran_index[name]
        if tape is not None:
            self.raters.track(node, lanes, rids)

    def _read(self, nodes: Nodes, name: str, lanes: List[int], idx: Optional[torch.Tensor]) -> tuple:
        """What PU `name` reads on `lanes` (`idx`: their index, None for all): (in_nodes, inputs, parents), the
        parents (each input row's writer) only for a PU touching nodes of other kinds (else None)."""
        cfg = self.pu_cfgs[name]
        if name in self.kinded:
            return self._read_kinded(nodes, cfg, lanes, idx)
        return cfg.inputs, [nodes.values[n] if idx is None else nodes.values[n][idx] for n in cfg.inputs], None

    def _finite(self, name: str, outs: tuple, nonfinite: Callable[[str], None]) -> bool:
        """Whether every output of PU `name` is finite; a non-finite one is reported to `nonfinite`."""
        bad = [n for n, o in zip(self.pu_cfgs[name].outputs, outs) if not finite(o)]
        if bad:
            nonfinite(f"PU '{name}' wrote a non-finite value into node '{bad[0]}'")
        return not bad

    def _write(self, nodes: Nodes, name: str, lanes: List[int], full: bool, idx: Optional[torch.Tensor],
               in_nodes: List[str], inputs: List[torch.Tensor], parents: Optional[list], outs: tuple,
               written: Dict[str, List[int]], tape: Optional[Tape], explored: Optional[torch.Tensor]) -> int:
        """Record PU `name`'s run on `lanes` on `tape` (if given) and write its outputs; returns the record id."""
        cfg = self.pu_cfgs[name]
        rid = ENV
        if tape is not None:
            if parents is None:
                parents = [list(w) if full else list(map(w.__getitem__, lanes)) for w in (nodes.writers[n] for n in cfg.inputs)]
            random = None if explored is None else explored if full else explored[idx]
            rid = tape.record(name, lanes, in_nodes, inputs, parents, cfg.outputs, random)
            if name in self.teachers:
                self.shortcut.watch(nodes, name, lanes, idx, outs, rid)
        for n, o in zip(cfg.outputs, outs):
            nodes.write(n, lanes, o, rid, idx)
            written.setdefault(n, []).extend(lanes)
        return rid

    @staticmethod
    def _read_kinded(nodes: Nodes, cfg: PUConfig, lanes: List[int], idx: Optional[torch.Tensor]) -> tuple:
        """What a PU touching nodes of other kinds reads: each node's kind says which tensors it hands over
        (an accumulating node: entries and mask), with their writers. Returns (in_nodes, inputs, parents)."""
        in_nodes, inputs, parents = [], [], []
        for n in cfg.inputs:
            for value, ps in nodes.read(n, lanes, idx):
                in_nodes.append(n)
                inputs.append(value)
                parents.append(ps)
        return in_nodes, inputs, parents

    def advance(self, world: World, actions: torch.Tensor, explored: torch.Tensor, argmax: torch.Tensor) -> None:
        """Push this iteration's actions into the history and set the meta flags."""
        n = self.n_actions
        world.history = torch.cat([F.one_hot(actions, n).float(), world.history[:, :-n]], 1)
        world.meta = torch.stack([explored.float(), argmax.float()], 1)
