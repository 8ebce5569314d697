"""Plots of a run's KPI curves, like the paper's Fig. 9-12 but honest about what they show.

The paper's Fig. 9 plots only the reward per iteration, which drops when the IN
finds the better two-step route (0.5 per iteration instead of ~0.7 for the
one-step local optimum, paper 5.1.1.1). Plotting `reward_per_task` and
`task_success` beside it shows that drop for what it is: an improvement.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PANELS = [
    ("reward_per_iteration", "reward per iteration"),
    ("reward_per_task", "reward per task instance"),
    ("task_success", "task success"),
]


def plot_kpis(kpis_csv: Path, out_dir: Path, title: str) -> Path:
    """Write out_dir/kpis.png with one panel per headline KPI over iterations."""
    df = pd.read_csv(kpis_csv)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(7, 7), sharex=True)
    for ax, (col, label) in zip(axes, PANELS):
        ax.plot(df["iteration"], df[col], lw=1.2)
        if col == "task_success" and "optimal_route_rate" in df:
            ax.plot(df["iteration"], df["optimal_route_rate"], lw=1.0, ls="--", label="optimal route")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("iteration")
    axes[0].set_title(title)
    fig.tight_layout()
    path = out_dir / "kpis.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lengths(kpis_csv: Path, out_dir: Path, title: str) -> Path | None:
    """Fig. 14-style plots of a reduce run (None if the run has no curriculum columns).

    lengths.png: `max_length_reached`, `curriculum_length` and `max_length_reliable`
    over iterations; eval_heatmap.png: greedy success per evaluated L (rows) over iterations.
    """
    df = pd.read_csv(kpis_csv)
    if "curriculum_length" not in df:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for col, style in (("max_length_reached", "-"), ("curriculum_length", ":"), ("max_length_reliable", "--")):
        if col in df:
            ax.step(df["iteration"], df[col], style, where="post", label=col.replace("_", " "))
    ax.set_yscale("symlog", base=2, linthresh=1)  # max_length_reliable may be 0
    ax.set_xlabel("iteration")
    ax.set_ylabel("sequence length L")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "lengths.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    cols = sorted((c for c in df if c.startswith("eval_success_L")), key=lambda c: int(c[len("eval_success_L"):]))
    evaluated = df.dropna(subset=cols) if cols else df.iloc[0:0]
    if len(evaluated):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        grid = evaluated[cols].to_numpy().T
        x = evaluated["iteration"].to_numpy()
        step = x[1] - x[0] if len(x) > 1 else 1
        edges = [*(x - step / 2), x[-1] + step / 2]  # one column per logged row, centred on its iteration
        mesh = ax.pcolormesh(edges, range(len(cols) + 1), grid, vmin=0, vmax=1, cmap="viridis")
        ax.set_yticks([i + 0.5 for i in range(len(cols))], [c[len("eval_success_"):] for c in cols])
        ax.set_xlabel("iteration")
        ax.set_title(f"greedy success per length  {title}")
        fig.colorbar(mesh, ax=ax, label="success")
        fig.tight_layout()
        fig.savefig(out_dir / "eval_heatmap.png", dpi=110)
        plt.close(fig)
    return path
