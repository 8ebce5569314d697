"""`inet report DIR...`: aggregate runs into report.md, report.csv and plots/.

Every run directory under the given directories (one holding `.hydra/config.yaml`)
is read: `kpis.json` (the KPIs its tasks declared, inet/tasks/kpi_registry.py),
`summary.json` (final KPIs), `kpis.csv` (curves), `.hydra/config.yaml` (`name`,
`seed`) and `.hydra/overrides.yaml`. Runs are grouped into experiment variants:
the experiment name plus every override except the seed and those that cannot
change results (`progress`, `threads`, `checkpoint_interval`, `resume`,
`hydra.*`). Per variant and declared KPI with a `table`: the number of seeds,
mean, standard deviation and the 95% interval of the mean (Student t), the best
variant by the KPI's `better` direction, and the paper's figure where one exists
(report.md prints no interval from fewer than 3 seeds: "n<3"; report.csv keeps it).
Figures (`plots/`, PNG at 300 dpi and SVG): per plotted KPI one curve per variant with
a band labelled by what it is (the 95% interval of the mean over n >= 3 seeds; the
min-max range, flagged "no CI", over 2; none for 1), `iterations_to_converge` per
variant, and per experiment with a figure in the paper one figure of the task's KPI
panels named after it (`figNN_<experiment>`, e.g. fig09_multitask_base.png).
Runs without `summary.json` are listed as failed with their reason where the
runner marked them (`failed.json`, inet/run/failure.py), else as stopped, crashed or
still running; failures recorded by a sweep (`failures/*.json`, inet/analysis/sweep.py) and seeds that other
variants have but a variant lacks are listed as missing.
"""
from __future__ import annotations

import json
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..compose import override_key  # noqa: E402
from ..run import failure  # noqa: E402
from ..run.plots import STYLES, X_LABEL, axis_label, legend_outside, rate_axis, readable, save_figure, \
    y_label  # noqa: E402
from ..tasks import kpi_registry  # noqa: E402
from ..tasks.env import ITERATIONS_TO_CONVERGE, KPI_FIGURE  # noqa: E402
from ..tasks.kpi_registry import KPI, panels  # noqa: E402
from .sweep import load_failures  # noqa: E402

RUN_NUMBERS = ("iterations", "iterations_per_second", "wall_seconds")  # the runner's own, in every summary.json
CONVERGE = ITERATIONS_TO_CONVERGE.name  # the `converged` column and plot count the seeds where it is not null
MIN_CI_SEEDS = 3  # fewer seeds: no 95% interval in report.md or as a band (a range, flagged)
NEUTRAL = ("seed", "progress", "threads", "checkpoint_interval", "resume", "experiment")

# The paper's figure per experiment (Dietz 2022, section 5; vanilla DQN), by name or name prefix.
PAPER = {
    "multitask/base": "~100k iterations to converge, after a local optimum (always pu1) (5.1.1, Fig. 9)",
    "multitask/cu_inputs": "~10k iterations to converge (5.1.2, Fig. 10)",
    "multitask/training_wheels": "~5k iterations to converge (5.1.3, Fig. 11)",
    "multitask/pretrained": "converged very quickly (5.1.4, Fig. 12)",
    "reduce/xor": "parity 'almost impossible'; the paper could not make reduce work (5.2, Fig. 14)",
    "reduce/": "the paper could not make reduce work without extensive tuning; its best run peaked and "
               "collapsed (5.2, Fig. 14)",
    "emulate/": "with a scripted CU the IN is the plain network (section 3); the paper reports no learning figures",
}

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(n: int) -> float:
    """The two-sided 95% Student t quantile for the mean of n >= 2 values."""
    return T95[n - 2] if n - 1 <= len(T95) else 1.96


class ReportError(ValueError):
    """Nothing to report (the message names the directories and what was looked for)."""


@dataclass
class Run:
    """One run directory as the report sees it."""

    path: Path
    name: str
    seed: Optional[int]
    overrides: List[str]
    summary: Optional[dict] = None
    kpis: Optional[pd.DataFrame] = None
    declared: List[KPI] = field(default_factory=list)

    @property
    def variant(self) -> str:
        extra = sorted(o for o in self.overrides
                       if override_key(o) not in NEUTRAL and not override_key(o).startswith("hydra"))
        return self.name + (f" ({', '.join(extra)})" if extra else "")

    @property
    def complete(self) -> bool:
        return self.summary is not None


@dataclass
class Variant:
    """Runs of one experiment variant and their aggregated KPIs."""

    label: str
    name: str
    runs: List[Run] = field(default_factory=list)

    @property
    def complete(self) -> List[Run]:
        return [r for r in self.runs if r.complete]


def paper_figure(name: str) -> str:
    """The paper's result for experiment `name` ('' where the paper has none)."""
    if name in PAPER:
        return PAPER[name]
    prefixes = [p for p in PAPER if p.endswith("/") and name.startswith(p)]
    return PAPER[prefixes[0]] if prefixes else ""


def find_runs(dirs: Sequence[Path]) -> List[Run]:
    """Every run directory under `dirs` (sorted by path)."""
    runs = []
    for d in dirs:
        for cfg_path in sorted(Path(d).rglob(".hydra/config.yaml")):
            if ".submitit" in cfg_path.parts:
                continue
            run_dir = cfg_path.parent.parent
            cfg = yaml.safe_load(cfg_path.read_text()) or {}
            ov_path = run_dir / ".hydra" / "overrides.yaml"
            overrides = [str(o) for o in (yaml.safe_load(ov_path.read_text()) or [])] if ov_path.is_file() else []
            run = Run(run_dir, str(cfg.get("name", "?")), cfg.get("seed"), overrides,
                      declared=kpi_registry.load(run_dir))
            if (run_dir / "summary.json").is_file():
                run.summary = json.loads((run_dir / "summary.json").read_text())
            if (run_dir / "kpis.csv").is_file() and (run_dir / "kpis.csv").stat().st_size > 0:
                run.kpis = pd.read_csv(run_dir / "kpis.csv")
            runs.append(run)
    return runs


def declared(runs: Sequence[Run]) -> List[KPI]:
    """Every KPI the runs declare, in the order first declared (the first declaration of a name wins)."""
    out: Dict[str, KPI] = {}
    for r in runs:
        for k in r.declared:
            out.setdefault(k.name, k)
    return list(out.values())


def stats(values: Sequence[float]) -> Dict[str, float]:
    """n, mean, sample standard deviation and the 95% interval of the mean (nan where undefined)."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "ci95_low": nan, "ci95_high": nan}
    mean = sum(xs) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": nan, "ci95_low": nan, "ci95_high": nan}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t95(n) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def group(runs: List[Run]) -> List[Variant]:
    variants: Dict[str, Variant] = {}
    for r in runs:
        variants.setdefault(r.variant, Variant(r.variant, r.name)).runs.append(r)
    return sorted(variants.values(), key=lambda v: v.label)


def table(variants: List[Variant], kpis: Sequence[KPI]) -> pd.DataFrame:
    """One row per variant: seeds, then mean/std/ci95 of each KPI with a table and of the run numbers over
    complete runs, then the paper's figure."""
    rows = []
    for v in variants:
        done = v.complete
        row: Dict[str, object] = {"variant": v.label, "experiment": v.name, "seeds": len(done),
                                  "seed_list": " ".join(str(r.seed) for r in sorted(done, key=lambda r: r.seed or 0)),
                                  "incomplete": len(v.runs) - len(done)}
        for k in [*(k.name for k in kpis if k.table), *RUN_NUMBERS]:
            s = stats([r.summary.get(k) for r in done])
            row.update({f"{k}_{stat}": s[stat] for stat in ("n", "mean", "std", "ci95_low", "ci95_high")})
        row["converged"] = sum(r.summary.get(CONVERGE) is not None for r in done)
        row["paper"] = paper_figure(v.name)
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_of(run_dir: Path) -> Optional[Path]:
    """The sweep directory (holding Hydra's multirun.yaml) a run belongs to, if any."""
    for d in run_dir.parents:
        if (d / "multirun.yaml").is_file():
            return d
    return None


def sweep_seeds(sweep_dir: Path) -> Optional[set]:
    """The seeds a sweep asked for, from a plain `seed=0,1,2` override in multirun.yaml (None if not plain)."""
    cfg = yaml.safe_load((sweep_dir / "multirun.yaml").read_text()) or {}
    task = (((cfg.get("hydra") or {}).get("overrides") or {}).get("task")) or []
    for o in task:
        if override_key(str(o)) == "seed":
            values = str(o).split("=", 1)[1].split(",")
            return {int(v) for v in values} if all(v.strip().lstrip("-").isdigit() for v in values) else None
    return None


def missing(variants: List[Variant], failures: List[dict]) -> List[str]:
    """Human-readable lines: failed jobs, incomplete runs, seeds a sweep asked for that a variant lacks."""
    lines = []
    failed = {str(Path(f["run_dir"])): f for f in failures}
    for v in variants:
        for r in v.runs:
            if r.complete:
                continue
            f = failed.pop(str(r.path), None)
            mark = failure.load(r.path)
            if mark is not None or f is not None:
                job = f" job {f['job']}" if f is not None else ""
                error = f"{mark['error']}: {mark['reason']}" if mark is not None else f["error"].splitlines()[0]
                where = [f"at iteration {mark['iteration']}"] if mark is not None else []
                where += [f"overrides `{' '.join(f['overrides'])}`"] if f is not None else []
                lines.append(f"`{v.label}` seed {r.seed}:{job} failed: {error} ({'; '.join([*where, str(r.path)])})")
            else:
                last = int(r.kpis["iteration"].iloc[-1]) if r.kpis is not None and len(r.kpis) else 0
                lines.append(f"`{v.label}` seed {r.seed}: no summary.json (stopped, crashed or still running; "
                             f"last logged iteration {last}): {r.path}")
        by_sweep: Dict[Optional[Path], List[Run]] = {}
        for r in v.runs:
            by_sweep.setdefault(sweep_of(r.path), []).append(r)
        for sweep, runs in by_sweep.items():
            if sweep is None:
                continue
            wanted = sweep_seeds(sweep)
            if wanted is None:
                continue
            lacking = sorted(wanted - {r.seed for r in runs})
            if lacking:
                lines.append(f"`{v.label}`: sweep {sweep} asked for seed(s) {', '.join(map(str, lacking))}, "
                             "which have no run directory (never started)")
    for f in failed.values():
        lines.append(f"failed job {f['job']} (`{' '.join(f['overrides'])}`): {f['error'].splitlines()[0]}")
    return lines


def _fmt(kpi: KPI, x: float) -> str:
    """A rate with 3 decimals, a count without decimals, any other value with 4 significant digits."""
    return f"{x:.3f}" if kpi.rate else f"{x:,.0f}" if kpi.integer else f"{x:.4g}"


def _cell(row: pd.Series, kpi: KPI, best: bool) -> str:
    """mean ± std [95% interval]; from fewer than `MIN_CI_SEEDS` values the interval is "n<3"."""
    n, mean, std, lo, hi = (row[f"{kpi.name}_{s}"] for s in ("n", "mean", "std", "ci95_low", "ci95_high"))
    if math.isnan(mean):
        return "–"
    text = _fmt(kpi, mean)
    if not math.isnan(std):
        text += f" ± {_fmt(kpi, std)}"
    text += f" [{_fmt(kpi, lo)}, {_fmt(kpi, hi)}]" if n >= MIN_CI_SEEDS else f" [n<{MIN_CI_SEEDS}]"
    return text + (" (best)" if best else "")


def best_variants(df: pd.DataFrame, kpi: KPI) -> set:
    """The variants whose mean is the best by the KPI's `better` direction (none where all are equal)."""
    means = df.set_index("variant")[f"{kpi.name}_mean"].dropna()
    if kpi.better is None or means.nunique() < 2:
        return set()
    return set(means.index[means == (means.max() if kpi.better == "higher" else means.min())])


def _header(kpi: KPI) -> str:
    return f"{kpi.name} {kpi.arrow}".rstrip()


def _value(kpi: KPI, v: object) -> str:
    """One run's summary value: None is a KPI never measured."""
    return "never" if v is None else _fmt(kpi, v) if isinstance(v, (int, float)) else str(v)


def markdown(df: pd.DataFrame, kpis: Sequence[KPI], missing_lines: List[str], dirs: Sequence[Path],
             plots: List[Path], runs: List[Run], out_dir: Path) -> str:
    main = [k for k in kpis if k.table == kpi_registry.MAIN_TABLE]
    best = {k.name: best_variants(df, k) for k in main}
    lines = ["# inet report", "", "Runs under: " + ", ".join(f"`{d}`" for d in dirs), "",
             f"## {kpi_registry.MAIN_TABLE}", "",
             f"Each cell: mean ± standard deviation over seeds [95% interval of the mean, Student t; n<{MIN_CI_SEEDS}: "
             "fewer seeds than an interval needs, none given]; ↑ higher is "
             "better, ↓ lower is better, (best): the best variant. "
             f"`{CONVERGE}` is over the seeds that converged (`converged` of `seeds`).", "",
             "| variant | seeds | " + " | ".join(map(_header, main)) + " | converged | paper |",
             "|---|---|" + "---|" * len(main) + "---|---|"]
    for _, r in df.iterrows():
        cells = [_cell(r, k, r["variant"] in best[k.name]) for k in main]
        lines.append(f"| `{r['variant']}` | {r['seeds']} | " + " | ".join(cells)
                     + f" | {r['converged']}/{r['seeds']} | {r['paper']} |")
    for name in dict.fromkeys(k.table for k in kpis if k.table and k.table != kpi_registry.MAIN_TABLE):
        lines += _seed_table(name, [k for k in kpis if k.table == name], df, runs)
    lines += ["", "## Missing", ""]
    lines += [f"- {m}" for m in missing_lines] or ["Nothing: every run found is complete and no job failed."]
    lines += ["", "## Runs", "", "| variant | seed | " + " | ".join(map(_header, main)) + " | it/s | run directory |",
              "|---|---|" + "---|" * len(main) + "---|---|"]
    for r in sorted(runs, key=lambda r: (r.variant, r.seed or 0)):
        s = r.summary or {}
        cells = [_value(k, s[k.name]) if k.name in s else "–" for k in main]
        ips = f"{s['iterations_per_second']:.0f}" if "iterations_per_second" in s else "–"
        lines.append(f"| `{r.variant}` | {r.seed} | " + " | ".join(cells) + f" | {ips} | {r.path} |")
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}]({p.relative_to(out_dir)})" for p in plots]
    return "\n".join(lines) + "\n"


def _seeds_cell(mean: float, values: List[object]) -> str:
    """`mean (v1/v2/...)`; – for a value never measured."""
    if math.isnan(mean):
        return "–"
    return f"{mean:.1f} (" + "/".join("–" if v is None else f"{v:g}" for v in values) + ")"


def _seed_table(name: str, kpis: List[KPI], df: pd.DataFrame, runs: List[Run]) -> List[str]:
    """A task's own table: per variant, each KPI's mean and every seed's value in seed order."""
    rows = [r for _, r in df.iterrows() if any(not math.isnan(r[f"{k.name}_mean"]) for k in kpis)]
    if not rows:
        return []
    lines = ["", f"## {name}", "", "; ".join(f"`{k.name}`: {k.description}" for k in kpis)
             + ". Each cell: the mean, then every seed's value in seed order.", "",
             "| variant | seeds | " + " | ".join(map(_header, kpis)) + " |", "|---|---|" + "---|" * len(kpis)]
    for r in rows:
        done = sorted((x for x in runs if x.variant == r["variant"] and x.complete), key=lambda x: x.seed or 0)
        cells = [_seeds_cell(r[f"{k.name}_mean"], [x.summary.get(k.name) for x in done]) for k in kpis]
        lines.append(f"| `{r['variant']}` | {r['seeds']} | " + " | ".join(cells) + " |")
    return lines


def _wrap(label: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def _seeds(v: Variant, kpi: str) -> Optional[pd.DataFrame]:
    """The KPI's curve per seed of a variant (a column each, indexed by iteration); None where no run has it."""
    frames = [r.kpis.set_index("iteration")[kpi] for r in v.runs if r.kpis is not None and kpi in r.kpis]
    return pd.concat(frames, axis=1) if frames else None


def band(wide: pd.DataFrame) -> Optional[Tuple[pd.Series, pd.Series, str]]:
    """The band around the mean of `wide`'s seeds and what it is: the 95% interval of the mean (Student t)
    from `MIN_CI_SEEDS` seeds, the min-max range flagged as no interval from 2, None from 1."""
    n = wide.shape[1]
    if n < 2:
        return None
    if n < MIN_CI_SEEDS:
        return wide.min(axis=1), wide.max(axis=1), f"n={n}: range, no CI"
    counts = wide.count(axis=1)
    half = counts.map(lambda c: t95(c) if c >= 2 else float("nan")) * wide.std(axis=1) / counts.pow(0.5)
    mean = wide.mean(axis=1)
    return mean - half, mean + half, f"95% CI over n={n} seeds"


def _draw(ax: Axes, wide: pd.DataFrame, label: str, color: Optional[str] = None, style: str = "-") -> None:
    """The mean over seeds as a line, and its `band` (labelled) in the line's colour."""
    line, = ax.plot(wide.index, wide.mean(axis=1), style, color=color, lw=1.3, label=_wrap(label))
    drawn = band(wide)
    if drawn is not None:
        lo, hi, what = drawn
        ax.fill_between(wide.index, lo, hi, color=line.get_color(), alpha=0.2, lw=0, label=what)


def _finish(fig: Figure, stem: Path) -> Path:
    """Save `fig` as PNG and SVG (`save_figure`), close it; the PNG's path (report.md shows it)."""
    path = save_figure(fig, stem)[0]
    plt.close(fig)
    return path


def plot_curves(variants: List[Variant], kpis: Sequence[KPI], out_dir: Path) -> List[Path]:
    """Per plotted KPI curve: one line per variant (the mean over seeds) with its `band`."""
    paths = []
    for k in kpis:
        if not (k.curve and k.plot and k.plot.kind == "line"):
            continue
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        series = [(v, wide) for v in variants if (wide := _seeds(v, k.name)) is not None]
        for v, wide in series:
            _draw(ax, wide, f"{v.label}: mean of n={wide.shape[1]}")
        if not series:
            plt.close(fig)
            continue
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(axis_label(readable(k.name), [k]))
        ax.set_title(readable(k.name) + (f" ({k.better} is better)" if k.better else ""))
        rate_axis(ax, [k])
        ax.grid(alpha=0.3)
        legend_outside(ax, below=True)
        paths.append(_finish(fig, out_dir / k.name.replace("/", "__")))
    return paths


def paper_stem(name: str) -> Optional[str]:
    """The file name (no suffix) of experiment `name`'s paper figure: `figNN_<name>`; None where the paper
    has no figure for it."""
    number = re.search(r"Fig\. (\d+)", paper_figure(name))
    return f"fig{int(number.group(1)):02d}_{name.replace('/', '_')}" if number else None


def plot_paper_figures(variants: List[Variant], kpis: Sequence[KPI], out_dir: Path) -> List[Path]:
    """Per experiment with a paper figure (`paper_stem`): its line panels of the task's KPI figure (task
    success, reward per iteration, reward per task), each variant a colour, each KPI a line style."""
    by_panel = {p: ks for p, ks in panels(kpis).get(KPI_FIGURE, {}).items() if p.kind == "line"}
    experiments: Dict[str, List[Variant]] = {}
    for v in variants:
        if paper_stem(v.name):
            experiments.setdefault(v.name, []).append(v)
    paths = []
    for name, group_ in experiments.items():
        shown = [(p, ks) for p, ks in by_panel.items() if any(_seeds(v, k.name) is not None for v in group_ for k in ks)]
        if not shown:
            continue
        fig, axes = plt.subplots(len(shown), 1, figsize=(6.5, 2.6 * len(shown)), sharex=True, squeeze=False)
        for ax, (panel, ks) in zip(axes[:, 0], shown):
            _paper_panel(ax, group_, ks)
            y_label(ax, axis_label(panel.title, ks))
        axes[0, 0].set_title(f"{name}: {paper_figure(name)}", fontsize=8)
        axes[-1, 0].set_xlabel(X_LABEL)
        paths.append(_finish(fig, out_dir / str(paper_stem(name))))
    return paths


def _paper_panel(ax: Axes, variants: List[Variant], kpis: List[KPI]) -> None:
    """One panel of a paper figure: every variant's mean and band of each KPI."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, v in enumerate(variants):
        for k, style in zip(kpis, STYLES * len(kpis)):
            wide = _seeds(v, k.name)
            if wide is not None:
                name = f"{readable(k.name)}, " if len(kpis) > 1 else ""
                _draw(ax, wide, f"{name}{v.label}: mean of n={wide.shape[1]}", colors[i % len(colors)], style)
    rate_axis(ax, kpis)
    ax.grid(alpha=0.3)
    legend_outside(ax)


def plot_convergence(variants: List[Variant], out_dir: Path) -> Path:
    """`CONVERGE` per variant: a bar at the mean of converged seeds, a dot per seed, x if not converged."""
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(variants) + 1.5))
    for i, v in enumerate(variants):
        done = v.complete
        conv = [r.summary[CONVERGE] for r in done if r.summary.get(CONVERGE) is not None]
        never = [r.summary.get("iterations", 0) for r in done if r.summary.get(CONVERGE) is None]
        if conv:
            ax.barh(i, sum(conv) / len(conv), color="tab:blue", alpha=0.4,
                    label="mean of the converged seeds" if not _labelled(ax, "mean") else None)
            ax.plot(conv, [i] * len(conv), "o", color="tab:blue",
                    label="one seed" if not _labelled(ax, "one seed") else None)
        if never:
            ax.plot(never, [i] * len(never), "x", color="tab:red", ms=9,
                    label="not converged (at iterations run)" if not _labelled(ax, "not converged") else None)
    converged = [sum(r.summary.get(CONVERGE) is not None for r in v.complete) for v in variants]
    ax.set_yticks(range(len(variants)), [_wrap(v.label, 45) + f"\n{c}/{len(v.complete)} converged"
                                         for v, c in zip(variants, converged)], fontsize=7)
    ax.set_xlim(left=0)
    ax.set_xlabel(axis_label(readable(CONVERGE), [ITERATIONS_TO_CONVERGE]))
    ax.grid(alpha=0.3, axis="x")
    legend_outside(ax, below=True)
    return _finish(fig, out_dir / CONVERGE)


def _labelled(ax: Axes, start: str) -> bool:
    """Whether a legend entry of `ax` starts with `start` (each kind is labelled once)."""
    return any(label.startswith(start) for label in ax.get_legend_handles_labels()[1])


def write_report(dirs: Sequence[Path], out_dir: Path) -> Path:
    """Write out_dir/report.md, report.csv and plots/; return the path of report.md."""
    for d in dirs:
        if not Path(d).is_dir():
            raise ReportError(f"{d}: no such directory")
    runs = find_runs(dirs)
    sweeps = {f.parent for d in dirs for f in Path(d).rglob("failures") if f.is_dir()}
    failures = [f for sweep in sorted(sweeps) for f in load_failures(sweep)]
    if not runs and not failures:
        raise ReportError(f"no runs under {', '.join(map(str, dirs))} (a run directory holds .hydra/config.yaml; "
                          "pass the directories `inet run` or `inet run -m` wrote, e.g. outputs/multiruns/<time>)")
    variants = group(runs)
    kpis = declared(runs)
    df = table(variants, kpis)
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "report.csv", index=False)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    plots = plot_paper_figures(variants, kpis, plot_dir) + plot_curves(variants, kpis, plot_dir)
    if any(v.complete for v in variants):
        plots.append(plot_convergence([v for v in variants if v.complete], plot_dir))
    path = out_dir / "report.md"
    path.write_text(markdown(df, kpis, missing(variants, failures), dirs, plots, runs, out_dir))
    return path
