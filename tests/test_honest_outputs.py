"""Outputs that do not mislead: strict JSON everywhere, null for what was never measured, and kpis.csv
columns fixed by the declared KPIs, not by what the first row happened to hold."""
import csv
import json
from pathlib import Path

import pytest

from inet.compose import compose
from inet.run.files import json_text
from inet.run.runner import run
from inet.tasks import kpi_registry

TINY = ["iterations=200", "log_interval=100", "progress=false", "trace.interval=100", "trace.window=10"]


def strict(text: str):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def reduce_run(tmp_path_factory) -> Path:
    """A reduce run whose first evaluation would come after its end: the evaluation KPIs are never measured."""
    out = tmp_path_factory.mktemp("honest") / "run"
    run(compose(["experiment=reduce/or", *TINY, "evaluation.interval=100000"]), out, "config: test\n")
    return out


def test_every_json_file_is_strict_json(reduce_run):
    paths = [p for p in reduce_run.rglob("*.json")] + [p for p in reduce_run.rglob("*.jsonl")]
    assert {p.name for p in paths} >= {"summary.json", "kpis.json", "meta.json"}
    for p in paths:
        for doc in (p.read_text().splitlines() if p.suffix == ".jsonl" else [p.read_text()]):
            strict(doc)


def test_kpis_never_measured_are_null_not_0(reduce_run):
    summary = strict((reduce_run / "summary.json").read_text())
    for key in ("max_length_reliable", "max_length_reliable_prefix", "best_max_length_reliable", "evaluated_at"):
        assert key in summary and summary[key] is None, (key, summary.get(key))
    assert isinstance(summary["task_success"], float)  # measured ones keep their values


def test_json_text_writes_null_for_nan_and_infinity():
    assert json_text({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}}) == \
        '{"a": null, "b": [1.0, null], "c": {"d": null}}'


def header(run_dir: Path) -> list:
    with open(run_dir / "kpis.csv", newline="") as f:
        return next(csv.reader(f))


def test_kpis_csv_has_the_declared_columns_in_every_run(tmp_path):
    """A run whose learner has not started learning (no TD loss yet) has the columns of one that has."""
    late, early = tmp_path / "late", tmp_path / "early"
    run(compose(["experiment=multitask/base", *TINY, "cu.learning_starts=1000"]), late, "config: test\n")
    run(compose(["experiment=multitask/base", *TINY, "cu.learning_starts=0"]), early, "config: test\n")
    declared = [k.name for k in kpi_registry.load(late) if k.curve and k.tag_group != "time"]
    assert header(late) == header(early)
    assert header(late)[0] == "iteration" and set(declared) <= set(header(late))


def test_the_logger_writes_every_declared_column_even_one_the_first_row_lacks(tmp_path):
    from inet.run.logger import RunLogger
    from inet.tasks.kpi_registry import KPI

    kpis = [KPI("task_success", "x"), KPI("late", "measured from later rows on"), KPI("final", "x", summary="end")]
    logger = RunLogger(tmp_path, "config: test\n", kpis, [KPI("speed", "x", tag_group="time")])
    logger.log(1, {"task_success": 0.5, "speed": 10.0})
    logger.log(2, {"task_success": 0.6, "late": 1.0, "speed": 10.0})
    logger.close()
    with open(tmp_path / "kpis.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["iteration", "task_success", "late"]  # not `final` (end only), not `speed` (wall clock)
    assert rows[2] == ["2", "0.6", "1.0"]
