"""Progress: plain lines (no `\\r`) when the console is a file, a bar in a terminal, the same lines in run.log."""
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from inet.run.progress import progress_line

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["experiment=multitask/base", "iterations=600", "log_interval=200", "trace.interval=200", "trace.window=10"]
LINE = re.compile(r"^iteration (\d+)/600 \(\d+%\)  \d+ it/s  ETA \d+:\d\d:\d\d  task_success \d\.\d{3}  "
                  r"reward_per_iteration -?\d\.\d{3}")


def run_to(console, out: Path, *extra: str) -> int:
    return subprocess.run([sys.executable, "-m", "inet.cli", "run", *ARGS, *extra, f"hydra.run.dir={out}"],
                          stdout=console, stderr=console, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode


def test_a_batch_job_logs_one_plain_line_per_interval_and_run_log_holds_them(tmp_path):
    log = tmp_path / "job.out"
    with open(log, "w") as f:
        assert run_to(f, tmp_path / "run") == 0
    text = log.read_text()
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("iteration ")]
    assert [LINE.match(ln).group(1) for ln in lines] == ["200", "400", "600"], text
    run_log = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert run_log[:3] == lines  # the same lines
    assert any(ln.startswith("task_success ") for ln in run_log[3:])  # then the final KPI table
    assert not list((tmp_path / "run").glob("*.log"))[1:], "only run.log: no empty Hydra job log beside it"


def test_progress_false_keeps_the_console_quiet_but_not_run_log(tmp_path):
    log = tmp_path / "job.out"
    with open(log, "w") as f:
        assert run_to(f, tmp_path / "run", "progress=false") == 0
    assert not re.search(r"^iteration ", log.read_text(), re.M)
    assert len([ln for ln in (tmp_path / "run" / "run.log").read_text().splitlines() if LINE.match(ln)]) == 3


def test_a_terminal_gets_a_progress_bar(tmp_path):
    controller, terminal = pty.openpty()
    try:
        assert run_to(terminal, tmp_path / "run") == 0
        os.close(terminal)
        out = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: all read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(controller)
    text = out.decode(errors="replace")
    assert "\r" in text and "600/600" in text and "it/s" in text and "task_success=" in text
    assert not re.search(r"^iteration \d+/600", text, re.M)  # the bar, not the lines


def test_progress_line_marks_unmeasured_kpis_and_unknown_eta():
    line = progress_line(0, 100, 0.0, {"task_success": float("nan"), "tasks": None})
    assert line == "iteration 0/100 (0%)  0 it/s  ETA ?  task_success -  tasks -"
