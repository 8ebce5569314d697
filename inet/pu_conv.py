"""The `conv` PU kind: convolutions with max-pooling, then an MLP head (paper 3.2).

It reads one image node of shape [channels, height, width] and writes any number
of output nodes (the head's output is split into them, as in `mlp`). Its own
options live in the PU's `params`, each checked here with the key named:

- `channels` (list, default [8, 16]): output channels of each convolution layer;
- `kernel` (int, default 3): the square kernel size (padding keeps height and width);
- `pool` (int, default 2): max-pooling size after each convolution (1 = none).

The head is `hidden` layers of `activation`, as for `mlp`. A layer that would pool
the image below one pixel is refused, naming `params.pool`.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, PUConfig

OPTIONS: Dict[str, object] = {"channels": [8, 16], "kernel": 3, "pool": 2}
FUNCTIONAL = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}


class Conv(nn.Module):
    """[n, C, H, W] -> (conv, activation, max-pool) per layer -> flatten -> MLP -> the output nodes."""

    def __init__(self, in_shape: Sequence[int], out_shapes: List[tuple], channels: Sequence[int], kernel: int,
                 pool: int, hidden: Sequence[int], activation: str):
        super().__init__()
        c, h, w = in_shape
        self.convs = nn.ModuleList()
        for out in channels:
            self.convs.append(nn.Conv2d(c, out, kernel, padding=kernel // 2))
            c, h, w = out, (h + 2 * (kernel // 2) - kernel + 1) // pool, (w + 2 * (kernel // 2) - kernel + 1) // pool
        self.pool = pool
        sizes = [c * h * w, *hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out_shapes = out_shapes
        self.splits = [math.prod(s) for s in out_shapes]
        self.linears.append(nn.Linear(sizes[-1], sum(self.splits)))
        self.act = FUNCTIONAL[activation]

    def forward(self, x: torch.Tensor) -> tuple:
        n = x.shape[0]
        for conv in self.convs:
            x = self.act(conv(x))
            if self.pool > 1:
                x = F.max_pool2d(x, self.pool)
        y = x.reshape(n, -1)
        for lin in self.linears[:-1]:
            y = self.act(lin(y))
        y = self.linears[-1](y)
        return tuple(p.reshape(n, *s) for p, s in zip(y.split(self.splits, 1), self.out_shapes))


def build_conv(key: str, cfg: PUConfig, ins: List[tuple], outs: List[tuple]) -> Conv:
    """The `conv` kind's builder (inet/pus.py PU_KINDS): checks the input node's rank and `params`."""
    unknown = sorted(set(cfg.params) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"{key}.params.{unknown[0]}: not a conv option; choose from {list(OPTIONS)}")
    opts = {**OPTIONS, **cfg.params}
    if len(ins) != 1 or len(ins[0]) != 3:
        got = ", ".join(f"'{n}' {list(s)}" for n, s in zip(cfg.inputs, ins))
        raise ConfigError(f"{key}.inputs: a conv PU reads exactly one node of rank 3 [channels, height, width]; "
                          f"got {got or 'none'}")
    channels, kernel, pool = opts["channels"], opts["kernel"], opts["pool"]
    if not isinstance(channels, Sequence) or not channels or not all(isinstance(c, int) and c >= 1 for c in channels):
        raise ConfigError(f"{key}.params.channels: list one or more channel counts >= 1, got {channels}")
    for name, v in (("kernel", kernel), ("pool", pool)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{key}.params.{name}: must be an integer >= 1, got {v}")
    if kernel % 2 == 0:
        raise ConfigError(f"{key}.params.kernel: must be odd (padding keeps the image size), got {kernel}")
    _, h, w = ins[0]
    if min(h, w) < pool ** len(channels):
        raise ConfigError(f"{key}.params.pool: {len(channels)} layers pooling by {pool} need an image of at least "
                          f"{pool ** len(channels)} pixels a side; '{cfg.inputs[0]}' is {h}x{w}")
    return Conv(ins[0], outs, list(channels), kernel, pool, cfg.hidden, cfg.activation)
