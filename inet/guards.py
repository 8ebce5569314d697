"""Numeric guards: a NaN or inf in a node value, loss, Q-value or gradient stops the run (or is skipped).

Each check runs where the value is made, so a run stops in the iteration the
value appears, before it reaches any parameter. With `nonfinite: skip` the
offending update (a PU write, a loss, an optimizer step) is dropped and counted
in the `nonfinite_skipped` KPI instead.
"""
from __future__ import annotations

import math

import torch


class NonFiniteError(RuntimeError):
    """A NaN or inf appeared; the message names the iteration and the PU, node or loss."""


def finite(t: torch.Tensor) -> bool:
    """True when every element of `t` is finite (one host sync)."""
    if t.numel() == 1:
        return math.isfinite(t.item())
    return bool(torch.isfinite(t).all())
