"""`inet reproduce` (`make reproduce`): the paper's experiment set as sweeps, then one report.

multitask: all four variants x seeds 0-4; reduce: every `reduce/*` experiment x seeds 0-2;
each at its configured length. The sweeps go through `inet run -m` (the joblib launcher,
one job per core); a failed job does not stop the rest, the report lists it and the
command exits 1 (2 when the report cannot be written). It needs only the installed
package. Every option defaults to an environment variable, which `make reproduce` sets.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

from .compose import group_options


def parse(argv: Sequence[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="inet reproduce", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=env("REPRO_DIR", "outputs/reproduce"), help="output directory (REPRO_DIR)")
    p.add_argument("--seeds", default=env("REPRO_SEEDS", "0,1,2,3,4"), help="multitask seeds (REPRO_SEEDS)")
    p.add_argument("--reduce-seeds", default=env("REPRO_REDUCE_SEEDS", "0,1,2"),
                   help="reduce seeds (REPRO_REDUCE_SEEDS)")
    p.add_argument("--long", default=env("REPRO_LONG", ""),
                   help="overrides of multitask/base and training_wheels, e.g. iterations=150000 (REPRO_LONG)")
    p.add_argument("--reduce", default=env("REPRO_REDUCE", ""), help="overrides of reduce/* (REPRO_REDUCE)")
    p.add_argument("--args", default=env("REPRO_ARGS", ""), help="overrides of every job (REPRO_ARGS)")
    p.add_argument("--dry-run", action="store_true", help="print the sweeps' commands, run nothing")
    return p.parse_args(argv)


def sweeps(a: argparse.Namespace) -> List[List[str]]:
    """The `inet run -m` argument lists, one per sweep."""
    long, reduce, extra = shlex.split(a.long), shlex.split(a.reduce), shlex.split(a.args)
    out = Path(a.out)
    jobs = [["experiment=multitask/base,multitask/training_wheels", f"seed={a.seeds}", "progress=false", *long,
             *extra, f"hydra.sweep.dir={out / 'multitask_long'}"],
            ["experiment=multitask/cu_inputs,multitask/pretrained", f"seed={a.seeds}", "progress=false", *extra,
             f"hydra.sweep.dir={out / 'multitask'}"]]
    reduce_experiments = [e for e in group_options("experiment") if e.startswith("reduce/")]
    if reduce_experiments:
        jobs.append([f"experiment={','.join(reduce_experiments)}", f"seed={a.reduce_seeds}", "progress=false",
                     *reduce, *extra, f"hydra.sweep.dir={out / 'reduce'}"])
    return jobs


def run_set(jobs: List[List[str]], out: Path, description: str, dry_run: bool = False) -> int:
    """Run the `inet run -m` sweeps `jobs` into `out` (replacing it), note the wall time with `description`,
    and write one report over all of them; returns 0, 1 (a job failed) or 2 (no report). `dry_run`: print
    the sweeps' commands instead."""
    from .analysis.report import ReportError, write_report

    if dry_run:
        print("\n".join(shlex.join(["inet", "run", "-m", *job]) for job in jobs))
        return 0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.time()
    status = 0
    for job in jobs:
        if subprocess.run([sys.executable, "-m", "inet.cli", "run", "-m", *job]).returncode != 0:
            status = 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = f"wall time: {time.time() - start:.0f} s on {cores} cores ({description})"
    print(line)
    (out / "wall_time.txt").write_text(line + "\n")
    try:
        print(f"report: {write_report([out], out)}")
    except ReportError as e:
        print(f"inet: report: {e}", file=sys.stderr)
        return 2
    return status


def main(argv: Sequence[str]) -> int:
    """Run the set into --out (replacing it) and write its report; returns the exit status."""
    a = parse(argv)
    return run_set(sweeps(a), Path(a.out), f"seeds {a.seeds}; long variants: {a.long or 'as configured'}; "
                   f"reduce: {a.reduce or 'as configured'}; extra: {a.args or 'none'}", a.dry_run)
