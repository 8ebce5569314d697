"""Failures of sweep jobs (`inet run -m`), recorded in the sweep directory.

Each failed job writes `failures/<job number>.json` (overrides, run directory, error
and traceback) and rewrites `failures.md`, the list of all of them, under a file
lock, so jobs failing at the same time in parallel workers all appear.
"""
from __future__ import annotations

import fcntl
import json
import traceback
from pathlib import Path
from typing import List

from ..run.files import json_text, write_atomic

FAILURES_DIR = "failures"
FAILURES_MD = "failures.md"


def record_failure(sweep_dir: Path, job_num: int, overrides: List[str], run_dir: Path, error: BaseException) -> Path:
    """Write the job's failure record and refresh failures.md; return the path of failures.md."""
    d = sweep_dir / FAILURES_DIR
    d.mkdir(parents=True, exist_ok=True)
    record = {"job": job_num, "overrides": overrides, "run_dir": str(run_dir),
              "error": f"{type(error).__name__}: {error}",
              "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__))}
    write_atomic(d / f"{job_num}.json", json_text(record, indent=2))
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_atomic(sweep_dir / FAILURES_MD, failures_markdown(load_failures(sweep_dir)))
    return sweep_dir / FAILURES_MD


def load_failures(sweep_dir: Path) -> List[dict]:
    """The failure records of a sweep directory, by job number."""
    paths = (sweep_dir / FAILURES_DIR).glob("*.json")
    return sorted((json.loads(p.read_text()) for p in paths), key=lambda r: r["job"])


def failures_markdown(records: List[dict]) -> str:
    lines = ["# Failed jobs", "", "| job | overrides | error | run directory |", "|---|---|---|---|"]
    for r in records:
        err = r["error"].splitlines()[0].replace("|", "\\|") if r["error"] else ""
        lines.append(f"| {r['job']} | `{' '.join(r['overrides'])}` | {err} | {r['run_dir']} |")
    return "\n".join(lines) + "\n"
