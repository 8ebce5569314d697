"""Sweeps on real Hydra launchers (joblib, submitit_local), a failing job, and `inet report` on them."""
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
TINY = ["iterations=300", "log_interval=100", "progress=false", "trace.interval=100", "trace.window=10"]


class NaNAbove(nn.Module):
    """A custom PU (n0 -> n2) that writes NaN whenever its input exceeds `threshold`: a job that fails at run time."""

    def __init__(self, in_shapes, out_shapes, threshold: float = 2.0):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.threshold = threshold

    def forward(self, x):
        y = self.lin(x)
        return torch.where(x > self.threshold, torch.full_like(y, float("nan")), y)


def inet(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # workers import tests.test_sweep.NaNAbove
    return subprocess.run([sys.executable, "-m", "inet.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def summaries(sweep: Path) -> dict:
    return {p.parent: json.loads(p.read_text()) for p in sweep.rglob("summary.json")}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweeps")
    joblib = inet("run", "-m", "experiment=multitask/base", "seed=0,1", *TINY, f"hydra.sweep.dir={base / 'joblib'}")
    assert joblib.returncode == 0, joblib.stderr
    assert "Joblib.Parallel" in joblib.stdout + joblib.stderr  # the joblib launcher ran it (the default for -m)
    submitit = inet("run", "-m", "hydra/launcher=submitit_local", "experiment=multitask/cu_inputs", "seed=0,1", *TINY,
                    f"hydra.sweep.dir={base / 'submitit'}")
    assert submitit.returncode == 0, submitit.stderr
    assert "Submitit 'local' sweep" in submitit.stdout + submitit.stderr
    failing = inet("run", "-m", "experiment=multitask/base", "pus.pu1.kind=custom",
                   "+pus.pu1._target_=tests.test_sweep.NaNAbove", "+pus.pu1.params.threshold=2.0,0.3", *TINY,
                   f"hydra.sweep.dir={base / 'failing'}")
    return base, failing


def test_sweep_directories_are_named_from_the_overrides(sweeps):
    """One level, short, without result-neutral keys; the full overrides in the job's .hydra/overrides.yaml."""
    base, _ = sweeps
    for sweep, exp in (("joblib", "base"), ("submitit", "cu_inputs")):
        runs = summaries(base / sweep)
        assert len(runs) == 2
        assert sorted(s["seed"] for s in runs.values()) == [0, 1]
        for run_dir, s in runs.items():
            rel = run_dir.relative_to(base / sweep).as_posix()
            assert rel == f"multitask.{exp}__iterations=300__seed={s['seed']}"
            assert s["iterations"] == 300 and s["name"] == f"multitask/{exp}"
            overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
            assert f"experiment=multitask/{exp}" in overrides and "progress=False" in overrides


def test_a_failing_job_is_recorded_and_the_sweep_exits_non_zero(sweeps):
    base, proc = sweeps
    sweep = base / "failing"
    assert proc.returncode == 1
    assert "1 job(s) of the sweep failed: 1 (" in proc.stderr and str(sweep / "failures.md") in proc.stderr
    done = summaries(sweep)
    assert len(done) == 1 and next(iter(done.values()))["iterations"] == 300  # the other job finished
    records = [json.loads(p.read_text()) for p in (sweep / "failures").glob("*.json")]
    assert len(records) == 1
    assert "+pus.pu1.params.threshold=0.3" in records[0]["overrides"]
    assert records[0]["error"].startswith("NonFiniteError:") and "pu1" in records[0]["error"]
    md = (sweep / "failures.md").read_text()
    assert "threshold=0.3" in md and "NonFiniteError" in md


def test_report_matches_the_runs_own_summaries(sweeps, tmp_path):
    base, _ = sweeps
    out = tmp_path / "report"
    proc = inet("report", str(base / "joblib"), str(base / "submitit"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out / "report.csv").set_index("experiment")
    assert sorted(df.index) == ["multitask/base", "multitask/cu_inputs"]
    for sweep, exp in (("joblib", "multitask/base"), ("submitit", "multitask/cu_inputs")):
        row = df.loc[exp]
        runs = list(summaries(base / sweep).values())
        assert row["seeds"] == 2 and row["incomplete"] == 0
        for kpi in ("task_success", "reward_per_iteration", "reward_per_task", "optimal_route_rate"):
            xs = [r[kpi] for r in runs]
            mean, std = statistics.mean(xs), statistics.stdev(xs)
            assert row[f"{kpi}_mean"] == pytest.approx(mean, rel=1e-9)
            assert row[f"{kpi}_std"] == pytest.approx(std, rel=1e-9, abs=1e-12)
            half = 12.706 * std / math.sqrt(2)  # Student t, 1 degree of freedom
            assert row[f"{kpi}_ci95_low"] == pytest.approx(mean - half, rel=1e-6, abs=1e-9)
            assert row[f"{kpi}_ci95_high"] == pytest.approx(mean + half, rel=1e-6, abs=1e-9)
        assert row["converged"] == sum(r["iterations_to_converge"] is not None for r in runs)
    assert df.loc["multitask/cu_inputs", "paper"].startswith("~10k")
    md = (out / "report.md").read_text()
    ts = statistics.mean(r["task_success"] for r in summaries(base / "joblib").values())
    assert f"`multitask/base (iterations=300, log_interval=100, trace.interval=100, trace.window=10)` | 2 | {ts:.3f}" in md
    assert "Nothing: every run found is complete" in md
    for name in ("task_success", "reward_per_iteration", "iterations_to_converge"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5_000


def test_report_on_a_failed_sweep_says_what_is_missing(sweeps, tmp_path):
    base, _ = sweeps
    proc = inet("report", str(base / "failing"), "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "report.md").read_text()
    missing = md.split("## Missing", 1)[1].split("##", 1)[0]
    assert "job 1 failed: NonFiniteError" in missing and "threshold=0.3" in missing
    df = pd.read_csv(tmp_path / "report.csv")
    assert sorted(df["seeds"]) == [0, 1] and sorted(df["incomplete"]) == [0, 1]


def test_report_refuses_a_directory_without_runs(tmp_path):
    proc = inet("report", str(tmp_path))
    assert proc.returncode == 2
    assert "no runs under" in proc.stderr and str(tmp_path) in proc.stderr


def test_report_lists_the_reduce_lengths_of_each_seed(tmp_path):
    reduce = ["experiment=reduce/constant", "iterations=600", "log_interval=200", "progress=false",
              "evaluation.interval=300", "evaluation.instances=20", "evaluation.lengths=[1,2,4]"]
    for seed in (0, 1):
        proc = inet("run", *reduce, f"seed={seed}", f"hydra.run.dir={tmp_path / 'runs' / f'seed{seed}'}")
        assert proc.returncode == 0, proc.stderr
    proc = inet("report", str(tmp_path / "runs"), "-o", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads((tmp_path / "runs" / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)]
    lengths = (tmp_path / "report" / "report.md").read_text().split("## Lengths (reduce)", 1)[1].split("##", 1)[0]
    row = next(line for line in lengths.splitlines() if line.startswith("| `reduce/constant"))
    for kpi in ("max_length_reached", "max_length_reliable"):
        values = [r[kpi] for r in runs]
        assert f"{statistics.mean(values):.1f} ({values[0]:g}/{values[1]:g})" in row
    df = pd.read_csv(tmp_path / "report" / "report.csv")
    assert df.loc[0, "max_length_reached_mean"] == pytest.approx(statistics.mean(r["max_length_reached"] for r in runs))
