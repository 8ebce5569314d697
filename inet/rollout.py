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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import CUConfig, PUConfig
from .guards import finite
from .nodes import ENV, Nodes, every_lane
from .pus import run_pu
from .tape import Tape
from .tasks.env import Environment, Step, lanes_by_action

Action = Tuple[Optional[str], str]  # (Environment name, action) or (None, PU name)


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
                 node_actions: Optional[Dict[str, Tuple[str, str]]] = None, kinded: Sequence[str] = ()):
        """`node_actions`: action name -> (node, operation), e.g. clear_n2 -> (n2, clear); `kinded`: the PUs
        that read or write a node of another kind than vector."""
        self.cu = cu
        self.pus = pus
        self.pu_cfgs = pu_cfgs
        self.actions = list(actions)
        self.n_actions = len(self.actions)
        self.node_actions = node_actions or {}
        self.kinded = set(kinded)

    def new_world(self, nodes: Nodes, envs: Dict[str, Environment], greedy: bool = False) -> World:
        """A world with an empty history; `greedy` marks every last action as the argmax, none as random."""
        b, dev = nodes.lanes, nodes.device
        meta = torch.tensor([[0.0, 1.0]], device=dev).expand(b, 2) if greedy else torch.zeros(b, 2, device=dev)
        return World(nodes, envs, torch.zeros(b, self.cu.history_length * self.n_actions, device=dev), meta)

    def observe(self, world: World) -> torch.Tensor:
        """The CU input vector [B, obs_dim]: the configured parts, in order."""
        parts = {"history": lambda: world.history,
                 "signals": lambda: torch.cat([e.signals() for e in world.envs.values()], 1),
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
        cfg = self.pu_cfgs[name]
        full = every_lane(lanes, nodes.lanes)
        idx = None if full else torch.tensor(lanes, device=nodes.device)
        parents = None  # each input row's writer, read only for the tape
        if name in self.kinded:
            in_nodes, inputs, parents = self._read_kinded(nodes, cfg, lanes, idx)
        else:
            in_nodes, inputs = cfg.inputs, [nodes.values[n] if full else nodes.values[n][idx] for n in cfg.inputs]
        with torch.no_grad():
            outs = run_pu(self.pus[name], inputs, len(lanes))
        if nonfinite is not None:
            bad = [n for n, o in zip(cfg.outputs, outs) if not finite(o)]
            if bad:
                nonfinite(f"PU '{name}' wrote a non-finite value into node '{bad[0]}'")
                return
        rid = ENV
        if tape is not None:
            if parents is None:
                parents = [list(w) if full else list(map(w.__getitem__, lanes)) for w in (nodes.writers[n] for n in cfg.inputs)]
            random = None if explored is None else explored if full else explored[idx]
            rid = tape.record(name, lanes, in_nodes, inputs, parents, cfg.outputs, random)
        for n, o in zip(cfg.outputs, outs):
            nodes.write(n, lanes, o, rid, idx)
            written.setdefault(n, []).extend(lanes)

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
