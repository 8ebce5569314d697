"""Recording windows of iterations into a run's `trace/` for the run viewer (`inet viz`).

Files (DESIGN.md section 8; docs/viewer.md):
  `trace/meta.json`            the action names and kinds, the recorded lane, the window settings,
                               each Environment's input and output nodes, the label and part of
                               each entry of the CU's input vector, the drawable PUs (their grid
                               and the task's target function on it, inet/run/pu_functions.py);
  `trace/window_<start>.jsonl` one JSON object per recorded iteration of one window: the action
                               and whether it was random, the CU's Q-value per action, the reward,
                               `terminal`, the losses, epsilon, node values before and after, each
                               node write with its writer (`writes`), the CU's input vector
                               (`cu_input`) and each Environment's task instance (`task`);
  `trace/functions.jsonl`      one line per window: each drawable PU's function on its grid,
                               sampled after the window's first recorded iteration;
  `trace/actions.csv`          action usage over the whole run (all lanes): per `log_interval`,
                               how often each action was taken since the previous row.
Recording only reads engine state (no RNG, no torch op that changes anything; node
writes are logged by passing `Nodes.write` through a wrapper for the recorded
iteration), so a run with a trace trains exactly as one without. The usage counts
since the last row are part of the checkpoint (`state_dict`), so a resumed run's
trace matches an uninterrupted one's.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..config import TraceConfig
from ..engine import Engine
from ..nodes import ENV, Nodes
from ..tasks.env import Environment, Step
from . import pu_functions
from .files import AppendFile, csv_lines, json_text, write_atomic

TRACE_DIR = "trace"
FUNCTIONS = "functions.jsonl"
META_INPUTS = ("last action was random", "last action was the argmax")  # the CU input part `meta`


def action_kinds(engine: Engine) -> List[dict]:
    """Per action: its name, `env`, `pu` or `node` (a node action, cu.node_actions, with its `node`), and the
    Environment's name for env actions."""
    nodes = engine.rollout.node_runs
    return [{"name": name, "kind": "node", "env": None, "node": nodes[name]} if name in nodes and env is None else
            {"name": name, "kind": "pu" if env is None else "env", "env": env} for env, name in engine.actions]


def cu_input_labels(engine: Engine) -> List[dict]:
    """Per entry of the CU's input vector (inet/rollout.py `observe`): its part and what it holds
    (`history` one-hot of the last actions, `signals`, the CU-visible `nodes`, `meta` flags)."""
    labels: List[Tuple[str, str]] = []
    n_envs = len(engine.envs)
    for part in engine.cfg.cu.inputs:
        if part == "history":
            labels += [(part, f"action t-{t + 1} = {a}") for t in range(engine.cfg.cu.history_length)
                       for a in engine.action_names]
        elif part == "signals":
            labels += [(part, f"{e.name}.{s}" if n_envs > 1 else s) for e in engine.envs.values() for s in e.signal_names]
        elif part == "nodes":
            for node, start, stop in engine.nodes.cu_views:
                whole = engine.nodes.values[node][0].numel() == 1
                labels += [(part, node if whole else f"{node}[{k}]") for k in range(start, stop)]
        else:
            labels += [(part, m) for m in META_INPUTS]
    if len(labels) != engine.obs_dim:  # a learner or layout this does not know: entries by position only
        labels = [("input", f"[{k}]") for k in range(engine.obs_dim)]
    return [{"part": p, "label": lab} for p, lab in labels]


class WriteLog:
    """The node writes into one lane during one step, in order, with who made them.

    Wraps `nodes.write` on that instance until `close` (every call passes through
    unchanged). A write is by a PU (a tape record id), by an Environment starting a
    new task instance (its `starting` flag is up), or by an Environment action.
    """

    def __init__(self, nodes: Nodes, envs: Dict[str, Environment], lane: int):
        self.nodes, self.envs, self.lane = nodes, envs, lane
        self.entries: List[tuple] = []
        self._write = nodes.write
        nodes.write = self._logged

    def _logged(self, name: str, lanes, value, writer: int = ENV, index=None) -> None:
        self._write(name, lanes, value, writer, index)
        if self.lane in lanes:
            starting = next((e.name for e in self.envs.values() if e.starting), None)
            self.entries.append((name, writer, starting, self.nodes.values[name][self.lane].flatten().tolist()))

    def close(self) -> None:
        """Stop logging (the class's `write` applies again)."""
        del self.nodes.write

    def attributed(self, action: Tuple[Optional[str], str]) -> List[list]:
        """[node, by, who, value] per write: by is `pu` (who: the PU), `new_task` (who: the Environment
        starting a task instance) or `env_action` (who: `<env>.<action>`), given the lane's action."""
        env, name = action
        out = []
        for node, writer, starting, value in self.entries:
            if writer != ENV:
                out.append([node, "pu", name, value])
            elif starting is not None:
                out.append([node, "new_task", starting, value])
            else:
                out.append([node, "env_action", f"{env}.{name}" if env else "environment", value])
        return out


def compact(obj):
    """`obj` with every float to 6 significant digits (a recorded iteration in about 600 bytes, not 1 KB)."""
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: compact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [compact(v) for v in obj]
    return obj


def _difference(submitted: list, target) -> Optional[object]:
    """submitted - target, elementwise (None where they do not match up)."""
    t = target if isinstance(target, list) else [target]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t) or len(t) != len(submitted):
        return None
    err = [s - v for s, v in zip(submitted, t)]
    return err[0] if len(err) == 1 else err


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
        self._log: Optional[WriteLog] = None
        if not cfg.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.functions = pu_functions.plottable(engine)
        meta = {"actions": action_kinds(engine), "lane": cfg.lane, "lanes": engine.lanes,
                "interval": cfg.interval, "window": cfg.window, "log_interval": log_interval,
                "nodes": {n: list(s) for n, s in engine.nodes.shapes.items()},
                "envs": {n: {"inputs": list(e.cfg.inputs), "outputs": list(e.cfg.outputs)}
                         for n, e in engine.envs.items()},
                "cu_inputs": cu_input_labels(engine),
                "functions": [f.to_json() for f in self.functions]}
        write_atomic(self.dir / "meta.json", json_text(meta, indent=1))
        if resume_at is not None:
            self._truncate(resume_at)
        path = self.dir / FUNCTIONS
        self._sampled = {json.loads(ln)["window"] for ln in path.read_text().splitlines() if ln} \
            if path.exists() else set()
        self._functions = AppendFile(path)
        self._usage = AppendFile(self.dir / "actions.csv")
        if self._usage.size() == 0:
            self._usage.append(csv_lines([["iteration", *self.names]], "\n"))

    def _truncate(self, resume_at: int) -> None:
        """Drop what was recorded after the checkpoint at `resume_at` (left by a hard kill)."""
        for path in [*sorted(self.dir.glob("window_*.jsonl")), self.dir / FUNCTIONS]:
            if not path.exists():
                continue
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
        """If this iteration is in a window: snapshot the recorded lane's node values, the CU's input
        vector and each task instance, and log the node writes of the step."""
        if self._recording(engine.iteration):
            lane = self.cfg.lane
            self._before = {n: v[lane].flatten().tolist() for n, v in engine.nodes.values.items()}
            self._cu_input = engine.obs[lane].tolist()
            self._tasks = {n: {"age": int(e.age[lane]), **e.describe(lane)} for n, e in engine.envs.items()}
            self._log = WriteLog(engine.nodes, engine.envs, lane)

    def after_step(self, before: int, engine: Engine, step: Step) -> None:
        """Count the actions; write the recorded lane's iteration if `before` is in a window."""
        if not self.cfg.enabled:
            return
        for a in step.actions.tolist():
            self.counts[a] += 1
        if not self._recording(before):
            return
        log, self._log = self._log, None
        log.close()
        start = before - before % self.cfg.interval
        if self._window != start:
            self._open_window(start)
        if start not in self._sampled:
            self._sampled.add(start)
            line = {"window": start, "iteration": engine.iteration,
                    "pus": pu_functions.sample(engine, self.functions)}
            self._functions.append(json_text(line) + "\n")
        lane = self.cfg.lane
        a = int(step.actions[lane])
        info, learner = engine.last_info, engine.cu.metrics()
        writes = log.attributed(engine.actions[a])
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
            "counts": {n: c[lane] for n, c in engine.nodes.counts.items()},  # accumulating nodes' entries
            "writes": writes,
            "cu_input": self._cu_input,
            "task": self._task_outcomes(engine, step, writes),
        }
        self._file.append(json_text(compact(row)) + "\n")

    def _task_outcomes(self, engine: Engine, step: Step, writes: List[list]) -> Dict[str, dict]:
        """Each Environment's task instance (as it was before the step) with what was submitted into its
        output nodes by a PU this step, the error against its target, and how the instance ended."""
        lane, out = self.cfg.lane, {}
        for name, task in self._tasks.items():
            outputs = engine.envs[name].cfg.outputs
            sent = [w[3] for w in writes if w[1] == "pu" and w[0] in outputs]
            submitted = sent[-1] if sent else None
            ended = None
            for end in step.ended:
                if end.env == name and end.lanes is not None and lane in end.lanes.tolist():
                    k = end.lanes.tolist().index(lane)
                    ended = ("solved" if bool(end.success[k]) else
                             "wrong answer" if bool(end.submitted[k]) else "failed (timeout or invalid action)")
            error = None if submitted is None or task.get("target") is None else _difference(submitted, task["target"])
            value = submitted[0] if submitted is not None and len(submitted) == 1 else submitted
            out[name] = {**task, "submitted": value, "error": error, "ended": ended}
        return out

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
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.cfg.enabled:
            for f in (self._usage, self._functions):
                if not f.closed:
                    f.close()


def load(run_dir: Path) -> dict:
    """A run's trace as plain data: meta, the recorded iterations (in order, each with its `window`), the
    usage rows and the PU functions per window."""
    d = run_dir / TRACE_DIR
    if not (d / "meta.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no {TRACE_DIR}/meta.json (the run was made with trace.enabled=false "
                                "or by an older inet)")
    meta = json.loads((d / "meta.json").read_text())
    steps = []
    for p in sorted(d.glob("window_*.jsonl")):
        window = int(p.stem.split("_")[1])
        steps += [{**json.loads(ln), "window": window} for ln in p.read_text().splitlines() if ln]
    functions = [json.loads(ln) for ln in (d / FUNCTIONS).read_text().splitlines() if ln] \
        if (d / FUNCTIONS).is_file() else []
    usage: List[List[float]] = []
    if (d / "actions.csv").is_file():
        with open(d / "actions.csv", newline="") as f:
            usage = [[float(x) for x in r] for r in list(csv.reader(f))[1:] if r]
    return {"meta": meta, "steps": steps, "usage": usage, "functions": functions}
