"""Sequence tasks for the RNN and attention emulations of paper 3.3 and 3.4 (emulate/rnn, emulate/attention).

A sequence x_1..x_L of items x_t ~ U(-1, 1)^d (d: the input node's size) is fetched one
item per env action `next`, which writes the item into the `inputs` node; `next`
past the end is an invalid action. Once all L items are fetched, the IN writes its
answer into the `outputs` node, one write per output item:

- `target: sum`: one output, the elementwise sum of the items (sequence to one: the RNN);
- `target: copy` / `reverse`: L outputs, the items in order / reversed (sequence to sequence).

Writing the output before the whole sequence was fetched is an invalid action. The
losses (MSE per output item) are put on the output node when the last output is
written, each on the value and writer of its own write, so the whole sequence is
one optimizer step, as in plain sequence training. Success: every output within
`params.tolerance` (max abs error).

`params.route` names the PUs of the rule of paper 3.3.2 (roles `reset`, `step`,
`submit`, and `clear`: an accumulating node's clear action, optional): clear and reset
once at the start of a sequence, one `step` run per new item, then `submit` once per
output. `teacher` is that rule as a scripted CU; the KPI `route_rate` is the share of
task instances that followed it to their submit (one that failed did not). The length L is
`curriculum.start_length`.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ..config import ConfigError
from .env import TASK_SUCCESS_PANEL, Environment, Step
from .kpi_registry import KPI, MAIN_TABLE

TARGETS = ("sum", "copy", "reverse")
ROUTE_ROLES = ("clear", "reset", "step", "submit")


class Sequence(Environment):
    """Fetch x_1..x_L with `next`; submit their sum, or the sequence copied or reversed, into `outputs[0]`."""

    actions = ("next",)
    task_signals = ("new_item", "end_of_sequence")  # the last action fetched an item; all items fetched
    kpis = (
        KPI("route_rate", "share of the last kpi_window task instances that followed the rule of paper 3.3.2 to "
            "their submit (clear and reset first, one step run per item, then the submits); a failed one did not",
            better="higher",
            rate=True, plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != 1 or len(self.cfg.outputs) != 1:
            raise ConfigError(f"{key}: a sequence task needs inputs: [item_node] and outputs: [answer_node]")
        self.in_node, self.out_node = self.cfg.inputs[0], self.cfg.outputs[0]
        self.target = str(self.params.get("target", "sum"))
        if self.target not in TARGETS:
            raise ConfigError(f"{key}.params.target: unknown target '{self.target}'; choose one of {list(TARGETS)}")
        shape = self.nodes.shapes[self.in_node]
        if self.nodes.shapes[self.out_node] != shape:
            raise ConfigError(f"{key}.outputs: '{self.out_node}' must have the shape of '{self.in_node}' {list(shape)}")
        self.tolerance = float(self.params.get("tolerance", 0.1))
        route = dict(self.params.get("route", {}))
        unknown = sorted(set(route) - set(ROUTE_ROLES))
        if unknown:
            raise ConfigError(f"{key}.params.route.{unknown[0]}: unknown role; choose from {list(ROUTE_ROLES)}")
        self.route = route
        self.length = self.cfg.curriculum.start_length
        self.n_out = 1 if self.target == "sum" else self.length
        b, dev = self.lanes, self.device
        self.seq = torch.zeros(b, self.length, *shape, device=dev)
        self.pos = torch.zeros(b, dtype=torch.long, device=dev)  # items fetched
        self.outs = [0] * b  # outputs written
        self.out_values = torch.zeros(b, self.n_out, *shape, device=dev)  # each output as written
        self.out_writers = [[-1] * self.n_out for _ in range(b)]  # the record that wrote each output
        self.fresh = torch.zeros(b, dtype=torch.bool, device=dev)  # the last action fetched an item
        self.pending = torch.zeros(b, dtype=torch.bool, device=dev)  # an item was fetched but not stepped
        self.started = torch.zeros(b, dtype=torch.bool, device=dev)  # the step PU ran in this instance
        self.prepared = torch.zeros(b, len(ROUTE_ROLES[:2]), dtype=torch.bool, device=dev)  # clear, reset done
        self.route_ok = torch.ones(b, dtype=torch.bool, device=dev)
        self._fetched = torch.zeros(b, dtype=torch.bool, device=dev)

    def bind(self, action_index: dict) -> None:
        super().bind(action_index)
        self.require_route(self.route)
        self.next_action = action_index["next"]
        self._role = {role: action_index[a] for role, a in self.route.items()}

    def targets(self, lanes: torch.Tensor) -> torch.Tensor:
        """[n, n_out, *shape]: the answer of each lane's sequence."""
        seq = self.seq[lanes]
        if self.target == "sum":
            return seq.sum(1, keepdim=True)
        return seq if self.target == "copy" else seq.flip(1)

    def start(self, lanes: torch.Tensor) -> None:
        n = len(lanes)
        self.seq[lanes] = self.random(n, *self.seq.shape[1:]) * 2 - 1
        self.pos[lanes] = 0
        for flag in (self.fresh, self.pending, self.started):
            flag[lanes] = False
        self.prepared[lanes] = False
        self.route_ok[lanes] = True
        for lane in lanes.tolist():
            self.outs[lane] = 0
        self.nodes.write(self.in_node, lanes.tolist(), torch.zeros(n, *self.seq.shape[2:], device=self.device))

    def act(self, action: str, lanes: torch.Tensor, step: Step) -> None:
        valid = self.pos[lanes] < self.length
        self.reject(lanes[~valid])
        ok = lanes[valid]
        if len(ok):
            self.nodes.write(self.in_node, ok.tolist(), self.seq[ok, self.pos[ok]])
            self.pos[ok] += 1
            self._fetched[ok] = True

    def respond(self, step: Step) -> None:
        self._follow_route(step.ran)
        lanes = step.written.get(self.out_node)
        if lanes:
            self._outputs(step, lanes)
        self.fresh = self._fetched.clone()
        self._fetched.zero_()

    def _follow_route(self, actions: torch.Tensor) -> None:
        """Mark lanes whose action broke the rule: a step without a new item, a `next` over an unstepped item,
        a step before clear and reset, a clear or reset after the first step."""
        role = self._role
        bad = self._fetched & self.pending  # fetched while the last item still waited for its step
        if "step" in role:
            stepped = actions == role["step"]
            ready = self.prepared[:, 1] | ("reset" not in role)
            ready &= self.prepared[:, 0] | ("clear" not in role)
            bad |= stepped & (~self.pending | ~ready)
            self.pending = (self.pending & ~stepped) | self._fetched
            self.started |= stepped
        for j, r in enumerate(ROUTE_ROLES[:2]):
            if r in role:
                chosen = actions == role[r]
                bad |= chosen & (self.started | self.prepared[:, j])
                self.prepared[:, j] |= chosen
        self.route_ok &= ~bad

    def _outputs(self, step: Step, lanes: List[int]) -> None:
        idx = torch.tensor(lanes, device=self.device)
        early = (self.pos[idx] < self.length).tolist()
        if any(early):
            self.fail(idx[torch.tensor(early, device=self.device)], self.reward.invalid_action)
        writers = self.nodes.writers[self.out_node]
        value = self.nodes.values[self.out_node]
        done = []
        for lane, e in zip(lanes, early):
            if e:
                continue
            j = self.outs[lane]
            self.out_values[lane, j] = value[lane]
            self.out_writers[lane][j] = writers[lane]
            self.outs[lane] = j + 1
            if j + 1 == self.n_out:
                done.append(lane)
        if done:
            self._submit(step, done)

    def _submit(self, step: Step, lanes: List[int]) -> None:
        """All outputs written in `lanes`: a loss per output item on its own write, and the task instance ends."""
        idx = torch.tensor(lanes, device=self.device)
        target = self.targets(idx)
        got = self.out_values[idx]
        for j in range(self.n_out):
            y = target[:, j]
            step.losses.append((self.out_node, lanes, got[:, j], [self.out_writers[lane][j] for lane in lanes],
                                lambda v, y=y: (v - y).square().flatten(1).mean(1)))
        err = (got - target).flatten(1).abs().amax(1)
        ok = err < self.tolerance
        r = self.reward
        if r.shape == "exp":  # graded: success * exp(-err^2 / width), plus the bonus when solved
            reward = r.success * torch.exp(-err.square() / r.width) + r.bonus * ok
        else:
            reward = torch.where(ok, torch.tensor(r.success, device=self.device),
                                 torch.tensor(r.wrong_answer, device=self.device))
        self.finish(idx, ok, reward, {"route_rate": self.route_ok[idx] & ~self.pending[idx]})

    def fail(self, lanes: torch.Tensor, penalty: float) -> None:
        """A failed instance (invalid action, timeout) counts as not following the rule in `route_rate`."""
        super().fail(lanes, penalty)
        self._extras.setdefault("route_rate", torch.zeros(self.lanes, dtype=torch.bool, device=self.device))

    def extra_signals(self) -> torch.Tensor:
        return torch.stack([self.fresh.float(), (self.pos >= self.length).float()], 1)

    def quiet_signals(self) -> torch.Tensor:
        """After a PU run no item is fresh, and the position stays."""
        return torch.stack([torch.zeros_like(self.fresh, dtype=torch.float), (self.pos >= self.length).float()], 1)

    def budget(self) -> float:
        return self.reward.timeout + self.reward.timeout_per_item * self.length

    def expected_length(self) -> float:
        return 2.0 * self.length + self.n_out + len(self.route) - 2

    def task_state(self) -> Dict[str, object]:
        state = {k: getattr(self, k).clone() for k in ("seq", "pos", "out_values", "fresh", "pending", "started",
                                                        "prepared", "route_ok")}
        state.update(outs=list(self.outs), out_writers=[list(w) for w in self.out_writers])
        return state

    def load_task_state(self, state: Dict[str, object]) -> None:
        for k, v in state.items():
            setattr(self, k, v.clone() if isinstance(v, torch.Tensor) else [list(w) for w in v] if k == "out_writers"
                    else list(v))


def teacher(env: Sequence) -> torch.Tensor:
    """The rule of paper 3.3.2 as a scripted CU: clear, reset, then (`next`, step) per item, then submit."""
    role, b = env._role, env.lanes

    def action(r: str) -> torch.Tensor:
        return torch.full((b,), role[r], dtype=torch.long, device=env.device)

    out = torch.where(env.pending, action("step"),
                      torch.where(env.pos < env.length, torch.full((b,), env.next_action, device=env.device),
                                  action("submit")))
    if "reset" in role:
        out = torch.where(env.prepared[:, 1], out, action("reset"))
    if "clear" in role:
        out = torch.where(env.prepared[:, 0], out, action("clear"))
    return out
