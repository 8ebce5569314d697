"""The runner: one run from a RunConfig to a filled run directory.

Run directory (DESIGN.md section 8): `.hydra/` (written by Hydra), `tb/`,
`kpis.json` (the KPIs the tasks declare, `Engine.declared_kpis`), `kpis.csv`,
`summary.json`, `checkpoint.pt` (every `checkpoint_interval` iterations, on
SIGTERM/SIGINT and at the end; `resume=true` continues from it), `pus/<name>.pt`
(each PU's weights, loadable with `pretrained:`), `plots/` (one PNG per declared
figure), `trace/` (recorded windows of iterations for the viewer, inet/run/trace.py),
`run.log` (the progress lines and the final KPI table, inet/run/progress.py),
`alarms.json` (the alarms raised, inet/run/alarms.py) and, for a run stopped by an
error, `failed.json` (the reason, inet/run/failure.py).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..version import __version__
from ..config import ConfigError, RunConfig
from ..engine import Engine
from ..guards import NonFiniteError
from ..tasks import kpi_registry
from . import alarms, checkpoint, failure
from .files import OutputWriteError, describe, json_text, save_atomic, write_atomic
from .logger import RunLogger
from .plots import plot_run
from .progress import Progress
from .trace import TraceRecorder


class RunWriteFailed(RuntimeError):
    """A run output could not be written (a full disk, say); the last good checkpoint is intact."""

    exit_code = 74  # EX_IOERR (sysexits.h)


class RunInterrupted(Exception):
    """SIGTERM or SIGINT stopped the run; a checkpoint was written first."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signum


class _StopSignals:
    """While active, SIGTERM and SIGINT only set `signum`; the loop checkpoints and stops at the next iteration."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()[:16]


def versions() -> Dict[str, str]:
    import hydra
    import omegaconf

    return {"inet": __version__, "torch": torch.__version__, "hydra": hydra.__version__,
            "omegaconf": omegaconf.__version__, "python": platform.python_version()}


def require_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run in `run_dir` if it already holds a run's outputs (which it would overwrite)."""
    if (run_dir / checkpoint.FILENAME).exists() or (run_dir / "kpis.csv").exists():
        raise ConfigError(f"hydra.run.dir: {run_dir} already holds a run; add resume=true to continue it, "
                          "or choose another directory")


def check_device(device: str) -> None:
    """Refuse a CUDA device this machine does not have, naming why, before any directory is made."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        why = ("this torch is built without CUDA" if torch.version.cuda is None
               else "torch finds no CUDA GPU (no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)")
        raise ConfigError(f"device: {device} needs a CUDA GPU, but {why}; use device=cpu")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device: {device} does not exist; this machine has {count} CUDA device(s), "
                          f"cuda:0 to cuda:{count - 1}")


def check_writable(path: Path, key: str) -> None:
    """Refuse an output directory that cannot be created or written, before anything is written there.

    The nearest existing folder of `path` gets a probe folder, removed at once (os.access
    would pass for root on a read-only mount and misjudge network file systems).
    """
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        tempfile.TemporaryDirectory(dir=existing, prefix=".inet-probe-").cleanup()
    except OSError as e:
        raise ConfigError(f"{key}: cannot write {path}: {existing} is not writable ({describe(e)}); "
                          f"choose another directory with {key}=DIR") from None


def run(cfg: RunConfig, run_dir: Path, config_yaml: str) -> Dict[str, object]:
    """Train for `cfg.iterations` lane-iterations (resuming from run_dir's checkpoint with `cfg.resume`).

    Writes all outputs and prints the KPI table. Raises ConfigError before any work
    for a bad resume, RunInterrupted after checkpointing on SIGTERM/SIGINT,
    NonFiniteError (naming the last good checkpoint) on a NaN or inf, and
    RunWriteFailed (likewise) when an output cannot be written.
    """
    check_device(cfg.device)
    ckpt_path = run_dir / checkpoint.FILENAME
    saved: Optional[dict] = None
    if cfg.resume:
        saved = checkpoint.load(ckpt_path, cfg)
    else:
        require_new_run_dir(run_dir)
    if saved is not None and saved["engine"]["iteration"] >= cfg.iterations:
        print(f"inet: {run_dir} is already complete ({saved['engine']['iteration']} iterations); nothing to resume")
        return json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(cfg.deterministic)
    engine = Engine(cfg)
    runner_state = {"next_log": cfg.log_interval, "wall_seconds": 0.0, "checkpoint_iteration": None}
    if saved is not None:
        engine.load_state_dict(saved["engine"])
        runner_state = saved["runner"]
    run_dir.mkdir(parents=True, exist_ok=True)
    failure.clear(run_dir)

    def save_checkpoint() -> None:
        state = {**runner_state, "wall_seconds": wall(), "checkpoint_iteration": engine.iteration,
                 "trace": recorder.state_dict(), "alarms": watch.state_dict()}
        checkpoint.save(ckpt_path, cfg, engine.state_dict(), state)
        runner_state.update(state)  # only once it is on disk: `last_good` names it

    def last_good() -> str:
        k = runner_state["checkpoint_iteration"]
        return (f"the last good checkpoint is {ckpt_path} (iteration {k}), left intact; continue from it with: "
                f"inet run resume=true hydra.run.dir={run_dir}" if k is not None
                else "no checkpoint was written before it")

    resume_at = engine.iteration if saved is not None else None
    offset, start = runner_state["wall_seconds"], time.perf_counter()
    wall = lambda: offset + time.perf_counter() - start  # noqa: E731
    every = cfg.checkpoint_interval
    logger = recorder = progress = watch = None
    kpis = engine.declared_kpis()
    headline = [k.name for k in kpis if k.table == kpi_registry.MAIN_TABLE and k.curve]
    try:
        write_atomic(run_dir / kpi_registry.FILENAME, kpi_registry.dumps(kpis))
        progress = Progress(run_dir, cfg.iterations, engine.iteration, cfg.progress)
        logger = RunLogger(run_dir, config_yaml, kpis, [*engine.diagnostics(), *alarms.KPIS], resume_at=resume_at,
                           hparams=hparams(cfg))
        recorder = TraceRecorder(run_dir, cfg.trace, cfg.log_interval, engine, resume_at=resume_at)
        recorder.load_state_dict(runner_state.get("trace", {}))
        watch = alarms.RunAlarms(run_dir, cfg, engine)
        if saved is not None:
            watch.load_state_dict(runner_state.get("alarms", {}))
        with _StopSignals() as stop:
            while engine.iteration < cfg.iterations:
                before = engine.iteration
                recorder.before_step(engine)
                step = engine.step()
                recorder.after_step(before, engine, step)
                watch.after_step(step)
                it = engine.iteration
                if it >= runner_state["next_log"] or it >= cfg.iterations:
                    row = engine.metrics()
                    row["iterations_per_second"] = it / wall()
                    columns, raised = watch.check(it, row)
                    logger.log(it, {**row, **columns}, alarms=raised)
                    engine.start_interval()
                    recorder.log_usage(it)
                    progress.update(it, {k: row[k] for k in headline})
                    while runner_state["next_log"] <= it:
                        runner_state["next_log"] += cfg.log_interval
                if stop.signum or (every and it // every != before // every):
                    save_checkpoint()
                if stop.signum:
                    name = signal.Signals(stop.signum).name
                    raise RunInterrupted(stop.signum, f"{name} at iteration {it}: checkpoint written to {ckpt_path}; "
                                         f"continue it with: inet run resume=true hydra.run.dir={run_dir}")
        recorder.close()
        save_checkpoint()
        summary = _finish(cfg, engine, kpis, run_dir, config_yaml, wall(), logger)
        progress.write(f"{kpi_table(summary)}\nrun directory: {run_dir}")
    except NonFiniteError as e:
        failure.mark_failed(run_dir, e, engine.iteration)
        raise NonFiniteError(f"{e}; the run stopped ({last_good()}). Set nonfinite=skip to skip such updates "
                             "and count them instead") from None
    except (OSError, OutputWriteError) as e:
        what = str(e) if isinstance(e, OutputWriteError) else f"a write failed: {describe(e)}"
        failure.mark_failed(run_dir, RunWriteFailed(what), engine.iteration)
        raise RunWriteFailed(f"{run_dir}: {what}. The run stopped at iteration {engine.iteration}; {last_good()}. "
                             "Free space (or fix the cause) first") from None
    except RunInterrupted:
        raise
    except Exception as e:
        failure.mark_failed(run_dir, e, engine.iteration)
        raise
    finally:
        for out in (recorder, logger, progress):
            if out is not None:
                with contextlib.suppress(OSError, OutputWriteError):
                    out.close()
    print(kpi_table(summary))
    print(f"run directory: {run_dir}")
    return summary


def _finish(cfg: RunConfig, engine: Engine, kpis: List[kpi_registry.KPI], run_dir: Path, config_yaml: str,
            total_wall: float, logger: RunLogger) -> Dict[str, object]:
    """The end of a run: PU weights, summary.json, plots, the last TensorBoard entries. Returns the summary."""
    (run_dir / "pus").mkdir(exist_ok=True)
    for name, pu in engine.pus.items():
        save_atomic(pu.state_dict(), run_dir / "pus" / f"{name}.pt")
    summary: Dict[str, object] = {
        "name": cfg.name,
        "seed": cfg.seed,
        "lanes": cfg.lanes,
        "iterations": engine.iteration,
        **engine.task_summary(),
        **kpi_registry.summarise(engine.diagnostics(), engine.metrics(), {}),
        "wall_seconds": total_wall,
        "iterations_per_second": engine.iteration / total_wall,
        "iterations_per_second_per_lane": engine.iteration / total_wall / cfg.lanes,
        "config_hash": config_hash(config_yaml),
        "versions": versions(),
    }
    write_atomic(run_dir / "summary.json", json_text(summary, indent=2))
    figures = plot_run(run_dir / "kpis.csv", run_dir / "plots", f"{cfg.name}  seed {cfg.seed}  lanes {cfg.lanes}",
                       kpis)
    logger.finish(engine.iteration, summary, figures)
    return summary


def hparams(cfg: RunConfig) -> Dict[str, object]:
    """The run's config flattened to dotted keys with scalar values (lists as text), for TensorBoard's HParams.
    Unset keys (None) are left out: HParams has no null, and "None" as text would type a number as a string."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in checkpoint.flatten(cfg).items() if v != {} and v is not None}


def kpi_table(summary: Dict[str, object]) -> str:
    """The final KPIs as an aligned two-column text table."""
    rows = [(k, v) for k, v in summary.items() if k not in ("versions", "config_hash")]
    width = max(len(k) for k, _ in rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"{'KPI'.ljust(width)}  value", f"{'-' * width}  -----"]
    lines += [f"{k.ljust(width)}  {fmt(v)}" for k, v in rows]
    return "\n".join(lines)
