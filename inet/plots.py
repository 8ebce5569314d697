"""Plots of a run's KPI curves, like the paper's Fig. 9-12 but honest about what they show.

The paper's Fig. 9 plots only the reward per iteration, which drops when the IN
finds the better two-step route (0.5 per iteration instead of ~0.7 for the
one-step local optimum, paper 5.1.1.1). Plotting `reward_per_task` and
`task_success` beside it shows that drop for what it is: an improvement.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .files import render_atomic  # noqa: E402

PANELS = [
    ("reward_per_iteration", "reward per iteration"),
    ("reward_per_task", "reward per task instance"),
    ("task_success", "task success"),
]


def _save(figures: Dict[str, Figure], out_dir: Path) -> Dict[str, Figure]:
    """Write each figure to out_dir/<name>.png; the figures stay open (the logger sends them to TensorBoard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.tight_layout()
        render_atomic(out_dir / f"{name}.png", lambda buf: fig.savefig(buf, format="png", dpi=110))
    return figures


def plot_run(kpis_csv: Path, out_dir: Path, title: str) -> Dict[str, Figure]:
    """All of a run's plots, written to out_dir as PNGs and returned by name (open, for TensorBoard)."""
    df = pd.read_csv(kpis_csv)
    return _save({"kpis": plot_kpis(df, title), **plot_lengths(df, title)}, out_dir)


# multitask route KPIs drawn over task success: column, label, line style
ROUTE_LINES = (("optimal_route_rate", "optimal route", "--"), ("correct_pu_rate", "correct PU", ":"))


def plot_kpis(df: pd.DataFrame, title: str) -> Figure:
    """One panel per headline KPI over iterations."""
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(7, 7), sharex=True)
    for ax, (col, label) in zip(axes, PANELS):
        ax.plot(df["iteration"], df[col], lw=1.2)
        if col == "task_success":
            routes = [(c, lbl, ls) for c, lbl, ls in ROUTE_LINES if c in df]
            for c, lbl, ls in routes:
                ax.plot(df["iteration"], df[c], lw=1.0, ls=ls, label=lbl)
            if routes:
                ax.legend(loc="lower right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(title)
    return fig


def plot_lengths(df: pd.DataFrame, title: str) -> Dict[str, Figure]:
    """Fig. 14-style plots of a reduce run (none if the run has no curriculum columns).

    `lengths`: `max_length_reached`, `curriculum_length` and `max_length_reliable`
    over iterations; `eval_heatmap`: greedy success per evaluated L (rows) over iterations.
    """
    if "curriculum_length" not in df:
        return {}
    figures = {}
    figures["lengths"] = fig = plt.figure(figsize=(7, 3.5))
    ax = fig.add_subplot()
    for col, style in (("max_length_reached", "-"), ("curriculum_length", ":"), ("max_length_reliable", "--")):
        if col in df:
            ax.step(df["iteration"], df[col], style, where="post", label=col.replace("_", " "))
    ax.set_yscale("symlog", base=2, linthresh=1)  # max_length_reliable may be 0
    ax.set_xlabel("iteration")
    ax.set_ylabel("sequence length L")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    cols = sorted((c for c in df if c.startswith("eval_success_L")), key=lambda c: int(c[len("eval_success_L"):]))
    evaluated = df.dropna(subset=cols) if cols else df.iloc[0:0]
    if len(evaluated):
        figures["eval_heatmap"] = fig = plt.figure(figsize=(7, 3.5))
        ax = fig.add_subplot()
        grid = evaluated[cols].to_numpy().T
        x = evaluated["iteration"].to_numpy()
        step = x[1] - x[0] if len(x) > 1 else 1
        edges = [*(x - step / 2), x[-1] + step / 2]  # one column per logged row, centred on its iteration
        mesh = ax.pcolormesh(edges, range(len(cols) + 1), grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_yticks([i + 0.5 for i in range(len(cols))], [c[len("eval_success_"):] for c in cols])
        ax.set_xlabel("iteration")
        ax.set_title(f"greedy success per length  {title}")
        fig.colorbar(mesh, ax=ax, label="success")
    return figures
