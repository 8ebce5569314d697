"""Run outputs that grow during a run: TensorBoard events (tb/) and kpis.csv, one row per log interval."""
from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from torch.utils.tensorboard.summary import hparams as hparams_summary

from ..tasks.kpi_registry import KPI, LEARNING, PUS, panels
from .alarms import PANEL as ALARMS_PANEL, TEXT_TAG as ALARMS_TAG
from .files import AppendFile, OutputWriteError, csv_lines, write_atomic

KPI_CATEGORY = "KPIs"  # the custom-scalars category of the task KPIs
# the diagnostics' categories, by their panels' figure
CATEGORIES = {LEARNING: "Learning", PUS: "PUs", ALARMS_PANEL.figure: "Alarms"}


def _charts(by_panel: Dict) -> Dict[str, list]:
    """One multiline chart per panel, titled as the panel."""
    return {p.title: ["Multiline", [k.tag for k in ks if k.tag]] for p, ks in by_panel.items()}


def layout(kpis: Sequence[KPI], diagnostics: Sequence[KPI]) -> Dict[str, Dict[str, list]]:
    """The custom-scalars dashboard: the task KPIs' panels in one category (KPIs); the diagnostics' in one
    category per figure (Learning: losses, Q-values, learning rates...; PUs: per-PU usage, loss and gradient
    norm; Alarms: the subjects in alarm per kind)."""
    out: Dict[str, Dict[str, list]] = {}
    kpi_charts = {t: c for by_panel in panels(kpis).values() for t, c in _charts(by_panel).items()}
    if kpi_charts:
        out[KPI_CATEGORY] = kpi_charts
    for figure, by_panel in panels(diagnostics).items():
        out.setdefault(CATEGORIES.get(figure, figure), {}).update(_charts(by_panel))
    return out


def _type_bools(summary: Summary, bools: Dict[str, bool]) -> None:
    """Type the boolean hparams as booleans in one HParams summary (torch's `hparams` types them as numbers)."""
    meta = summary.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(meta.content)
    for info in data.experiment.hparam_infos:
        if info.name in bools:
            info.type = api_pb2.DATA_TYPE_BOOL
    for name, value in data.session_start_info.hparams.items():
        if name in bools:
            value.bool_value = bools[name]
    meta.content = data.SerializeToString()


def hparam_metrics(kpis: Sequence[KPI]) -> List[str]:
    """The tags shown as HParams metrics: final KPIs (in summary.json) with a better direction."""
    return [k.tag for k in kpis if k.tag and k.summary and k.better]


class RunLogger:
    """Writes each metrics row to TensorBoard and kpis.csv (a column per declared per-interval metric, the
    same for every run of an experiment; a metric not yet measured is nan).

    Every metric must be declared: a task KPI in `kpis` (Engine.declared_kpis) or a
    diagnostic in `diagnostics` (Engine.diagnostics); its declaration gives its tag. Wall-clock metrics (tag
    group `time`) go to TensorBoard only, so kpis.csv is
    a pure function of the config and seed. With `resume_at=k` (a resumed run whose
    checkpoint is at iteration k), kpis.csv keeps its rows up to k and is appended
    to, and TensorBoard purges its events after k, so no step repeats or is missing.

    A new run also writes, into its own event file (no extra TensorBoard runs): the
    config as text, `hparams` (flat dotted keys) with the final KPIs as HParams
    metrics, and the custom-scalars layout; `finish` adds the KPIs only the end
    has (summary "end", where measured) and the run's plots as figures.
    """

    def __init__(self, run_dir: Path, config_yaml: str, kpis: Sequence[KPI], diagnostics: Sequence[KPI],
                 resume_at: Optional[int] = None, hparams: Optional[Dict[str, object]] = None):
        self.kpis, self.diagnostics = list(kpis), list(diagnostics)
        self.declared = {k.name: k for k in (*self.kpis, *self.diagnostics)}
        # kpis.csv's columns: every declared per-interval metric, whether or not this run has measured it yet
        self.csv_columns = [k.name for k in self.declared.values() if k.curve and k.tag_group != "time"]
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
            self.writer.add_custom_scalars(layout(self.kpis, self.diagnostics))
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
        metrics = {tag: float("nan") for tag in hparam_metrics(self.kpis)}
        bools = {k: v for k, v in hparams.items() if isinstance(v, bool)}
        for summary in hparams_summary(hparams, metrics):
            _type_bools(summary, bools)
            self.writer.file_writer.add_summary(summary)

    def finish(self, iteration: int, summary: Dict[str, object], figures: Dict[str, Figure]) -> None:
        """Log the numeric KPIs only the end has (those measured) and the run's plots (`plots/<name>`), then close."""
        for k in self.kpis:
            value = summary.get(k.name)
            if k.summary == "end" and k.tag and isinstance(value, (int, float)):
                self.writer.add_scalar(k.tag, float(value), iteration)
        for name, figure in figures.items():
            self.writer.add_figure(f"plots/{name}", figure, iteration, close=True)
        self.close()

    def log(self, iteration: int, row: Dict[str, float], alarms: Sequence[str] = ()) -> None:
        """One row: every metric to TensorBoard (flushed, so a failed write shows now), all but
        wall-clock ones to kpis.csv (whole lines only, see inet/run/files.py); the sentences of the
        alarms raised at this row (inet/run/alarms.py) to TensorBoard's text `alarms`."""
        undeclared = [k for k in row if k not in self.declared]
        if undeclared:
            raise ValueError(f"metric '{undeclared[0]}' is not declared: declare it in its task's `kpis` "
                             "(inet/tasks/env.py), its learner's `kpis` (inet/cu/) or DIAGNOSTICS (inet/tasks/kpi_registry.py)")
        try:
            for k, v in row.items():
                if self.declared[k].tag:
                    self.writer.add_scalar(self.declared[k].tag, v, iteration)
            if alarms:
                self.writer.add_text(ALARMS_TAG, "\n".join(f"- {a}" for a in alarms), iteration)
            self.writer.flush()
        except OSError as e:
            raise OutputWriteError(Path(self.writer.log_dir), e) from None
        row = {k: v for k, v in row.items() if self.declared[k].tag_group != "time"}
        lines = []
        if self._file is None:
            self._columns = ["iteration", *self.csv_columns, *(k for k in row if k not in self.csv_columns)]
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

