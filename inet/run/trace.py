"""Recording windows of iterations into a run's `trace/` for the run viewer (`inet viz`).

Files (DESIGN.md section 8):
  `trace/meta.json`            the action names and kinds, the recorded lane, the window settings;
  `trace/window_<start>.jsonl` one JSON object per recorded iteration of one window: the action
                               and whether it was random, the CU's Q-value per action, the reward,
                               `terminal`, the losses, epsilon, node values before and after;
  `trace/actions.csv`          action usage over the whole run (all lanes): per `log_interval`,
                               how often each action was taken since the previous row.
Recording only reads engine state (no RNG, no torch op that changes anything), so a
run with a trace trains exactly as one without. The usage counts since the last row
are part of the checkpoint (`state_dict`), so a resumed run's trace matches an
uninterrupted one's.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

from ..config import TraceConfig
from ..engine import Engine
from ..tasks.env import Step
from .files import AppendFile, csv_lines, json_text, write_atomic

TRACE_DIR = "trace"


def action_kinds(engine: Engine) -> List[dict]:
    """Per action: its name, `env` or `pu`, and the Environment's name for env actions."""
    return [{"name": name, "kind": "pu" if env is None else "env", "env": env} for env, name in engine.actions]


class TraceRecorder:
    """Writes the trace of one run; `before_step`/`after_step` bracket each `Engine.step`."""

    def __init__(self, run_dir: Path, cfg: TraceConfig, log_interval: int, engine: Engine,
                 resume_at: Optional[int] = None):
        self.cfg = cfg
        self.dir = run_dir / TRACE_DIR
        self.names = list(engine.action_names)
        self.counts = [0] * len(self.names)
        self._file = None
        self._window: Optional[int] = None
        self._before: Dict[str, list] = {}
        if not cfg.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {"actions": action_kinds(engine), "lane": cfg.lane, "lanes": engine.lanes,
                "interval": cfg.interval, "window": cfg.window, "log_interval": log_interval,
                "nodes": {n: list(s) for n, s in engine.nodes.shapes.items()}}
        write_atomic(self.dir / "meta.json", json_text(meta, indent=1))
        if resume_at is not None:
            self._truncate(resume_at)
        self._usage = AppendFile(self.dir / "actions.csv")
        if self._usage.size() == 0:
            self._usage.append(csv_lines([["iteration", *self.names]], "\n"))

    def _truncate(self, resume_at: int) -> None:
        """Drop what was recorded after the checkpoint at `resume_at` (left by a hard kill)."""
        for path in sorted(self.dir.glob("window_*.jsonl")):
            rows = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["iteration"] <= resume_at]
            if rows:
                write_atomic(path, "".join(r + "\n" for r in rows))
            else:
                path.unlink()
        usage = self.dir / "actions.csv"
        if usage.exists():
            lines = usage.read_text().splitlines()
            kept = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= resume_at]
            write_atomic(usage, "".join(ln + "\n" for ln in kept))

    def _recording(self, iteration: int) -> bool:
        return self.cfg.enabled and iteration % self.cfg.interval < self.cfg.window

    def before_step(self, engine: Engine) -> None:
        """Snapshot the recorded lane's node values if this iteration is in a window."""
        if self._recording(engine.iteration):
            lane = self.cfg.lane
            self._before = {n: v[lane].flatten().tolist() for n, v in engine.nodes.values.items()}

    def after_step(self, before: int, engine: Engine, step: Step) -> None:
        """Count the actions; write the recorded lane's iteration if `before` is in a window."""
        if not self.cfg.enabled:
            return
        for a in step.actions.tolist():
            self.counts[a] += 1
        if not self._recording(before):
            return
        start = before - before % self.cfg.interval
        if self._window != start:
            self._open_window(start)
        lane = self.cfg.lane
        a = int(step.actions[lane])
        info, learner = engine.last_info, engine.cu.metrics()
        row = {
            "iteration": engine.iteration,
            "action": a,
            "action_name": self.names[a],
            "random": bool(info.explored[lane]),
            "q": None if info.values is None else [float(x) for x in info.values[lane].tolist()],
            "reward": float(step.reward[lane]),
            "terminal": bool(step.terminal[lane]),
            "td_loss": float(learner.get("td_loss", float("nan"))),
            "pu_loss": float(engine.stats["pu_loss"]),
            "epsilon": float(info.epsilon),
            "nodes_before": self._before,
            "nodes": {n: v[lane].flatten().tolist() for n, v in engine.nodes.values.items()},
        }
        self._file.append(json_text(row) + "\n")

    def _open_window(self, start: int) -> None:
        if self._file is not None:
            self._file.close()
        self._window = start
        self._file = AppendFile(self.dir / f"window_{start:010d}.jsonl")

    def log_usage(self, iteration: int) -> None:
        """Write the action counts since the previous row and reset them."""
        if not self.cfg.enabled:
            return
        self._usage.append(csv_lines([[iteration, *self.counts]], "\n"))
        self.counts = [0] * len(self.names)

    def state_dict(self) -> dict:
        return {"counts": list(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        if len(state.get("counts", [])) == len(self.names):
            self.counts = list(state["counts"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.cfg.enabled and not self._usage.closed:
            self._usage.close()


def load(run_dir: Path) -> dict:
    """A run's trace as plain data: meta, the recorded iterations (in order) and the usage rows."""
    d = run_dir / TRACE_DIR
    if not (d / "meta.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no {TRACE_DIR}/meta.json (the run was made with trace.enabled=false "
                                "or by an older inet)")
    meta = json.loads((d / "meta.json").read_text())
    steps = [json.loads(ln) for p in sorted(d.glob("window_*.jsonl")) for ln in p.read_text().splitlines() if ln]
    usage: List[List[float]] = []
    if (d / "actions.csv").is_file():
        with open(d / "actions.csv", newline="") as f:
            usage = [[float(x) for x in r] for r in list(csv.reader(f))[1:] if r]
    return {"meta": meta, "steps": steps, "usage": usage}
