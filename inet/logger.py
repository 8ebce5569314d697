"""Run outputs that grow during a run: TensorBoard events (tb/) and kpis.csv, one row per log interval."""
from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Dict, List, Optional

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from .files import AppendFile, OutputWriteError, csv_lines, write_atomic

# metric -> TensorBoard tag; every tag lives under one of a few stable prefixes.
TAGS = {
    "reward_per_iteration": "charts/reward_per_iteration",
    "reward_per_task": "charts/reward_per_task",
    "task_success": "charts/task_success",
    "optimal_route_rate": "charts/optimal_route_rate",
    "correct_pu_rate": "charts/correct_pu_rate",
    "td_loss": "losses/td_loss",
    "pu_loss": "losses/pu_loss",
    "epsilon": "rollout/epsilon",
    "tasks": "rollout/tasks",
    "tape_records": "rollout/tape_records",
    "cu_updates": "rollout/cu_updates",
    "replay_ratio": "rollout/replay_ratio",
    "guarded_updates": "rollout/guarded_updates",
    "nonfinite_skipped": "rollout/nonfinite_skipped",
    "iterations_per_second": "time/iterations_per_second",
    "curriculum_length": "charts/curriculum_length",
    "max_length_reached": "charts/max_length_reached",
    "max_length_reliable": "eval/max_length_reliable",
    "max_length_reliable_prefix": "eval/max_length_reliable_prefix",
    "eval_extrapolation_success": "eval/extrapolation_success",
}

# Final KPIs shown as metrics in TensorBoard's HParams tab (tags of this run's own scalars).
HPARAM_METRICS = ("charts/task_success", "charts/reward_per_iteration", "charts/reward_per_task",
                  "charts/optimal_route_rate", "charts/iterations_to_converge")

# The custom-scalars dashboard of every run: related curves on one chart.
LAYOUT = {
    "KPIs": {
        "task success and route": ["Multiline", ["charts/task_success", "charts/optimal_route_rate",
                                                 "charts/correct_pu_rate"]],
        "reward": ["Multiline", ["charts/reward_per_iteration", "charts/reward_per_task"]],
    },
    "Learning": {
        "losses": ["Multiline", ["losses/td_loss", "losses/pu_loss"]],
        "exploration": ["Multiline", ["rollout/epsilon"]],
        "tape and guards": ["Multiline", ["rollout/tape_records", "rollout/guarded_updates",
                                          "rollout/nonfinite_skipped"]],
    },
}


def tag(metric: str) -> str:
    """The TensorBoard tag of a metric: `eval_success_L8` -> `eval/success_L8`, unknown ones under `charts/`."""
    if metric in TAGS:
        return TAGS[metric]
    return f"eval/{metric[5:]}" if metric.startswith("eval_") else f"charts/{metric}"


class RunLogger:
    """Writes each metrics row to TensorBoard and kpis.csv (columns fixed by the first row).

    Wall-clock metrics (tags under `time/`) go to TensorBoard only, so kpis.csv is
    a pure function of the config and seed. With `resume_at=k` (a resumed run whose
    checkpoint is at iteration k), kpis.csv keeps its rows up to k and is appended
    to, and TensorBoard purges its events after k, so no step repeats or is missing.

    A new run also writes, into its own event file (no extra TensorBoard runs): the
    config as text, `hparams` (flat dotted keys) with the final KPIs as HParams
    metrics, and the custom-scalars layout; `finish` adds the final
    `iterations_to_converge` and the KPI plot as a figure.
    """

    def __init__(self, run_dir: Path, config_yaml: str, resume_at: Optional[int] = None,
                 hparams: Optional[Dict[str, object]] = None):
        self._hook = threading.excepthook
        threading.excepthook = self._writer_thread_failed
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=None if resume_at is None else resume_at + 1)
        self.csv_path = run_dir / "kpis.csv"
        self._file = None
        self._columns: List[str] = []
        if resume_at is None:
            self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
            if hparams:
                self._write_hparams(hparams)
            self.writer.add_custom_scalars(LAYOUT)
        elif self.csv_path.exists():
            self._reopen(resume_at)

    def _reopen(self, resume_at: int) -> None:
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0], *(r for r in rows[1:] if r and int(r[0]) <= resume_at)]
        write_atomic(self.csv_path, csv_lines(kept))
        self._columns = rows[0]
        self._file = AppendFile(self.csv_path)

    def _write_hparams(self, hparams: Dict[str, object]) -> None:
        """The HParams session of this run, in this run's own event file (add_hparams would start a new run)."""
        metrics = {tag: float("nan") for tag in HPARAM_METRICS}
        for summary in hparams_summary(hparams, metrics):
            self.writer.file_writer.add_summary(summary)

    def finish(self, iteration: int, summary: Dict[str, object], figures: Dict[str, Figure]) -> None:
        """Log the final `iterations_to_converge` (when converged) and the run's plots (`plots/<name>`), then close."""
        converged = summary.get("iterations_to_converge")
        if converged is not None:
            self.writer.add_scalar("charts/iterations_to_converge", float(converged), iteration)
        for name, figure in figures.items():
            self.writer.add_figure(f"plots/{name}", figure, iteration, close=True)
        self.close()

    def log(self, iteration: int, row: Dict[str, float]) -> None:
        """One row: every metric to TensorBoard (flushed, so a failed write shows now), all but
        wall-clock ones to kpis.csv (whole lines only, see inet/files.py)."""
        try:
            for k, v in row.items():
                self.writer.add_scalar(tag(k), v, iteration)
            self.writer.flush()
        except OSError as e:
            raise OutputWriteError(Path(self.writer.log_dir), e) from None
        row = {k: v for k, v in row.items() if not tag(k).startswith("time/")}
        lines = []
        if self._file is None:
            self._columns = ["iteration", *row]
            self._file = AppendFile(self.csv_path, truncate=True)
            lines.append(self._columns)
        lines.append([iteration, *(row.get(k, float("nan")) for k in self._columns[1:])])
        self._file.append(csv_lines(lines))

    def _writer_thread_failed(self, args: threading.ExceptHookArgs) -> None:
        """TensorBoard's writer thread re-raises a failed write in the next `log`, where the runner reports
        it in one line; its own traceback on stderr would only repeat it."""
        if not (isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard")):
            self._hook(args)

    def close(self) -> None:
        threading.excepthook = self._hook
        self.writer.close()
        if self._file is not None:
            self._file.close()

