"""Plots of a run's KPI curves, like the paper's Fig. 9-12 but honest about what they show.

Every figure is written as PNG at `DPI` and as SVG (`save_figure`); axes are labelled in
words with units (`axis_label`), rates (KPIs declared `rate=True`) on a fixed [0, 1] axis,
legends outside the axes. `inet report` draws its figures with the same helpers.

Each figure, panel and line comes from the declared KPIs' `plot` (inet/tasks/kpi_registry.py):
plots/<figure>.png has one panel per `Panel`, in declaration order. The paper's
Fig. 9 plots only the reward per iteration, which drops when the IN finds the
better two-step route (0.5 per iteration instead of ~0.7 for the one-step local
optimum, paper 5.1.1.1); the base task's panels put the reward per task and task
success beside it, which shows that drop for what it is: an improvement.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..tasks.kpi_registry import KPI, Panel, panels  # noqa: E402
from .files import render_atomic  # noqa: E402

STYLES = ("-", "--", ":", "-.")  # the lines of a panel, in declaration order
DPI = 300  # the PNGs' resolution (print quality)
FORMATS = ("png", "svg")  # every figure is written in each
X_LABEL = "iteration (lane-iterations)"
UPPER = {"pu": "PU", "cu": "CU", "td": "TD"}  # words written in capitals in labels


def readable(name: str) -> str:
    """A KPI name as words: `correct_pu_rate` -> 'correct PU rate' (an Environment prefix `env/` dropped)."""
    return " ".join(UPPER.get(w, w) for w in name.rpartition("/")[2].split("_"))


def unit(kpi: KPI) -> str:
    """The unit of a KPI's values ('' where it has none worth naming)."""
    base = kpi.name.rpartition("/")[2]
    if kpi.rate:
        return "fraction"
    if base.startswith("iterations") or base == "evaluated_at":
        return "lane-iterations"
    if "length" in base:
        return "items"
    if base.startswith("reward"):
        return "mean reward"
    return "count" if kpi.integer else ""


def axis_label(text: str, kpis: Iterable[KPI]) -> str:
    """`text` with the KPIs' unit in parentheses where they share one: 'task success (fraction)'."""
    units = {unit(k) for k in kpis}
    return f"{text} ({units.pop()})" if len(units) == 1 and "" not in units else text


def y_label(ax: Axes, text: str, width: int = 24) -> None:
    """Set the y label, wrapped to lines of `width` characters (stacked panels' labels must not meet)."""
    ax.set_ylabel("\n".join(textwrap.wrap(text, width)) or text)


def rate_axis(ax: Axes, kpis: Iterable[KPI]) -> None:
    """Fix the y axis to [0, 1] where every KPI drawn on it is a rate."""
    kpis = list(kpis)
    if kpis and all(k.rate for k in kpis):
        ax.set_ylim(0, 1)


def legend_outside(ax: Axes, below: bool = False) -> None:
    """The axes' legend beside them on the right (or below), where it cannot cover data."""
    if not ax.get_legend_handles_labels()[0]:
        return
    where = (dict(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2) if below
             else dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)))
    ax.legend(fontsize=7, frameon=False, **where)


def save_figure(fig: Figure, stem: Path) -> List[Path]:
    """Write `fig` as stem.png (`DPI`) and stem.svg, cropped to what is drawn (outside legends included)."""
    paths = []
    for fmt in FORMATS:
        path = stem.parent / f"{stem.name}.{fmt}"
        render_atomic(path, lambda buf: fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight"))
        paths.append(path)
    return paths


def _save(figures: Dict[str, Figure], out_dir: Path) -> Dict[str, Figure]:
    """Write each figure to out_dir/<name>.png and .svg; the figures stay open (the logger sends them to
    TensorBoard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        save_figure(fig, out_dir / name)
    return figures


def plot_run(kpis_csv: Path, out_dir: Path, title: str, kpis: Sequence[KPI]) -> Dict[str, Figure]:
    """All of a run's plots, written to out_dir as PNG and SVG and returned by name (open, for TensorBoard)."""
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
        axes[-1, 0].set_xlabel(X_LABEL)
        figures[name] = fig
    return figures


def _lines(ax: Axes, df: pd.DataFrame, panel: Panel, kpis: List[KPI]) -> None:
    for k, style in zip(kpis, STYLES * len(kpis)):
        ax.plot(df["iteration"], df[k.name], style, lw=1.2, label=readable(k.name))
    if panel.log2:
        ax.set_yscale("symlog", base=2, linthresh=1)  # a length may be 0
    rate_axis(ax, kpis)
    if len(kpis) > 1:
        legend_outside(ax)
    y_label(ax, axis_label(panel.title, kpis))
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
    ax.figure.colorbar(mesh, ax=ax, label=axis_label(readable(prefix.rstrip("_")) or panel.title, kpis))
