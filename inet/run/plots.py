"""Plots of a run's KPI curves, like the paper's Fig. 9-12 but honest about what they show.

Each figure, panel and line comes from the declared KPIs' `plot` (inet/tasks/kpi_registry.py):
plots/<figure>.png has one panel per `Panel`, in declaration order. The paper's
Fig. 9 plots only the reward per iteration, which drops when the IN finds the
better two-step route (0.5 per iteration instead of ~0.7 for the one-step local
optimum, paper 5.1.1.1); the base task's panels put the reward per task and task
success beside it, which shows that drop for what it is: an improvement.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..tasks.kpi_registry import KPI, Panel, panels  # noqa: E402
from .files import render_atomic  # noqa: E402

STYLES = ("-", "--", ":", "-.")  # the lines of a panel, in declaration order


def _save(figures: Dict[str, Figure], out_dir: Path) -> Dict[str, Figure]:
    """Write each figure to out_dir/<name>.png; the figures stay open (the logger sends them to TensorBoard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.tight_layout()
        render_atomic(out_dir / f"{name}.png", lambda buf: fig.savefig(buf, format="png", dpi=110))
    return figures


def plot_run(kpis_csv: Path, out_dir: Path, title: str, kpis: Sequence[KPI]) -> Dict[str, Figure]:
    """All of a run's plots, written to out_dir as PNGs and returned by name (open, for TensorBoard)."""
    return _save(plot_kpis(pd.read_csv(kpis_csv), title, kpis), out_dir)


def _evaluated(df: pd.DataFrame, kpis: List[KPI]) -> pd.DataFrame:
    """The rows where every KPI of a heatmap has a value."""
    return df.dropna(subset=[k.name for k in kpis])


def _drawn(df: pd.DataFrame, panel: Panel, kpis: List[KPI]) -> List[KPI]:
    """The panel's KPIs that the data has (a heatmap: only if some row has all of them)."""
    present = [k for k in kpis if k.name in df]
    if panel.kind == "heatmap":
        return present if present and len(_evaluated(df, present)) else []
    return present


def plot_kpis(df: pd.DataFrame, title: str, kpis: Sequence[KPI]) -> Dict[str, Figure]:
    """One figure per declared figure name with data, one panel per `Panel`, from kpis.csv's rows."""
    figures = {}
    for name, by_panel in panels(kpis).items():
        shown = [(p, drawn) for p, ks in by_panel.items() if (drawn := _drawn(df, p, ks))]
        if not shown:
            continue
        fig, axes = plt.subplots(len(shown), 1, figsize=(7, max(3.5, 2.4 * len(shown))), sharex=True,
                                 squeeze=False)
        for ax, (panel, ks) in zip(axes[:, 0], shown):
            (_heatmap if panel.kind == "heatmap" else _lines)(ax, df, panel, ks)
        axes[0, 0].set_title(title if shown[0][0].kind == "line" else f"{shown[0][0].title}  {title}")
        axes[-1, 0].set_xlabel("iteration")
        figures[name] = fig
    return figures


def _lines(ax: Axes, df: pd.DataFrame, panel: Panel, kpis: List[KPI]) -> None:
    for k, style in zip(kpis, STYLES * len(kpis)):
        ax.plot(df["iteration"], df[k.name], style, lw=1.2, label=k.name.replace("_", " "))
    if panel.log2:
        ax.set_yscale("symlog", base=2, linthresh=1)  # a length may be 0
    if all(k.rate for k in kpis):
        ax.set_ylim(-0.02, 1.02)
    if len(kpis) > 1:
        ax.legend(fontsize=8)
    ax.set_ylabel(panel.title)
    ax.grid(alpha=0.3)


def _heatmap(ax: Axes, df: pd.DataFrame, panel: Panel, kpis: List[KPI]) -> None:
    """One row per KPI over the iterations where all of them have a value (a colour per value); the
    panel's title goes above it (`plot_kpis`)."""
    evaluated = _evaluated(df, kpis)
    grid = evaluated[[k.name for k in kpis]].to_numpy().T
    x = evaluated["iteration"].to_numpy()
    step = x[1] - x[0] if len(x) > 1 else 1
    edges = [*(x - step / 2), x[-1] + step / 2]  # one column per logged row, centred on its iteration
    rates = all(k.rate for k in kpis)
    mesh = ax.pcolormesh(edges, range(len(kpis) + 1), grid, cmap="viridis",
                         **({"vmin": 0, "vmax": 1} if rates else {}))
    names = [k.name for k in kpis]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1]  # x_success_L1, x_success_L16 -> L1, L16
    ax.set_yticks([i + 0.5 for i in range(len(kpis))], [n[len(prefix):] for n in names])
    ax.figure.colorbar(mesh, ax=ax)
