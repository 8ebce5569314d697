"""Run outputs that grow during a run: TensorBoard events (tb/) and kpis.csv, one row per log interval."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

from torch.utils.tensorboard import SummaryWriter

# metric -> TensorBoard tag; every tag lives under one of a few stable prefixes.
TAGS = {
    "reward_per_iteration": "charts/reward_per_iteration",
    "reward_per_task": "charts/reward_per_task",
    "task_success": "charts/task_success",
    "optimal_route_rate": "charts/optimal_route_rate",
    "td_loss": "losses/td_loss",
    "pu_loss": "losses/pu_loss",
    "epsilon": "rollout/epsilon",
    "tasks": "rollout/tasks",
    "tape_records": "rollout/tape_records",
    "cu_updates": "rollout/cu_updates",
    "replay_ratio": "rollout/replay_ratio",
    "guarded_updates": "rollout/guarded_updates",
    "iterations_per_second": "time/iterations_per_second",
}


class RunLogger:
    """Writes each metrics row to TensorBoard and kpis.csv (columns fixed by the first row)."""

    def __init__(self, run_dir: Path, config_yaml: str):
        self.writer = SummaryWriter(str(run_dir / "tb"))
        self.writer.add_text("config", "```yaml\n" + config_yaml + "\n```", 0)
        self.csv_path = run_dir / "kpis.csv"
        self._file = None
        self._columns: List[str] = []

    def log(self, iteration: int, row: Dict[str, float]) -> None:
        for k, v in row.items():
            self.writer.add_scalar(TAGS.get(k, f"charts/{k}"), v, iteration)
        if self._file is None:
            self._columns = ["iteration", *row]
            self._file = open(self.csv_path, "w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(self._columns)
        self._csv.writerow([iteration, *(row.get(k, float("nan")) for k in self._columns[1:])])
        self._file.flush()

    def close(self) -> None:
        self.writer.close()
        if self._file is not None:
            self._file.close()
