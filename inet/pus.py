"""Processing Units: ordinary nn.Modules that read input nodes and write output nodes.

Every PU is called as `pu(*inputs)` with tensors [n, *node_shape] (n lanes) and
returns one tensor per output node. `PU_KINDS` maps each kind's name to its builder:
`mlp`, `gru`, `mover`, `constant`, `conv` (inet/pu_conv.py) and `custom`, any
nn.Module class named by `_target_`, constructed with `in_shapes`, `out_shapes` and
its `params`.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import replace
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, PUConfig, RunConfig
from .nodes import Nodes, pu_view
from .pu_conv import build_conv

ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
FUNCTIONAL = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}


def import_object(path: str, key: str) -> Callable:
    """Import `module.attr` named in config key `key`, with an error that names the key."""
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{key}: cannot import '{path}' ({e}); give a full import path like package.module.Name") from None


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of `sizes` with ReLU between them: the small networks of the mechanisms (curiosity's models,
    the node raters)."""
    layers: List[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class MLP(nn.Module):
    """Concatenates the flattened inputs, applies an MLP and splits the result into the outputs."""

    def __init__(self, in_shapes: List[tuple], out_shapes: List[tuple], hidden: Sequence[int], activation: str):
        super().__init__()
        self.out_shapes = out_shapes
        sizes = [sum(_numel(s) for s in in_shapes), *hidden]
        layers: List[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), ACT[activation]()]
        layers.append(nn.Linear(sizes[-1], sum(_numel(s) for s in out_shapes)))
        self.net = nn.Sequential(*layers)
        self.splits = [_numel(s) for s in out_shapes]
        # the same ops as `self.net`, without a module call per layer (weights read at call time, so
        # torch.func.functional_call and other reparametrisations still apply)
        self.ops = [m if isinstance(m, nn.Linear) else FUNCTIONAL[activation] for m in layers]

    def forward(self, *inputs: torch.Tensor) -> tuple:
        n = inputs[0].shape[0]
        y = inputs[0].reshape(n, -1) if len(inputs) == 1 else torch.cat([t.reshape(n, -1) for t in inputs], 1)
        for op in self.ops:
            y = F.linear(y, op.weight, op.bias) if isinstance(op, nn.Linear) else op(y)
        if len(self.splits) == 1:
            return (y.reshape(n, *self.out_shapes[0]),)
        return tuple(p.reshape(n, *s) for p, s in zip(y.split(self.splits, 1), self.out_shapes))


class GRU(nn.Module):
    """A GRU cell: the last input node is the hidden state, the first output the new state."""

    def __init__(self, in_shapes: List[tuple], out_shapes: List[tuple]):
        super().__init__()
        hidden = _numel(in_shapes[-1])
        if [_numel(s) for s in out_shapes] != [hidden]:
            raise ValueError(f"a gru PU writes exactly one node the size of its last input ({hidden})")
        self.out_shape = out_shapes[0]
        self.cell = nn.GRUCell(sum(_numel(s) for s in in_shapes[:-1]) or 1, hidden)

    def forward(self, *inputs: torch.Tensor) -> tuple:
        n = inputs[0].shape[0]
        xs = [t.reshape(n, -1) for t in inputs[:-1]] or [inputs[0].new_zeros(n, 1)]
        h = self.cell(torch.cat(xs, 1), inputs[-1].reshape(n, -1))
        return (h.reshape(n, *self.out_shape),)


class Mover(nn.Module):
    """Copies input i to output i; not trainable, but gradients pass through."""

    def __init__(self, in_shapes: List[tuple], out_shapes: List[tuple]):
        super().__init__()
        if list(in_shapes) != list(out_shapes):
            raise ValueError(f"a mover needs inputs and outputs of equal shapes, got {in_shapes} -> {out_shapes}")

    def forward(self, *inputs: torch.Tensor) -> tuple:
        return tuple(t.clone() for t in inputs)


class Constant(nn.Module):
    """Writes a constant (learned when trainable) into its outputs, e.g. a memory reset."""

    def __init__(self, out_shapes: List[tuple], value: Sequence[float] | None, trainable: bool):
        super().__init__()
        total = sum(_numel(s) for s in out_shapes)
        init = torch.zeros(total) if value is None else torch.tensor(list(value), dtype=torch.float32)
        if init.numel() != total:
            raise ValueError(f"value has {init.numel()} entries, the outputs need {total}")
        self.value = nn.Parameter(init, requires_grad=trainable)
        self.out_shapes = out_shapes

    def forward(self, *inputs: torch.Tensor, n: int = 1) -> tuple:
        n = inputs[0].shape[0] if inputs else n
        parts = self.value.split([_numel(s) for s in self.out_shapes])
        # clone: a node value must not alias the parameter, which the optimizer updates in place
        return tuple(p.reshape(1, *s).expand(n, *s).clone() for p, s in zip(parts, self.out_shapes))


def run_pu(pu: nn.Module, inputs: List[torch.Tensor], n: int) -> tuple:
    """Call a PU on n lanes; a PU reading no nodes (a constant) is told n."""
    out = pu(*inputs) if inputs else pu(n=n)
    return out if isinstance(out, tuple) else (out,)


Builder = Callable[[str, PUConfig, List[tuple], List[tuple]], nn.Module]


def _custom(key: str, cfg: PUConfig, ins: List[tuple], outs: List[tuple]) -> nn.Module:
    cls = import_object(cfg._target_, f"{key}._target_")
    return cls(in_shapes=ins, out_shapes=outs, **cfg.params)


# PU kinds by name: builder(key, cfg, in_shapes, out_shapes) -> nn.Module. Adding a kind is one entry.
# A builder raises ValueError/TypeError (named with the PU's key by `build_pu`) or ConfigError naming a key.
PU_KINDS: Dict[str, Builder] = {
    "mlp": lambda key, cfg, ins, outs: MLP(ins, outs, cfg.hidden, cfg.activation),
    "gru": lambda key, cfg, ins, outs: GRU(ins, outs),
    "mover": lambda key, cfg, ins, outs: Mover(ins, outs),
    "constant": lambda key, cfg, ins, outs: Constant(outs, cfg.value, cfg.trainable),
    "conv": build_conv,
    "custom": _custom,
}


def build_pu(name: str, cfg: PUConfig, shapes: Dict[str, tuple]) -> nn.Module:
    """Construct one PU from its config, check its output shapes, load `pretrained`."""
    key = f"pus.{name}"
    builder = PU_KINDS.get(cfg.kind)
    if builder is None:
        raise ConfigError(f"{key}.kind: unknown kind '{cfg.kind}'; choose one of {list(PU_KINDS)}")
    ins = [shapes[n] for n in cfg.inputs]
    outs = [shapes[n] for n in cfg.outputs]
    try:
        pu = builder(key, cfg, ins, outs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}: {e}; check its inputs/outputs against the node shapes") from None
    _check_shapes(key, pu, ins, outs)
    if cfg.pretrained:
        _load_pretrained(key, pu, cfg.pretrained)
    if not cfg.trainable:
        pu.requires_grad_(False)
    return pu


def check_pus(cfg: RunConfig) -> None:
    """Build every PU once on the CPU (kind, options, node shapes as the PU sees them) so a bad PU is refused
    before any work."""
    nodes = Nodes(cfg.nodes, 1, torch.device("cpu"))
    for name, pu in cfg.pus.items():
        build_pu(name, *pu_view(replace(pu, pretrained=None), nodes))


def _check_shapes(key: str, pu: nn.Module, ins: List[tuple], outs: List[tuple]) -> None:
    with torch.no_grad():
        try:
            got = run_pu(pu, [torch.zeros(2, *s) for s in ins], 2)
        except Exception as e:  # a user's module may raise anything on wrong shapes
            raise ConfigError(f"{key}: forward on zeros of the input node shapes {ins} failed: {e}") from None
    got_shapes = [tuple(t.shape[1:]) for t in got]
    if got_shapes != list(outs):
        raise ConfigError(f"{key}: writes shapes {got_shapes} but its output nodes have shapes {list(outs)}")


def _load_pretrained(key: str, pu: nn.Module, path: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        pu.load_state_dict(state)
    except FileNotFoundError:
        raise ConfigError(f"{key}.pretrained: file '{path}' not found") from None
    except (RuntimeError, KeyError) as e:
        raise ConfigError(f"{key}.pretrained: '{path}' does not fit this PU: {e}") from None
