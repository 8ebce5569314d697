"""What each small PU computes, sampled on a grid over its input range, for the run viewer.

A PU whose inputs hold at most two scalars in all is a function one can draw: a
curve (one scalar), a heat map (two) or a constant (none). `plottable(engine)`
lists those PUs with their grid, over the ranges the tasks declare
(`Environment.value_ranges`, else [0, 1]), and, where a task declares one
(`Environment.target_functions`), the target function on the same grid.
`sample(engine, specs)` evaluates the PUs on their grids. It only reads: no_grad,
no random numbers, and a PU with buffers (running statistics a call could
update) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import torch

from ..pus import run_pu
from ..tasks.env import TargetFunction

if TYPE_CHECKING:
    from ..engine import Engine

GRID_1D = 51  # points of a curve
GRID_2D = 21  # points per axis of a heat map
MAX_OUTPUTS = 4  # output scalars kept per PU
DEFAULT_RANGE = (0.0, 1.0)


def rounded(values: List[float], digits: int = 4) -> List[float]:
    """`values` to `digits` significant digits: enough to draw, a third of the characters."""
    return [float(f"{v:.{digits}g}") for v in values]


@dataclass
class FunctionSpec:
    """One drawable PU: its input and output scalars, the grid and the task's target on it."""

    pu: str
    inputs: List[str]  # one label per input scalar: the node, or node[k] for a node of several
    outputs: List[str]  # the output scalars kept (at most MAX_OUTPUTS)
    axes: List[List[float]]  # the grid along each input scalar (x, then y)
    target: Optional[dict] = None  # {"label", "values"} on the grid, laid out like `sample`'s values
    grid: List[torch.Tensor] = field(default_factory=list, repr=False)  # the PU's input tensors

    def to_json(self) -> dict:
        return {"pu": self.pu, "inputs": self.inputs, "outputs": self.outputs, "axes": self.axes,
                "target": self.target}


def _labels(names: List[str], shapes: Dict[str, tuple]) -> List[str]:
    out = []
    for n in names:
        k = int(torch.Size(shapes[n]).numel())
        out += [n] if k == 1 else [f"{n}[{i}]" for i in range(k)]
    return out


def _layout(values: torch.Tensor, axes: List[List[float]]) -> list:
    """A flat grid column as a curve (list) or heat map rows (z[y][x])."""
    flat = rounded(values.tolist())
    if len(axes) < 2:
        return flat
    nx = len(axes[0])
    return [flat[j * nx:(j + 1) * nx] for j in range(len(axes[1]))]


def _target_call(tf: TargetFunction, inputs: List[str]) -> Optional[Tuple[int, ...]]:
    """The order to pass the PU's inputs to `tf` in (None: `tf` is not over these inputs)."""
    if tf.pu is None or len(tf.inputs) != len(inputs):
        return None
    orders = [tuple(range(len(inputs)))] + ([(1, 0)] if len(inputs) == 2 else [])
    for order in orders:
        if all(t is None or t == inputs[i] for t, i in zip(tf.inputs, order)):
            return order
    return None


def plottable(engine: "Engine") -> List[FunctionSpec]:
    """The PUs with at most two input scalars, each with its grid and the target where a task knows it."""
    shapes, dev = engine.nodes.shapes, engine.device
    ranges: Dict[str, Tuple[float, float]] = {}
    targets: List[TargetFunction] = []
    for env in engine.envs.values():
        ranges.update(env.value_ranges())
        targets += env.target_functions()
    specs = []
    for name, pcfg in engine.cfg.pus.items():
        pu = engine.pus[name]
        ins = _labels(list(pcfg.inputs), shapes)
        if len(ins) > 2 or any(True for _ in pu.buffers()) or set(pcfg.inputs) & engine.nodes.kinds.keys():
            continue
        ranges_of = [ranges.get(n, DEFAULT_RANGE) for n in pcfg.inputs
                     for _ in range(int(torch.Size(shapes[n]).numel()))]
        points = GRID_1D if len(ins) == 1 else GRID_2D
        axes = [torch.linspace(lo, hi, points, device=dev) for lo, hi in ranges_of]
        if len(axes) == 2:  # row-major over y: point j * nx + i is (x_i, y_j)
            y, x = torch.meshgrid(axes[1], axes[0], indexing="ij")
            columns = [x.reshape(-1), y.reshape(-1)]
        else:
            columns = axes
        scalars = torch.stack(columns, 1) if columns else torch.zeros(1, 0, device=dev)
        grid, col = [], 0
        for n in pcfg.inputs:
            k = int(torch.Size(shapes[n]).numel())
            grid.append(scalars[:, col:col + k].reshape(-1, *shapes[n]))
            col += k
        axes_json = [rounded(a.tolist()) for a in axes]
        spec = FunctionSpec(name, ins, _labels(list(pcfg.outputs), shapes)[:MAX_OUTPUTS], axes_json, grid=grid)
        scalar_nodes = all(shapes[n] == (1,) for n in pcfg.inputs)
        for tf in targets:
            order = _target_call(tf, list(pcfg.inputs)) if tf.pu == name and scalar_nodes else None
            if order is not None and grid:
                with torch.no_grad():
                    values = tf.fn(*(grid[i].reshape(-1, 1) for i in order)).reshape(-1).float()
                spec.target = {"label": tf.label, "values": _layout(values, axes_json)}
                break
        specs.append(spec)
    return specs


def sample(engine: "Engine", specs: List[FunctionSpec]) -> Dict[str, list]:
    """Each PU's output scalars on its grid: {pu: [values per output scalar]} (a curve, heat map rows or a number)."""
    out = {}
    with torch.no_grad():
        for spec in specs:
            n = spec.grid[0].shape[0] if spec.grid else 1
            values = torch.cat([o.reshape(n, -1) for o in run_pu(engine.pus[spec.pu], spec.grid, n)], 1).float()
            out[spec.pu] = [_layout(values[:, k], spec.axes) for k in range(len(spec.outputs))]
    return out
