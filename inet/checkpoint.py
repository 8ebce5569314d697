"""Checkpoints: the whole state of a run in one file, written atomically, checked before a resume.

A checkpoint holds `Engine.state_dict()` (nodes, tape, PU and CU weights, target
network, both optimizers, replay buffer and cursor, environments' task state and
generators, KPI windows, every RNG, counters), the runner's own counters, and the
config it was written under. Restoring it continues the run bit for bit; nothing
is dropped. A resume may change only the keys in `RESUMABLE`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict

import torch

from . import __version__
from .config import ConfigError, RunConfig

FILENAME = "checkpoint.pt"
FORMAT = 3
# Keys that do not affect what a run computes, so a resume may change them.
RESUMABLE = ("resume", "progress", "threads", "checkpoint_interval")


def save_atomic(obj: object, path: Path) -> None:
    """torch.save to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def flatten(cfg: RunConfig) -> Dict[str, Any]:
    """The config as {dotted.key: value}; an empty mapping is a value of its own (`pus.pu0.params: {}`)."""
    out: Dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    walk("", dataclasses.asdict(cfg))
    return out


def flat_config(cfg: RunConfig) -> Dict[str, Any]:
    """The config as {dotted.key: value}, without the keys a resume may change."""
    return {k: v for k, v in flatten(cfg).items() if k not in RESUMABLE}


def save(path: Path, cfg: RunConfig, engine_state: dict, runner_state: dict) -> None:
    save_atomic({"format": FORMAT, "inet": __version__, "config": flat_config(cfg),
                 "engine": engine_state, "runner": runner_state}, path)


def load(path: Path, cfg: RunConfig) -> dict:
    """Read the checkpoint at `path` for a resume of `cfg`; ConfigError says what is wrong and the fix."""
    fresh = "start a new run (without resume=true) in a new directory"
    if not path.is_file():
        raise ConfigError(f"resume: there is no checkpoint at {path}; point hydra.run.dir at a run directory "
                          f"that has one, or {fresh}")
    try:
        state = torch.load(path, map_location=cfg.device, weights_only=False)
    except Exception as e:  # truncated zip, not a torch file, unpickling errors: all mean an unusable file
        raise ConfigError(f"resume: {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                          f"it is truncated or not an inet checkpoint. Resume from another run, or {fresh}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "config" not in state:
        raise ConfigError(f"resume: {path} is not an inet checkpoint of format {FORMAT}; {fresh}")
    saved, now = state["config"], flat_config(cfg)
    diff = sorted(k for k in saved.keys() | now.keys() if saved.get(k, "<unset>") != now.get(k, "<unset>"))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k, '<unset>')!r} -> {now.get(k, '<unset>')!r}" for k in diff[:8])
        more = f" and {len(diff) - 8} more" if len(diff) > 8 else ""
        raise ConfigError(f"resume: {path} was written by a different config ({shown}{more}); resume with the "
                          f"run's own overrides (its .hydra/overrides.yaml), or {fresh}")
    return state
