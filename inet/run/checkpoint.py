"""Checkpoints: the whole state of a run in one file, written atomically, checked before a resume.

A checkpoint holds `Engine.state_dict()` (nodes, tape, PU and CU weights, target
network, both optimizers, replay buffer and cursor, environments' task state and
generators, KPI windows, every RNG, counters), the runner's own counters, and the
config it was written under. Restoring it continues the run bit for bit; nothing
is dropped. A resume may change only the keys in `RESUMABLE`.

Everything in it is a tensor, a number, a string or a plain container, so it loads
with `torch.load(weights_only=True)`: loading a checkpoint never runs code from the
file, whoever wrote it. Format 3 (inet before format 4) held NumPy's RNG state as an
array; it is read with NumPy's array type alone allowed, and migrated.
"""
from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..version import __version__
from ..config import ConfigError, NodeConfig, RunConfig
from ..rng import numpy_state
from .files import save_atomic

FILENAME = "checkpoint.pt"
FORMAT = 4
# Keys that do not affect what a run computes, so a resume may change them.
RESUMABLE = ("resume", "progress", "threads", "checkpoint_interval")
FRESH = "start a new run (without resume=true) in a new directory"  # the way out of every refused resume
# What a format-3 checkpoint needs beyond weights_only's own allow-list: NumPy arrays, which hold data, not code.
_FORMAT3_GLOBALS = {"numpy.ndarray": np.ndarray, "numpy._core.multiarray._reconstruct": np._core.multiarray._reconstruct,
                    "numpy.core.multiarray._reconstruct": np._core.multiarray._reconstruct, "numpy.dtype": np.dtype,
                    "numpy.dtypes.UInt32DType": np.dtypes.UInt32DType}


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
    if not path.is_file():
        raise ConfigError(f"resume: there is no checkpoint at {path}; point hydra.run.dir at a run directory "
                          f"that has one, or {FRESH}")
    state = read(path, cfg.device)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "config" not in state:
        found = state.get("format") if isinstance(state, dict) else None
        what = f"format {found} (written by inet {state.get('inet', '?')})" if found is not None else "no inet checkpoint"
        raise ConfigError(f"resume: {path} is {what}; this inet reads format {FORMAT} and migrates format 3, "
                          f"so resume it with the inet that wrote it, or {FRESH}")
    saved, now = state["config"], flat_config(cfg)
    schema = flat_config(RunConfig())  # a key added to inet after the checkpoint, at its default, is what the run had
    node = dataclasses.asdict(NodeConfig())  # likewise a node's key (`kind` and its options came later)
    schema.update({k: node[k.split(".")[2]] for k in now.keys() - saved.keys()
                   if k.startswith("nodes.") and k.count(".") == 2 and k.split(".")[2] in node})
    diff = sorted(k for k in saved.keys() | now.keys()
                  if saved.get(k, schema.get(k, "<unset>")) != now.get(k, "<unset>"))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k, '<unset>')!r} -> {now.get(k, '<unset>')!r}" for k in diff[:8])
        more = f" and {len(diff) - 8} more" if len(diff) > 8 else ""
        raise ConfigError(f"resume: {path} was written by a different config ({shown}{more}); resume with the "
                          f"run's own overrides (its .hydra/overrides.yaml), or {FRESH}")
    return state


def read(path: Path, device: str = "cpu") -> dict:
    """Load a checkpoint without running code from it; format 3 is migrated. ConfigError says why a file is refused."""
    try:
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception as e:  # truncated zip, not a torch file: an unusable file
        raise _unreadable(path, e) from None
    refused = (f"resume: {path} refers to Python objects that an inet checkpoint never holds ({{}}); loading it "
               f"could run code from the file, so it is refused and nothing of it was loaded. Resume only from "
               f"checkpoints inet wrote, or {FRESH}")
    if unsafe - _FORMAT3_GLOBALS.keys():
        raise ConfigError(refused.format(", ".join(sorted(unsafe))))
    try:
        with torch.serialization.safe_globals(list(_FORMAT3_GLOBALS.values()) if unsafe else []):
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if "got <" in ln or "Unsupported" in ln]
        raise ConfigError(refused.format(lines[0] if lines else "refused by torch.load(weights_only=True)")) from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise _unreadable(path, e) from None
    if isinstance(state, dict) and state.get("format") == 3:
        state = _migrate_3(state)
    return state


def _unreadable(path: Path, e: Exception) -> ConfigError:
    return ConfigError(f"resume: {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); "
                       f"it is truncated or not an inet checkpoint. Resume from another run, or {FRESH}")


def _migrate_3(state: dict) -> dict:
    """Format 3 -> 4: NumPy's RNG state as tensors; the CU is the DQN learner (`cu._target_`), which
    counts the lane-iterations it observed; KPI windows are kept per Environment."""
    state["engine"]["rng"]["numpy"] = numpy_state(state["engine"]["rng"]["numpy"])
    state["config"].update({"cu._target_": "inet.cu.dqn.DQN", "cu.params": {}})
    state["engine"]["cu"]["iteration"] = state["engine"]["iteration"]
    state["engine"]["kpis"] = {next(iter(state["engine"]["envs"])): state["engine"]["kpis"]}
    state["format"] = 4
    return state
