"""Alarms: watch each log interval's statistics and raise an alarm where training goes wrong in an IN's own way.

Four alarms (keys under `alarms:`, inet/config.py `AlarmsConfig`), checked once per
`log_interval` from the engine's metrics; the iteration loop gains one counter update
(and, until the drift probes are full, a look at the tape's newest records):
- `dead_pu`: a PU the CU did not choose in its last `dead_pu_iterations` choices;
- `usage_collapse`: one action took more than `collapse_share` of the CU's choices in
  every log interval of the last `collapse_iterations` choices;
- `q_divergence`: a Q-value of the last actions beyond `q_margin` times the largest
  return the rewards allow, max |reward| / (1 - gamma);
- `pu_drift`: a PU's outputs on a fixed probe batch of its own inputs (rows it ran on,
  taken from the tape) changed by more than `drift_change` (relative) between two log
  rows while its usage share changed by more than `drift_usage_change`.
"Choices" are lane-iterations whose action the CU chose (a scripted CU, a leading
teacher): exploration draws are random, not the CU's, and count for neither alarm.

Each alarm is one entry per (kind, subject) of the run's `alarms.json` (strict JSON,
written atomically, present with an empty list in every run; the viewer's banner reads
it), with the first and last log iteration it held at and a sentence on its latest
state; the TensorBoard text `alarms` gets the sentence when it is first raised; the
scalars `alarms/<kind>` and kpis.csv's `alarms_<kind>` columns count the subjects it
holds for at each log row (nan: the alarm is off in this run).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..config import AlarmsConfig, RunConfig
from ..pus import run_pu
from ..tape import Tape
from ..tasks.kpi_registry import KPI, Panel
from .files import json_text, write_atomic

if TYPE_CHECKING:
    from ..engine import Engine
    from ..tasks.env import Step

FILENAME = "alarms.json"
TEXT_TAG = "alarms"  # the TensorBoard text each alarm's sentence goes to when it is first raised
KINDS = ("dead_pu", "usage_collapse", "q_divergence", "pu_drift")
PROBE_ROWS = 64  # rows of a PU's inputs in its drift probe
PANEL = Panel("alarms", "alarms (subjects in alarm)")
KPIS: Tuple[KPI, ...] = tuple(
    KPI(f"alarms_{kind}", f"{what}, at this log row (nan: the alarm is off)", integer=True, summary=None, plot=PANEL,
        tag_group="alarms")
    for kind, what in zip(KINDS, ("how many PUs the CU no longer chooses (dead PU)",
                                  "how many actions took over the CU's choices (usage collapse)",
                                  "1 if the CU's Q-values exceed what the rewards allow, else 0 (Q divergence)",
                                  "how many PUs' functions changed sharply as their usage changed (PU drift)")))


@dataclass
class Alarm:
    """One alarm of alarms.json: what, about which PU or action ('cu' for the CU), when, and why in one sentence."""

    kind: str
    subject: str
    first_iteration: int
    last_iteration: int
    message: str


def max_reward(cfg: RunConfig) -> float:
    """The largest |reward| one iteration can give: `alarms.max_reward`, else per Environment its per-iteration
    term plus the largest of success + bonus, wrong answer, invalid action and timeout, summed over
    Environments; training wheels' teacher reward added (anneal) or as a floor (replace)."""
    if cfg.alarms.max_reward is not None:
        return cfg.alarms.max_reward
    r = sum(abs(e.reward.per_iteration) + max(abs(e.reward.success) + abs(e.reward.bonus), abs(e.reward.wrong_answer),
                                               abs(e.reward.invalid_action), abs(e.reward.timeout_penalty))
            for e in cfg.envs.values())
    tw = cfg.training_wheels
    if tw.iterations and tw.teacher:
        r = max(r, 1.0) if tw.mode == "replace" else r + 1.0 if tw.mode == "anneal" else r
    return r


def q_bound(cfg: RunConfig) -> Optional[float]:
    """The largest |Q| any return allows, max |reward| / (1 - gamma); None where there is no such bound
    (gamma = 1) or the Q-values are not returns (PopArt acts on normalised values), or the alarm is off."""
    if cfg.alarms.q_margin is None or cfg.cu.gamma >= 1.0 or cfg.cu.popart:
        return None
    return max_reward(cfg) / (1.0 - cfg.cu.gamma)


class DriftProbe:
    """Each PU's outputs on a fixed batch of its own inputs: the first PROBE_ROWS rows it ran on, taken from
    the tape's new records after each iteration (until every probe is full) and then kept. Rows are only
    appended, so the outputs of two log rows compare on the rows both have. A PU reading no nodes is probed
    once."""

    def __init__(self, pus: Mapping[str, nn.Module], readers: Sequence[str], rows: int = PROBE_ROWS):
        """`readers`: the PUs that read nodes (the others are constants: one row, no inputs)."""
        self.pus = pus
        self.readers = set(readers)
        self.rows = rows
        self.inputs: Dict[str, List[torch.Tensor]] = {}  # per PU, per input node: [rows, *shape]
        self.scanned = -1  # the id of the newest record looked at

    def size(self, pu: str) -> int:
        return self.inputs[pu][0].shape[0] if pu in self.inputs else 0

    @property
    def full(self) -> bool:
        return all(self.size(pu) >= self.rows for pu in self.readers)

    def collect(self, tape: Tape) -> None:
        """Append the rows of the records made since the last call (newest first, so a few per iteration are
        looked at), while a PU's probe has room."""
        new = []
        for rec in reversed(tape.records.values()):
            if rec.rid <= self.scanned:
                break
            new.append(rec)
        for rec in reversed(new):
            room = self.rows - self.size(rec.pu)
            if rec.pu in self.readers and room > 0:
                rows = [x[:room].detach().clone() for x in rec.inputs]
                have = self.inputs.get(rec.pu)
                self.inputs[rec.pu] = rows if have is None else [torch.cat([h, x]) for h, x in zip(have, rows)]
        if new:
            self.scanned = new[0].rid

    def outputs(self) -> Dict[str, torch.Tensor]:
        """[rows, outputs flattened] of each PU with a probe (no gradient, no state changed)."""
        out = {}
        with torch.no_grad():
            for name, pu in self.pus.items():
                if name in self.readers and name not in self.inputs:
                    continue
                n = self.size(name) if name in self.readers else 1
                ys = run_pu(pu, self.inputs.get(name, []), n)
                out[name] = torch.cat([y.reshape(n, -1).float() for y in ys], 1)
        return out

    def state_dict(self) -> dict:
        return {"inputs": {k: list(v) for k, v in self.inputs.items()}, "scanned": self.scanned}

    def load_state_dict(self, state: dict) -> None:
        self.inputs = {k: list(v) for k, v in state["inputs"].items()}
        self.scanned = state["scanned"]


def relative_change(old: torch.Tensor, new: torch.Tensor) -> float:
    """||new - old|| / ||old|| on the rows both have (old near 0: over 1e-6 instead)."""
    m = min(old.shape[0], new.shape[0])
    return float((new[:m] - old[:m]).norm() / (old[:m].norm().clamp(min=1e-6)))


class AlarmMonitor:
    """The alarms of one run: fed the CU's choices each iteration (`count`) and each log row (`check`)."""

    def __init__(self, cfg: AlarmsConfig, actions: Sequence[str], pus: Sequence[str], q_bound: Optional[float],
                 device: torch.device = torch.device("cpu")):
        self.cfg = cfg
        self.actions = list(actions)
        self.pus = list(pus)
        self.q_bound = q_bound
        self.on = {"dead_pu": cfg.dead_pu_iterations > 0 and bool(self.pus),
                   "usage_collapse": cfg.collapse_iterations > 0 and len(self.actions) > 1,  # one action: no choice
                   "q_divergence": cfg.q_margin is not None and q_bound is not None,
                   "pu_drift": cfg.drift_change is not None and bool(self.pus)}
        self.chosen = torch.zeros(len(self.actions), dtype=torch.long, device=device)  # since the last check
        self.choices = 0  # the CU's choices so far (lane-iterations it did not explore)
        self.last_chosen = {p: 0 for p in self.pus}  # `choices` at the end of the last interval that chose the PU
        self.streak: Tuple[Optional[int], int] = (None, 0)  # the action above collapse_share, for how many choices
        self.previous: Dict[str, Tuple[torch.Tensor, float]] = {}  # per PU, its probe outputs and usage share
        self.alarms: Dict[Tuple[str, str], Alarm] = {}
        self.raised: List[Alarm] = []  # the alarms the last `check` raised for the first time

    def count(self, actions: torch.Tensor, explored: torch.Tensor) -> None:
        """One iteration: the actions [B] and which of them were exploration draws [B] (no host sync)."""
        self.chosen.index_add_(0, actions, (~explored).long())

    def check(self, iteration: int, row: Mapping[str, float],
              outputs: Optional[Mapping[str, torch.Tensor]] = None) -> Dict[str, float]:
        """One log row: `row` the engine's metrics (q_min, q_max, pu_usage/<pu>), `outputs` each PU's probe
        outputs (DriftProbe). Returns the row's alarm columns; `raised` holds the alarms first raised now."""
        counts = self.chosen.tolist()
        self.chosen.zero_()
        total = sum(counts)
        self.choices += total
        holds: Dict[str, Dict[str, str]] = {k: {} for k in KINDS}
        if self.on["dead_pu"]:
            holds["dead_pu"] = self._dead(counts)
        if self.on["usage_collapse"] and total:
            holds["usage_collapse"] = self._collapse(counts, total)
        if self.on["q_divergence"]:
            holds["q_divergence"] = self._q(row)
        if self.on["pu_drift"] and outputs is not None:
            holds["pu_drift"] = self._drift(row, outputs)
        self.raised = []
        for kind, subjects in holds.items():
            for subject, message in subjects.items():
                alarm = self.alarms.get((kind, subject))
                if alarm is None:
                    alarm = self.alarms[kind, subject] = Alarm(kind, subject, iteration, iteration, message)
                    self.raised.append(alarm)
                alarm.last_iteration, alarm.message = iteration, message
        measured = dict(self.on, q_divergence=self.on["q_divergence"] and not math.isnan(row.get("q_max", math.nan)))
        return {f"alarms_{k}": float(len(holds[k])) if measured[k] else float("nan") for k in KINDS}

    def _dead(self, counts: List[int]) -> Dict[str, str]:
        out = {}
        for pu in self.pus:
            if counts[self.actions.index(pu)]:
                self.last_chosen[pu] = self.choices
            idle = self.choices - self.last_chosen[pu]
            if idle >= self.cfg.dead_pu_iterations:
                out[pu] = (f"The CU has not chosen PU {pu} in its last {idle} choices "
                           f"(at least {self.cfg.dead_pu_iterations}; exploration draws aside).")
        return out

    def _collapse(self, counts: List[int], total: int) -> Dict[str, str]:
        top = max(range(len(counts)), key=counts.__getitem__)
        share = counts[top] / total
        if share <= self.cfg.collapse_share:
            self.streak = (None, 0)
            return {}
        n = (self.streak[1] if self.streak[0] == top else 0) + total
        self.streak = (top, n)
        if n < self.cfg.collapse_iterations:
            return {}
        name = self.actions[top]
        return {name: (f"Action {name} took more than {self.cfg.collapse_share:.0%} of the CU's choices in every log "
                       f"interval of its last {n} choices ({share:.1%} in the latest).")}

    def _q(self, row: Mapping[str, float]) -> Dict[str, str]:
        q = max((abs(v) for v in (row.get("q_min", math.nan), row.get("q_max", math.nan)) if not math.isnan(v)),
                default=math.nan)
        limit = self.cfg.q_margin * self.q_bound
        if not q > limit:
            return {}
        return {"cu": (f"The CU's Q-values reach {q:.4g} in absolute value, beyond {limit:.4g} "
                       f"({self.cfg.q_margin:g} x the largest return the rewards allow, max |reward| / (1 - gamma) "
                       f"= {self.q_bound:.4g}).")}

    def _drift(self, row: Mapping[str, float], outputs: Mapping[str, torch.Tensor]) -> Dict[str, str]:
        out = {}
        for pu, now in outputs.items():
            usage = row.get(f"pu_usage/{pu}", math.nan)
            before = self.previous.get(pu)
            self.previous[pu] = (now, usage)
            if before is None or math.isnan(usage) or math.isnan(before[1]):
                continue
            change, moved = relative_change(before[0], now), usage - before[1]
            if change > self.cfg.drift_change and abs(moved) > self.cfg.drift_usage_change:
                out[pu] = (f"PU {pu}'s outputs on its probe inputs changed by {change:.0%} since the last log row "
                           f"while its usage share went from {before[1]:.0%} to {usage:.0%}.")
        return out

    def json(self) -> str:
        """alarms.json: {"alarms": [{kind, subject, first_iteration, last_iteration, message}, ...]}."""
        return json_text({"alarms": [asdict(a) for a in self.alarms.values()]}, indent=1) + "\n"

    def state_dict(self) -> dict:
        return {"chosen": self.chosen.clone(), "choices": self.choices, "last_chosen": dict(self.last_chosen),
                "streak": list(self.streak), "previous": {k: [o, u] for k, (o, u) in self.previous.items()},
                "alarms": [asdict(a) for a in self.alarms.values()]}

    def load_state_dict(self, state: dict) -> None:
        self.chosen = state["chosen"].to(self.chosen.device).clone()
        self.choices = state["choices"]
        self.last_chosen.update(state["last_chosen"])
        self.streak = (state["streak"][0], state["streak"][1])
        self.previous = {k: (o, u) for k, (o, u) in state["previous"].items()}
        self.alarms = {(a["kind"], a["subject"]): Alarm(**a) for a in state["alarms"]}


class RunAlarms:
    """The runner's side: one run's monitor and drift probe, and its alarms.json (rewritten when it changes)."""

    def __init__(self, run_dir: Path, cfg: RunConfig, engine: "Engine"):
        self.path = Path(run_dir) / FILENAME
        self.engine = engine
        self.monitor = AlarmMonitor(cfg.alarms, engine.ran_names, list(engine.pus), q_bound(cfg), engine.device)
        self.probe = DriftProbe(engine.runners, [n for n, p in cfg.pus.items() if p.inputs])  # PUs as the tape runs them
        self.drift = self.monitor.on["pu_drift"]
        self._write()

    def after_step(self, step: "Step") -> None:
        """Count the CU's choices of the step just taken; probe rows from its PU runs while probes have room."""
        self.monitor.count(step.ran, self.engine.last_info.explored)
        if self.drift and not self.probe.full:
            self.probe.collect(self.engine.tape)

    def check(self, iteration: int, row: Mapping[str, float]) -> Tuple[Dict[str, float], List[str]]:
        """The log row's alarm columns, and the sentences of the alarms first raised now."""
        columns = self.monitor.check(iteration, row, self.probe.outputs() if self.drift else None)
        if any(not math.isnan(v) and v > 0 for v in columns.values()):
            self._write()
        return columns, [f"iteration {a.first_iteration}, {a.kind} ({a.subject}): {a.message}"
                         for a in self.monitor.raised]

    def _write(self) -> None:
        write_atomic(self.path, self.monitor.json())

    def state_dict(self) -> dict:
        return {"monitor": self.monitor.state_dict(), "probe": self.probe.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a checkpoint's alarms (alarms.json goes back to them: later ones were not raised yet)."""
        if state:
            self.monitor.load_state_dict(state["monitor"])
            self.probe.load_state_dict(state["probe"])
        self._write()
