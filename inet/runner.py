"""The runner: one run from a RunConfig to a filled run directory.

Run directory (DESIGN.md section 8): `.hydra/` (written by Hydra), `tb/`,
`kpis.csv`, `summary.json`, `checkpoint.pt`, `pus/<name>.pt` (each PU's weights,
loadable with `pretrained:`), `plots/kpis.png`.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Dict

import torch
from tqdm import tqdm

from . import __version__
from .config import RunConfig
from .engine import Engine
from .logger import RunLogger
from .plots import plot_kpis

HEADLINE = ("task_success", "reward_per_iteration", "reward_per_task")


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()[:16]


def versions() -> Dict[str, str]:
    import hydra
    import omegaconf

    return {"inet": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "omegaconf": omegaconf.__version__, "python": platform.python_version()}


def save_atomic(obj: object, path: Path) -> None:
    """torch.save to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run(cfg: RunConfig, run_dir: Path, config_yaml: str) -> Dict[str, object]:
    """Train for `cfg.iterations` lane-iterations, write all outputs, print the KPI table."""
    torch.set_num_threads(cfg.threads)
    engine = Engine(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(run_dir, config_yaml)
    bar = tqdm(total=cfg.iterations, unit="it", disable=not cfg.progress, dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    next_log = cfg.log_interval
    while engine.iteration < cfg.iterations:
        engine.step()
        if engine.iteration >= next_log or engine.iteration >= cfg.iterations:
            row = engine.metrics()
            row["iterations_per_second"] = engine.iteration / (time.perf_counter() - start)
            logger.log(engine.iteration, row)
            bar.update(engine.iteration - bar.n)
            bar.set_postfix({k: f"{row[k]:.3f}" for k in HEADLINE})
            while next_log <= engine.iteration:
                next_log += cfg.log_interval
    wall = time.perf_counter() - start
    bar.close()
    logger.close()

    h = config_hash(config_yaml)
    save_atomic({"engine": engine.state_dict(), "config_hash": h, "inet": __version__}, run_dir / "checkpoint.pt")
    (run_dir / "pus").mkdir(exist_ok=True)
    for name, pu in engine.pus.items():
        save_atomic(pu.state_dict(), run_dir / "pus" / f"{name}.pt")
    final = engine.metrics()
    summary: Dict[str, object] = {
        "name": cfg.name,
        "seed": cfg.seed,
        "lanes": cfg.lanes,
        "iterations": engine.iteration,
        **{k: final[k] for k in ("reward_per_iteration", "reward_per_task", "task_success")},
        **({"optimal_route_rate": final["optimal_route_rate"]} if "optimal_route_rate" in final else {}),
        "iterations_to_converge": engine.kpis.converged_at,
        "tasks": final["tasks"],
        "wall_seconds": wall,
        "iterations_per_second": engine.iteration / wall,
        "iterations_per_second_per_lane": engine.iteration / wall / cfg.lanes,
        "config_hash": h,
        "versions": versions(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_kpis(run_dir / "kpis.csv", run_dir / "plots", f"{cfg.name}  seed {cfg.seed}  lanes {cfg.lanes}")
    print(kpi_table(summary))
    print(f"run directory: {run_dir}")
    return summary


def kpi_table(summary: Dict[str, object]) -> str:
    """The final KPIs as an aligned two-column text table."""
    rows = [(k, v) for k, v in summary.items() if k not in ("versions", "config_hash")]
    width = max(len(k) for k, _ in rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"{'KPI'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{k.ljust(width)}  {fmt(v)}" for k, v in rows]
    return "\n".join(lines)
