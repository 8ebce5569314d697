"""The Python API: compose a config, run it, load the trained engine back and evaluate it.

`import inet` exposes these names (inet/__init__.py). A run started here writes the
same run directory as `inet run`, `.hydra/config.yaml` and `.hydra/overrides.yaml`
included, so `inet report`, `inet viz` and `inet run resume=true` accept it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import yaml

from .compose import compose, config_yaml, to_run_config
from .config import ConfigError, RunConfig
from .engine import Engine
from .evaluation import evaluation_generator, success_at_length
from .run import checkpoint

__all__ = ["ConfigError", "Engine", "RunConfig", "compose", "evaluate", "load", "run"]

HYDRA_DIR = ".hydra"  # where `inet run` (Hydra) keeps a run's config and overrides


def default_run_dir(cfg: RunConfig) -> Path:
    """`outputs/runs/<name>/seed<S>_<time>` under the working directory, as inet/configs/config.yaml's hydra.run.dir."""
    return Path("outputs") / "runs" / cfg.name / f"seed{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"


def run(cfg: Union[RunConfig, Sequence[str]], run_dir: Optional[Union[Path, str]] = None,
        overrides: Optional[Sequence[str]] = None) -> Path:
    """Train `cfg` (a RunConfig, or overrides to `compose`) into `run_dir`; returns the run directory.

    `run_dir` defaults to `default_run_dir(cfg)`. `overrides` are recorded in
    `.hydra/overrides.yaml`, which `inet report` groups runs by and a CLI resume reapplies;
    when `cfg` is a list of overrides, they are those. The final KPIs are in
    `<run_dir>/summary.json`. Raises ConfigError before any work for a bad config or a
    directory that already holds a run.
    """
    from .run.runner import require_new_run_dir
    from .run.runner import run as run_engine

    if not isinstance(cfg, RunConfig):
        overrides = list(cfg) if overrides is None else overrides
        cfg = compose(cfg)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    text = config_yaml(cfg)
    if not cfg.resume:
        require_new_run_dir(run_dir)
        hydra_dir = run_dir / HYDRA_DIR
        hydra_dir.mkdir(parents=True, exist_ok=True)
        (hydra_dir / "config.yaml").write_text(text)
        (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(list(overrides or []), default_flow_style=False))
    run_engine(cfg, run_dir, text)
    return run_dir


def load(run_dir: Union[Path, str], device: Optional[str] = None) -> Engine:
    """The engine of the run in `run_dir`, restored from its checkpoint (its last iteration).

    The config comes from `.hydra/config.yaml` and must match the checkpoint's. `device`
    (e.g. "cpu" for a run trained on a GPU) overrides the run's. Raises ConfigError for a
    directory without a run or checkpoint.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / HYDRA_DIR / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"load: {run_dir} is not a run directory (no {HYDRA_DIR}/config.yaml); pass the "
                          "directory `inet run` or `inet.run` printed")
    from omegaconf import OmegaConf

    cfg = to_run_config(OmegaConf.load(cfg_path))
    if device is not None:
        cfg.device = device
    state = checkpoint.load(run_dir / checkpoint.FILENAME, cfg)
    engine = Engine(cfg)
    engine.load_state_dict(state["engine"])
    return engine


def evaluate(engine: Engine, instances: int = 200, lengths: Optional[Sequence[int]] = None,
             seed: Optional[int] = None, env: Optional[str] = None) -> Dict[int, float]:
    """Greedy evaluation: the fraction of `instances` fresh task instances the CU solves, per task length.

    The CU acts greedily (no exploration, no learning) in a throw-away copy of the task
    (inet/evaluation.py): the engine's state is only read. `env` names the Environment to
    evaluate (needed when the IN has several). `lengths` defaults to `evaluation.lengths` for
    a task with lengths (reduce) and to [1] for one without (multitask). `seed` (default:
    the run's) seeds the task instances.
    """
    if env is None and len(engine.envs) != 1:
        raise ConfigError(f"evaluate: this engine has {len(engine.envs)} Environments; name one with "
                          f"env= ({', '.join(engine.envs)})")
    env = env or engine.first_env.name
    if env not in engine.envs:
        raise ConfigError(f"evaluate: env '{env}' is not an Environment of this engine; choose from {list(engine.envs)}")
    if lengths is None:
        has_lengths = engine.envs[env].max_trained_length() != float("inf")
        lengths = engine.cfg.evaluation.lengths if has_lengths else [1]
    seed = engine.cfg.seed if seed is None else seed
    return {n: success_at_length(engine, n, instances, evaluation_generator(seed, engine.iteration, n, engine.device),
                                 env) for n in lengths}
