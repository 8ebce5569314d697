"""The benchmark's instruments run: the reference loop, the bench table and the phase profile (no timing asserts)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import bench  # noqa: E402
from reference import Reference  # noqa: E402


@pytest.mark.parametrize("lanes", [1, 4])
def test_reference_loop_runs_with_finite_losses(lanes: int) -> None:
    """Past learning_starts the reference updates the CU and the PUs, and every loss is finite."""
    cfg = bench.case_config("multitask/cu_inputs", lanes, 1, "cpu")
    cfg.cu.learning_starts = 8
    ref = Reference(cfg)
    before = [p.detach().clone() for p in ref.pu_params + ref.q]
    while ref.iteration < 60:
        ref.step()
    assert math.isfinite(float(ref.td_loss)) and float(ref.td_loss) > 0
    assert math.isfinite(float(ref.node_loss))
    assert ref.size == ref.iteration
    after = ref.pu_params + ref.q
    assert all(not torch.equal(a, b) for a, b in zip(before[:2], after[:2]))  # pu0 learns from the CU gradient
    assert not torch.equal(before[-1], after[-1])  # the CU's head
    assert float(ref.tasks) > 0


def test_reference_refuses_other_wiring() -> None:
    cfg = bench.case_config("multitask/cu_inputs", 1, 1, "cpu")
    cfg.pus["pu1"].inputs = ["n1"]
    with pytest.raises(ValueError, match="multitask"):
        Reference(cfg)


def test_bench_table_has_the_ratio() -> None:
    row = bench.bench("multitask/cu_inputs", 2, 2, "cpu", seconds=0.05, rounds=1, threads=1)
    assert row["inet"] > 0 and row["reference"] > 0
    assert row["ratio"] == pytest.approx(row["inet"] / row["reference"])
    text = bench.table([row], "test")
    assert "| multitask/cu_inputs | 2 | 2 | 1 | cpu |" in text and "inet / reference" in text


def test_profile_prints_every_phase() -> None:
    text = bench.profile("multitask/cu_inputs", 1, 1, "cpu", seconds=0.2, threads=1)
    for name, _, _ in bench.PHASES:
        assert f"| {name} |" in text
    assert f"| {bench.OTHER} |" in text


def test_profile_names_a_missing_method() -> None:
    engine = bench.Engine(bench.case_config("multitask/cu_inputs", 1, 1, "cpu"))
    bench.PHASES.append(("gone", "tape", "no_such_method"))
    try:
        with pytest.raises(SystemExit, match="no_such_method"):
            bench.instrument(engine, bench.PhaseTimer("cpu"))
    finally:
        bench.PHASES.pop()
