"""The global random generators (Python, NumPy, torch): seeding, and their state as checkpoint data.

The state is kept as tensors and plain containers, so a checkpoint that holds it
loads with `torch.load(weights_only=True)`, which never runs code from the file.
"""
from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generator (used for weight init)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def numpy_state(state: tuple) -> Dict[str, Any]:
    """NumPy's legacy MT19937 state (`np.random.get_state()`: name, key, pos, has_gauss, cached_gaussian)
    as a tensor and numbers."""
    _, key, pos, has_gauss, gauss = state
    return {"key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def global_state() -> Dict[str, Any]:
    """The three global generators' states."""
    return {"python": random.getstate(), "numpy": numpy_state(np.random.get_state()), "torch": torch.get_rng_state()}


def set_global_state(state: Dict[str, Any]) -> None:
    """Restore what `global_state` returned."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
