"""Progress of a run: a bar in a terminal, one plain line per `log_interval` elsewhere, and always `run.log`.

A batch job's log is a file, where tqdm's `\\r`-joined frames make one unreadable
line; there each log interval gets a line instead (iteration, it/s, ETA, the main
KPIs). The run directory's `run.log` holds the same lines (then the final KPI table),
whatever the console is, so a run can be followed with `tail -f`.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, TextIO

from tqdm import tqdm

from .files import AppendFile

FILENAME = "run.log"


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _number(v: object) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:.3f}"
    return "-"


def progress_line(iteration: int, total: int, rate: float, headline: Dict[str, object]) -> str:
    """`iteration 2000/20000 (10%)  412 it/s  ETA 0:00:43  task_success 0.812 ...`."""
    eta = (total - iteration) / rate if rate > 0 else float("inf")
    kpis = "  ".join(f"{k} {_number(v)}" for k, v in headline.items())
    return (f"iteration {iteration}/{total} ({100 * iteration // total}%)  {rate:.0f} it/s  ETA {_eta(eta)}"
            + (f"  {kpis}" if kpis else ""))


class Progress:
    """Shows a run's progress on `stream` (a bar if it is a terminal, else lines; nothing with `show=False`)
    and appends every line to `run_dir/run.log`."""

    def __init__(self, run_dir: Path, total: int, initial: int, show: bool, stream: Optional[TextIO] = None):
        self.total, self.initial = total, initial
        self.stream = stream or sys.stderr
        self.tty = show and self.stream.isatty()
        self.lines = show and not self.tty
        self.log = AppendFile(Path(run_dir) / FILENAME)
        sized = self.tty and os.get_terminal_size(self.stream.fileno()).columns > 0  # a bare pty has 0 columns
        self.bar = tqdm(total=total, initial=initial, unit="it", disable=not self.tty, dynamic_ncols=sized,
                        ncols=None if sized else 100, nrows=None if sized else 24, mininterval=0.5, file=self.stream)
        self.start = time.perf_counter()

    def update(self, iteration: int, headline: Dict[str, object]) -> None:
        """Record reaching `iteration` with these KPI values."""
        elapsed = time.perf_counter() - self.start
        rate = (iteration - self.initial) / elapsed if elapsed > 0 else 0.0
        line = progress_line(iteration, self.total, rate, headline)
        self.log.append(line + "\n")
        if self.tty:
            self.bar.update(iteration - self.bar.n)
            self.bar.set_postfix({k: _number(v) for k, v in headline.items()})
        elif self.lines:
            print(line, file=self.stream, flush=True)

    def write(self, text: str) -> None:
        """Append text (the final KPI table, say) to run.log only."""
        self.log.append(text if text.endswith("\n") else text + "\n")

    def close(self) -> None:
        self.bar.close()
        if not self.log.closed:
            self.log.close()
