"""The experience-replay Environment of paper 3.5 / Fig. 7 (emulate/dqn).

It collects the transitions (s, a, r, s', done, count) that the game Environment
publishes into the transition node (its second output), one ring buffer per lane
(`params.capacity`). The CU replays one with the env action `fetch`: the
Environment draws a transition of the lane's memory (its own generator) and
writes s' into the input node n2. The first time the Q-values come back into the
output node n3 (through the mover in, the DQN PU and the mover out) it takes the
TD target y = r + gamma * (1 - done) * max Q(s') (`params.gamma`) and writes s
into n2; the second time it puts the Huber loss on Q(s)[a] - y on n3, which the
tape carries back to the DQN PU. That is one DQN update per lane on one replayed
transition, with the current network as its own target network.

The CU's reward for a replay is `reward.success` when both passes came through
`params.route` and (with `params.fresh_only`, the default) new transitions had
come in since the lane's previous fetch, else `reward.wrong_answer`; so the
reward sets how often the CU replays against live play (paper 3.5.2). `fetch`
with an empty memory is an invalid action. `params.step_reward` (default 0) shapes
the CU's reward: paid for each action that follows the route during a replay.
Signals: `target_pass`, `loss_pass` (which pass is due) and `fresh` (the memory
holds transitions not replayed since they came in: paper 3.5.2's "experience
worth replaying").
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from ..config import ConfigError
from .env import TASK_SUCCESS_PANEL, Environment, Step
from .game import route_progress, transition_size
from .kpi_registry import KPI, MAIN_TABLE

ROUTE = ("mv_replay_in", "dqn", "mv_replay_out")
IDLE, TARGET, LOSS = 0, 1, 2  # the phase of a lane's replay


class ReplayMemory:
    """One ring buffer of transition records per lane: [B, capacity, size]."""

    def __init__(self, lanes: int, capacity: int, size: int, device: torch.device):
        self.data = torch.zeros(lanes, capacity, size, device=device)
        self.count = torch.zeros(lanes, dtype=torch.long, device=device)  # records ever added per lane

    def add(self, lanes: torch.Tensor, records: torch.Tensor) -> None:
        self.data[lanes, self.count[lanes] % self.data.shape[1]] = records
        self.count[lanes] += 1

    def sample(self, lanes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One record per lane, uniformly among the lane's stored ones (all lanes must hold one)."""
        held = self.count[lanes].clamp(max=self.data.shape[1])
        u = torch.rand(len(lanes), generator=generator, device=generator.device).to(held.device)
        return self.data[lanes, (u * held).long().clamp(max=self.data.shape[1] - 1)]


def split(records: torch.Tensor, obs_size: int) -> tuple:
    """(s, a, r, s', done) of transition records [n, 2 * obs_size + 4]."""
    o = obs_size
    return (records[:, :o], records[:, o].long(), records[:, o + 1], records[:, o + 2:2 * o + 2],
            records[:, 2 * o + 2])


def td_target(r: torch.Tensor, done: torch.Tensor, q_next: torch.Tensor, gamma: float) -> torch.Tensor:
    """r + gamma * (1 - done) * max_a Q(s', a), without gradient."""
    return r + gamma * (1.0 - done) * q_next.detach().amax(1)


def td_loss(q: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Huber loss of Q(s)[a] against y, summed over the rows."""
    return F.smooth_l1_loss(q.gather(1, a.unsqueeze(1)).squeeze(1), y, reduction="sum")


class Replay(Environment):
    """Replays stored transitions: s' then s into inputs[0]; Q-values from outputs[0]; transitions from outputs[1]."""

    actions = ("fetch",)
    task_signals = ("target_pass", "loss_pass", "fresh")
    kpis = (
        KPI("route_rate", "share of the last kpi_window replays whose two passes came through the route "
            "mover in, DQN PU, mover out", better="higher", rate=True, plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
        KPI("replays", "replays completed per lane so far (each one DQN update)", integer=True),
        KPI("td_loss", "Huber TD loss of the replays (moving average, factor 0.99)", better="lower", tag_group="train"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != 1 or len(self.cfg.outputs) != 2:
            raise ConfigError(f"{key}: replay needs inputs: [obs_node] and outputs: [q_node, transition_node]")
        self.obs_node = self.cfg.inputs[0]
        self.q_node, self.transition_node = self.cfg.outputs
        self.obs_size = self.nodes.shapes[self.obs_node][0]
        size = transition_size(self.obs_size)
        if len(self.nodes.shapes[self.obs_node]) != 1 or self.nodes.shapes[self.transition_node] != (size,):
            raise ConfigError(f"{key}.outputs: '{self.transition_node}' must have shape [{size}] (a transition of "
                              f"'{self.obs_node}' {list(self.nodes.shapes[self.obs_node])})")
        capacity = int(self.params.get("capacity", 1000))
        if capacity < 1:
            raise ConfigError(f"{key}.params.capacity: must be >= 1, got {capacity}")
        self.gamma = float(self.params.get("gamma", 0.9))
        self.route: Sequence[str] = list(self.params.get("route", ROUTE))
        b, dev = self.lanes, self.device
        self.memory = ReplayMemory(b, capacity, size, dev)
        self.seen = torch.zeros(b, device=dev)  # the count of the newest transition collected per lane
        self.replayed = torch.zeros(b, dtype=torch.long, device=dev)  # memory.count at the last fetch
        self.phase = torch.zeros(b, dtype=torch.long, device=dev)
        self.current = torch.zeros(b, size, device=dev)  # the transition being replayed
        self.y = torch.zeros(b, device=dev)
        self.progress = torch.zeros(b, dtype=torch.long, device=dev)
        self.routed = torch.zeros(b, dtype=torch.bool, device=dev)  # the target pass came through the route
        self.fresh_only = bool(self.params.get("fresh_only", True))
        self.step_reward = float(self.params.get("step_reward", 0.0))
        self.worth = torch.zeros(b, dtype=torch.bool, device=dev)  # new transitions had come in before this fetch
        self.loss_ema = float("nan")
        self.replays = 0  # loss passes, summed over lanes
    def bind(self, action_index: Dict[str, int]) -> None:
        super().bind(action_index)
        for i, a in enumerate(self.route):
            if a not in action_index:
                raise ConfigError(f"envs.{self.name}.params.route[{i}]: '{a}' is not an action; "
                                  f"choose from {list(action_index)}")
        if len(self.route) != 3:
            raise ConfigError(f"envs.{self.name}.params.route: name 3 actions (mover in, DQN PU, mover out)")
        self.route_ids = torch.tensor([action_index[a] for a in self.route], device=self.device)

    def collect(self) -> None:
        """Store the transitions published since the last look (the count in a record tells new from seen)."""
        records = self.nodes.values[self.transition_node]
        new = records[:, -1] > self.seen
        if new.any():
            lanes = new.nonzero().squeeze(1)
            self.memory.add(lanes, records[lanes])
            self.seen[lanes] = records[lanes, -1]

    def start(self, lanes: torch.Tensor) -> None:
        self.phase[lanes] = IDLE

    def act(self, action: str, lanes: torch.Tensor, step: Step) -> None:
        self.collect()
        empty = self.memory.count[lanes] == 0
        self.reject(lanes[empty])
        lanes = lanes[~empty]
        if not len(lanes):
            return
        self.current[lanes] = self.memory.sample(lanes, self.gen)
        self.worth[lanes] = self.memory.count[lanes] > self.replayed[lanes]
        self.replayed[lanes] = self.memory.count[lanes]
        self.phase[lanes] = TARGET
        self.nodes.write(self.obs_node, lanes.tolist(), split(self.current[lanes], self.obs_size)[3])

    def respond(self, step: Step) -> None:
        self.collect()
        advanced = (step.ran == self.route_ids[self.progress.clamp(max=2)]) & (self.phase != IDLE)
        self.progress = route_progress(self.progress, step.ran, self.route_ids)
        if self.step_reward and advanced.any():  # shaping: each route step of a replay in progress
            self._r += self.step_reward * advanced
        lanes = step.written.get(self.q_node)
        if not lanes:
            return
        idx = torch.tensor(lanes, device=self.device)
        phase, routed = self.phase[idx], self.progress[idx] == 3
        s, a, r, _, done = split(self.current[idx], self.obs_size)
        q = self.nodes.values[self.q_node][idx]
        target = idx[phase == TARGET]
        if len(target):  # the target pass: take y, then pose s for the loss pass
            sel = phase == TARGET
            self.y[target] = td_target(r[sel], done[sel], q[sel], self.gamma)
            self.routed[target] = routed[sel]
            self.phase[target] = LOSS
            self.nodes.write(self.obs_node, target.tolist(), s[sel])
        sel = phase == LOSS
        if sel.any():
            loss_lanes = idx[sel]
            a_l, y_l = a[sel], self.y[loss_lanes]
            step.add_loss(self.q_node, loss_lanes.tolist(), lambda v: td_loss(v, a_l, y_l))
            self.replays += len(loss_lanes)
            loss = float(td_loss(q[sel], a_l, y_l)) / len(loss_lanes)
            self.loss_ema = loss if self.loss_ema != self.loss_ema else 0.99 * self.loss_ema + 0.01 * loss
            ok = self.routed[loss_lanes] & routed[sel]
            paid = ok & self.worth[loss_lanes] if self.fresh_only else ok
            self.finish(loss_lanes, ok, torch.where(paid, self.reward.success, self.reward.wrong_answer),
                        {"route_rate": ok})

    def extra_signals(self) -> torch.Tensor:
        fresh = (self.memory.count > self.replayed).float()
        return torch.stack([(self.phase == TARGET).float(), (self.phase == LOSS).float(), fresh], 1)

    def metrics(self) -> Dict[str, float]:
        return {"td_loss": self.loss_ema, "replays": self.replays / self.lanes}

    def task_state(self) -> dict:
        keys = ("seen", "replayed", "phase", "current", "y", "progress", "routed", "worth")
        return {"data": self.memory.data.clone(), "count": self.memory.count.clone(), "loss_ema": self.loss_ema,
                "replays": self.replays,
                **{k: getattr(self, k).clone() for k in keys}}

    def load_task_state(self, state: dict) -> None:
        self.memory.data, self.memory.count = state["data"].clone(), state["count"].clone()
        self.loss_ema, self.replays = state["loss_ema"], state["replays"]
        for k, v in state.items():
            if k not in ("data", "count", "loss_ema", "replays", "invalid"):  # "invalid": before Environment.reject
                setattr(self, k, v.clone())
