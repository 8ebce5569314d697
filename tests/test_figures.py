"""Report and run figures fit for a paper (issue 19 item 6), on synthetic runs: PNG at 300 dpi plus SVG,
worded axis labels with units, rates on [0, 1], legends outside the axes, labelled bands, n<3 flagged,
one file per reproduced paper figure."""
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from inet.analysis import report
from inet.run.plots import DPI, plot_run
from inet.tasks import kpi_registry
from inet.tasks.multitask import Multitask

KPIS = kpi_registry.declared_kpis(Multitask)
SNAKE = re.compile(r"(?<![/\w])[a-z]+_[a-z_]+\b")  # a KPI name; an experiment name `multitask/cu_inputs` may stay


def fake_run(root: Path, name: str, seed: int) -> Path:
    """A run directory as `inet run` leaves it, with made-up KPI curves."""
    run = root / f"{name.replace('/', '.')}__seed={seed}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"name": name, "seed": seed}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"experiment={name}", f"seed={seed}"]))
    (run / kpi_registry.FILENAME).write_text(kpi_registry.dumps(KPIS))
    rng = np.random.default_rng(seed)
    it = np.arange(100, 1100, 100)
    success = np.clip(it / 1000 + rng.normal(0, 0.05, len(it)), 0, 1)
    df = pd.DataFrame({"iteration": it, "task_success": success, "optimal_route_rate": success / 2,
                       "correct_pu_rate": success, "reward_per_iteration": success - 0.5,
                       "reward_per_task": 2 * success - 1, "tasks": it // 3})
    df.to_csv(run / "kpis.csv", index=False)
    last = df.iloc[-1].to_dict()
    (run / "summary.json").write_text(json.dumps({**{k.name: last.get(k.name) for k in KPIS if k.summary},
                                                  "iterations": 1000, "iterations_per_second": 1.0,
                                                  "wall_seconds": 1.0}))
    return run


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in range(5):
        fake_run(root, "multitask/base", seed)
    for seed in range(2):
        fake_run(root, "multitask/cu_inputs", seed)
    out = root / "report"
    return root, out, report.write_report([root], out).read_text()


def png_dpi(path: Path) -> float:
    with Image.open(path) as img:
        return img.info["dpi"][0]


def test_every_report_figure_is_a_300_dpi_png_and_an_svg(reported):
    _, out, _ = reported
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in pngs} >= {"fig09_multitask_base", "fig10_multitask_cu_inputs", "task_success",
                                      "iterations_to_converge"}
    for png in pngs:
        assert png_dpi(png) == pytest.approx(DPI, abs=0.5)
        assert png.with_suffix(".svg").stat().st_size > 5_000


def test_the_table_gives_no_interval_from_fewer_than_three_seeds(reported):
    _, _, md = reported
    table = md.split("## KPIs", 1)[1].split("##", 1)[0]
    base = next(line for line in table.splitlines() if line.startswith("| `multitask/base`"))
    two = next(line for line in table.splitlines() if line.startswith("| `multitask/cu_inputs`"))
    assert "n<3" not in base and re.search(r"\[-?[\d.]+, -?[\d.]+\]", base)
    assert "[n<3]" in two and not re.search(r"\[-?[\d.]+, -?[\d.]+\]", two)


def draw(monkeypatch, plot) -> list:
    """The figures `plot` makes, kept open (the report closes them once saved)."""
    figures = []
    monkeypatch.setattr(report, "_finish", lambda fig, stem: figures.append(fig) or stem.with_suffix(".png"))
    plot()
    return figures


def labels(ax) -> list:
    return [ax.get_xlabel(), ylabel(ax), *ax.get_legend_handles_labels()[1]]


def ylabel(ax) -> str:
    """The y label on one line (it is wrapped to fit beside stacked panels)."""
    return ax.get_ylabel().replace("\n", " ")


def test_report_axes_are_worded_with_units_rates_on_0_1_bands_labelled(reported, monkeypatch, tmp_path):
    root, _, _ = reported
    variants = report.group(report.find_runs([root]))
    kpis = report.declared(report.find_runs([root]))
    figures = draw(monkeypatch, lambda: report.plot_paper_figures(variants, kpis, tmp_path))
    figures += draw(monkeypatch, lambda: report.plot_curves(variants, kpis, tmp_path))
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            assert ax.get_ylabel() and not any(SNAKE.search(t) for t in labels(ax)), labels(ax)
            assert ax.get_legend() is not None
            assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())
    base = figures[0]
    assert ylabel(base.axes[0]) == "task success (fraction)" and base.axes[0].get_ylim() == (0, 1)
    assert base.axes[-1].get_xlabel() == "iteration (lane-iterations)"
    bands = {c.get_label() for fig in figures for ax in fig.axes for c in ax.collections}
    assert "95% CI over n=5 seeds" in bands and "n=2: range, no CI" in bands
    plt.close("all")


def test_a_band_from_two_seeds_is_a_flagged_range_and_one_seed_has_none():
    wide = pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 3.0]})
    lo, hi, what = report.band(wide)
    assert what == "n=2: range, no CI" and lo.tolist() == [0, 1] and hi.tolist() == [1, 3]
    assert report.band(wide[["a"]]) is None
    lo, _, what = report.band(pd.DataFrame({"a": [0.0], "b": [1.0], "c": [2.0]}))
    assert what == "95% CI over n=3 seeds" and lo[0] == pytest.approx(1 - 4.303 / 3 ** 0.5)


def test_the_runs_own_plots_are_paper_ready(reported, tmp_path):
    root, _, _ = reported
    run = next(root.glob("multitask.base__seed=0"))
    figures = plot_run(run / "kpis.csv", tmp_path, "multitask/base seed 0", KPIS)
    assert png_dpi(tmp_path / "kpis.png") == pytest.approx(DPI, abs=0.5) and (tmp_path / "kpis.svg").is_file()
    fig = figures["kpis"]
    fig.canvas.draw()
    success, per_iteration, per_task = fig.axes
    assert ylabel(success) == "task success (fraction)" and success.get_ylim() == (0, 1)
    assert ylabel(per_iteration) == "reward per iteration (mean reward)"
    assert "correct PU rate" in success.get_legend_handles_labels()[1]
    assert not success.get_legend().get_window_extent().overlaps(success.get_window_extent())
    assert per_task.get_xlabel() == "iteration (lane-iterations)"
    for ax in fig.axes:
        assert not any(SNAKE.search(t) for t in labels(ax))
    plt.close("all")
