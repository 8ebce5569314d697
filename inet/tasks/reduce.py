"""Experiment 2 of the paper (5.2): repeated function application, reduce(f, x1..xL).

A binary sequence x1..xL is fetched one item per env action `next`, which writes
the item into the `inputs` node (n0); `next` past the end is an invalid action.
The IN submits by writing the `outputs` node (n1); the submitted value is
rounded at 0.5 and compared with the target reduce(f, x) = f(..f(f(m0, x1), x2).., xL),
where m0 is f's neutral start (1 for `and`, 0 otherwise). Submitting before the
whole sequence was fetched is an invalid action too. Failure = wrong answer,
invalid action or timeout; the budget is `reward.timeout + reward.timeout_per_item * L`.

Signals (besides new_instance and age / budget): `new_item` (the last action
fetched an item) and `end_of_sequence` (all items fetched). The length L comes from
the curriculum (`curriculum.enabled`; with `curriculum.mix`, a fraction of the
instances rehearse a length drawn from [min_length, length]) or is
`curriculum.start_length`. Only instances at the curriculum's current length move it.

`params`: `f` (constant, last, and, or, xor), `constant` (f = constant: its value),
`route` (the PUs the teacher and the scripted CU use: reset, reduce, submit).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from ..config import ConfigError, RunConfig
from .curriculum import Curriculum
from .env import Environment, Step, TargetFunction
from .kpi_registry import KPI, Panel

FUNCTIONS = ("constant", "last", "and", "or", "xor")
ROUTE = {"reset": "pu2", "reduce": "pu1", "submit": "pu0"}
LENGTHS_TABLE = "Lengths (reduce)"
LENGTHS = Panel("lengths", "sequence length L", log2=True)
EVAL_HEATMAP = Panel("eval_heatmap", "greedy success per length L", kind="heatmap")
RELIABLE = "greedy success >= evaluation.threshold over evaluation.instances fresh instances"


def evaluation_kpis(lengths: List[int]) -> Tuple[KPI, ...]:
    """The KPIs of the greedy evaluation at `lengths` (values: inet/evaluation.py, Engine.task_summary)."""
    return (
        *(KPI(f"eval_success_L{n}", f"greedy success at length {n} at the last evaluation", better="higher",
              rate=True, summary=None, plot=EVAL_HEATMAP, tag_group="eval") for n in lengths),
        KPI("eval_extrapolation_success", "mean greedy success at the evaluated lengths beyond max_length_reached",
            better="higher", rate=True, summary=None, tag_group="eval"),
        KPI("max_length_reliable", f"largest evaluated L with {RELIABLE}, at the last evaluation", better="higher",
            integer=True, plot=LENGTHS, tag_group="eval", table=LENGTHS_TABLE),
        KPI("max_length_reliable_prefix", "largest L such that every evaluated length up to it is reliable (the one "
            "to report: a constant answer makes and/or look reliable at long L)", better="higher", integer=True,
            plot=LENGTHS, tag_group="eval", table=LENGTHS_TABLE),
        KPI("best_max_length_reliable", "the best max_length_reliable of all evaluations", better="higher",
            integer=True, summary="end", tag_group=None, table=LENGTHS_TABLE),
        KPI("evaluated_at", "the iteration of the last evaluation (null: none)", integer=True, summary="end",
            tag_group=None),
        KPI("eval_success_by_length", "greedy success per evaluated L at the last evaluation", summary="end",
            tag_group=None),
        KPI("extrapolation", "greedy success per evaluated L beyond max_length_reached", summary="end",
            tag_group=None),
    )


def reduce_target(f: str, seq: torch.Tensor, length: torch.Tensor, constant: int = 1) -> torch.Tensor:
    """reduce(f, x) per row of `seq` [n, max_len] (0/1, long), using the first `length` items."""
    mask = torch.arange(seq.shape[1], device=seq.device) < length.unsqueeze(1)
    ones = (seq * mask).sum(1)
    if f == "xor":
        return ones % 2
    if f == "and":
        return (ones == length).long()
    if f == "or":
        return (ones > 0).long()
    if f == "last":
        return seq.gather(1, (length - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    return torch.full_like(length, constant)


class Reduce(Environment):
    """Fetch x1..xL with `next`, submit reduce(f, x) rounded to {0, 1}."""

    actions = ("next",)
    task_signals = ("new_item", "end_of_sequence")  # the last action fetched an item; all items fetched
    kpis = (  # values: `metrics`
        KPI("curriculum_length", "the curriculum's current length L", integer=True, plot=LENGTHS),
        KPI("max_length_reached", "highest curriculum length L so far", better="higher", integer=True,
            plot=LENGTHS, table=LENGTHS_TABLE),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        self.require_scalar_io(1, 1, "reduce needs inputs: [item_node] and outputs: [submit_node]")
        self.f = str(self.params.get("f", "xor"))
        if self.f not in FUNCTIONS:
            raise ConfigError(f"{key}.params.f: unknown function '{self.f}'; choose one of {list(FUNCTIONS)}")
        self.constant = int(self.params.get("constant", 1))
        if self.constant not in (0, 1):
            raise ConfigError(f"{key}.params.constant: must be 0 or 1, got {self.constant}")
        self.route = {**ROUTE, **self.params.get("route", {})}
        self.in_node, self.out_node = self.cfg.inputs[0], self.cfg.outputs[0]
        cur = self.cfg.curriculum
        self.curriculum = Curriculum(cur) if cur.enabled else None
        self.max_len = cur.max_length if cur.enabled else cur.start_length
        b, dev = self.lanes, self.device
        self.seq = torch.zeros(b, self.max_len, dtype=torch.long, device=dev)
        self.length = torch.zeros(b, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, dtype=torch.long, device=dev)  # items fetched so far
        self.target = torch.zeros(b, dtype=torch.long, device=dev)
        self.fresh = torch.zeros(b, dtype=torch.bool, device=dev)  # the last action fetched an item
        self.reset_done = torch.zeros(b, dtype=torch.bool, device=dev)  # the reset PU ran in this instance
        self.pending = torch.zeros(b, dtype=torch.bool, device=dev)  # an item was fetched but not reduced
        self._fetched = torch.zeros(b, dtype=torch.bool, device=dev)  # this iteration's valid `next`

    def bind(self, action_index: dict) -> None:
        super().bind(action_index)
        self.require_route(self.route)
        self.next_action = action_index["next"]

    @property
    def current_length(self) -> int:
        return self.curriculum.length if self.curriculum is not None else self.cfg.curriculum.start_length

    def start(self, lanes: torch.Tensor) -> None:
        n, length = len(lanes), self.current_length
        seq = (self.random(n, self.max_len) < 0.5).long()
        lengths = torch.full((n,), length, dtype=torch.long, device=self.device)
        mix = self.cfg.curriculum.mix if self.curriculum is not None else 0.0
        if mix > 0:  # rehearsal: some instances get a length drawn from [min_length, length]
            low = self.cfg.curriculum.min_length
            drawn = (low + self.random(n) * (length - low + 1)).long().clamp(max=length)
            lengths = torch.where(self.random(n) < mix, drawn, lengths)
        self.seq[lanes] = seq
        self.length[lanes] = lengths
        self.pos[lanes] = 0
        self.target[lanes] = reduce_target(self.f, seq, lengths, self.constant)
        for flag in (self.fresh, self.reset_done, self.pending):
            flag[lanes] = False
        self.nodes.write(self.in_node, lanes.tolist(), torch.zeros(n, 1, device=self.device))

    def act(self, action: str, lanes: torch.Tensor, step: Step) -> None:
        pos, length = self.pos[lanes], self.length[lanes]
        valid = pos < length
        self.reject(lanes[~valid])
        ok = lanes[valid]
        if len(ok):
            item = self.seq[ok, self.pos[ok]].float().unsqueeze(1)
            self.nodes.write(self.in_node, ok.tolist(), item)
            self.pos[ok] += 1
            self._fetched[ok] = True

    def respond(self, step: Step) -> None:
        lanes = step.written.get(self.out_node)
        if lanes:
            idx = torch.tensor(lanes, device=self.device)
            early = self.pos[idx] < self.length[idx]
            if early.any():
                self.fail(idx[early], self.reward.invalid_action)
            done = idx[~early]
            if len(done):
                rows = [lane for lane, e in zip(lanes, early.tolist()) if not e]
                target = self.target[done].float()
                value = self.nodes.values[self.out_node][done].reshape(-1)
                ok = (value > 0.5).long() == self.target[done]
                r = self.reward
                reward = torch.where(ok, torch.tensor(r.success, device=self.device),
                                     torch.tensor(r.wrong_answer, device=self.device))
                step.add_loss(self.out_node, rows, lambda v: (v.reshape(-1) - target).square())
                self.finish(done, ok, reward)
        actions = step.ran
        self.fresh = self._fetched.clone()
        self.pending = (self.pending | self._fetched) & (actions != self.action_index[self.route["reduce"]])
        self.reset_done |= actions == self.action_index[self.route["reset"]]
        self._fetched.zero_()

    def extra_signals(self) -> torch.Tensor:
        return torch.stack([self.fresh.float(), (self.pos >= self.length).float()], 1)

    def quiet_signals(self) -> torch.Tensor:
        """After a PU run no item is fresh, and the position stays."""
        return torch.stack([torch.zeros_like(self.fresh, dtype=torch.float), (self.pos >= self.length).float()], 1)

    def budget(self) -> torch.Tensor:
        return self.reward.timeout + self.reward.timeout_per_item * self.length.float()

    def expected_length(self) -> torch.Tensor:
        return 2.0 * self.length.float() + 2.0

    def task_ended(self, lanes: torch.Tensor, success: torch.Tensor) -> None:
        if self.curriculum is not None:  # only instances at the current length count (not rehearsal, not stale)
            at_length = self.length[lanes] == self.curriculum.length
            self.curriculum.update(success[at_length].tolist())

    def metrics(self) -> Dict[str, float]:
        return {"curriculum_length": float(self.current_length), "max_length_reached": self.max_trained_length()}

    def config_kpis(self, run: RunConfig) -> Tuple[KPI, ...]:
        return evaluation_kpis(run.evaluation.lengths) if run.evaluation.interval else ()

    def max_trained_length(self) -> float:
        return float(self.curriculum.max_reached if self.curriculum is not None else self.current_length)

    def describe(self, lane: int) -> Dict[str, object]:
        n = int(self.length[lane])
        return {"inputs": {"x": self.seq[lane, :n].tolist(), "L": n, "fetched": int(self.pos[lane]), "f": self.f},
                "target": int(self.target[lane])}

    def target_functions(self) -> List[TargetFunction]:
        """The reductor (item, memory) -> f(memory, item) on {0, 1} values (inputs rounded, as the task reads them)."""
        def fn(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            x, m = x.round(), m.round()
            out = {"xor": (x + m) % 2, "and": x * m, "or": torch.maximum(x, m), "last": x}
            return out.get(self.f, torch.full_like(x, float(self.constant)))
        return [TargetFunction(self.route["reduce"], (self.in_node, None), fn, f"{self.f}(memory, item)")]

    def value_ranges(self) -> Dict[str, Tuple[float, float]]:
        return {self.in_node: (0.0, 1.0), self.out_node: (0.0, 1.0)}

    def task_state(self) -> dict:
        state = {k: getattr(self, k).clone() for k in ("seq", "length", "pos", "target", "fresh", "reset_done",
                                                        "pending")}
        state["curriculum"] = self.curriculum.state_dict() if self.curriculum is not None else None
        return state

    def load_task_state(self, state: dict) -> None:
        for k, v in state.items():
            if k == "curriculum":
                if self.curriculum is not None:
                    self.curriculum.load_state_dict(v)
            else:
                setattr(self, k, v.clone())


def teacher(env: Reduce) -> torch.Tensor:
    """The optimal route: reset, then (`next`, reduce) L times, then submit."""
    idx = env.action_index
    action = lambda role: torch.full_like(env.pos, idx[env.route[role]])  # noqa: E731
    nxt = torch.full_like(env.pos, env.next_action)
    at_end = env.pos >= env.length
    return torch.where(~env.reset_done, action("reset"),
                       torch.where(env.pending, action("reduce"), torch.where(at_end, action("submit"), nxt)))


class ExactReductor(nn.Module):
    """A `custom` PU (item, memory) -> memory computing f exactly on {0, 1} values (for plumbing tests)."""

    def __init__(self, in_shapes: List[tuple], out_shapes: List[tuple], f: str = "xor"):
        super().__init__()
        if f not in ("xor", "and", "or", "last"):
            raise ValueError(f"ExactReductor: f must be one of xor, and, or, last, got '{f}'")
        self.f = f

    def forward(self, item: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x, m = item.round(), memory.round()
        if self.f == "xor":
            return (x + m) % 2
        if self.f == "and":
            return x * m
        if self.f == "or":
            return torch.maximum(x, m)
        return x.clone()
