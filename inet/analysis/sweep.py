"""Sweep jobs (`inet run -m`): their directory names, and their failures, recorded in the sweep directory.

A job's directory is named from its overrides, one level deep and short:
`multitask.cu_inputs__seed=0` for `experiment=multitask/cu_inputs seed=0`. Keys that
cannot change results (`DIRNAME_NEUTRAL`) are left out; the job's full overrides are in
its `.hydra/overrides.yaml`, which `inet report` reads.

Each failed job writes `failures/<job number>.json` (overrides, run directory, error
and traceback) and rewrites `failures.md`, the list of all of them, under a file
lock, so jobs failing at the same time in parallel workers all appear.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import re
import traceback
from pathlib import Path
from typing import List, Sequence

from ..run.files import json_text, write_atomic

# keys left out of a job's directory name: they change what is shown or how fast, not results
DIRNAME_NEUTRAL = ("progress", "log_interval", "threads", "checkpoint_interval", "resume", "trace")
DIRNAME_MAX = 120  # characters; a longer name is cut and ends with a hash of the whole
FAILURES_DIR = "failures"


def job_dirname(overrides: Sequence[str]) -> str:
    """A sweep job's directory name: the experiment (`/` -> `.`), then `key=value` of the other overrides that
    can change results, sorted, joined by `__`; characters unsafe in a path become `_`."""
    items, experiment = [], ""
    for o in overrides:
        key, _, value = str(o).partition("=")
        key = key.lstrip("+~")
        if key.startswith("hydra") or key.split(".")[0] in DIRNAME_NEUTRAL:
            continue
        if key == "experiment":
            experiment = value.replace("/", ".")
        else:
            items.append(f"{key}={value}")
    name = "__".join(p for p in (experiment, *sorted(items)) if p) or "base"
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", name)
    if len(name) > DIRNAME_MAX:
        name = f"{name[:DIRNAME_MAX - 9]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name
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
