"""The viewer's drawing of the network (paper Fig. 1): element positions and edge paths.

Layers from left to right: Environments, the nodes they write, the PUs reading
them, the nodes those write, and so on; the CU sits above, fed by its visible
nodes. An edge is drawn straight when that passes clear of every other element;
otherwise (an Environment reading a node far to the right, as reduce's
environment <-> n1) it bends in the gaps between columns, through a channel below
or above the graph where it must.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

Point = Tuple[float, float]
CLEARANCE = 0.3  # the least distance (in layer widths) an edge keeps from an element it does not join


def _distance(p: Point, a: Point, b: Point) -> float:
    """Distance from `p` to the segment a-b."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def clearance(path: Sequence[Point], others: Sequence[Point]) -> float:
    """The least distance between the polyline `path` and any of `others` (inf: none)."""
    return min((_distance(p, a, b) for p in others for a, b in zip(path[:-1], path[1:])), default=math.inf)


def _dedupe(path: List[Point]) -> List[Point]:
    return [p for i, p in enumerate(path) if i == 0 or p != path[i - 1]]


def route(a: Point, b: Point, others: Sequence[Point], low: float, high: float, channel: int) -> List[Point]:
    """The path of the edge a -> b: straight if clear of `others`; else the first clear of: a bend in the gap
    next to a or next to b; a channel below `low` or above `high`, reached straight from a and b or through
    the gaps next to them (`channel` counts the edges routed through a channel so far, each gets its own).
    Runs in a gap are half a layer from any element."""
    side = 1.0 if b[0] >= a[0] else -1.0
    ga, gb = a[0] + side * 0.5, b[0] - side * 0.5 if b[0] != a[0] else b[0] + 0.5
    depth = 0.6 + 0.3 * channel
    candidates = [[a, b], [a, (ga, a[1]), (ga, b[1]), b], [a, (gb, a[1]), (gb, b[1]), b]]
    channels = (low - depth, high + depth)
    candidates += [[a, (a[0], y), (b[0], y), b] for y in channels]  # straight down (up), across, up (down)
    candidates += [[a, (ga, a[1]), (ga, y), (gb, y), (gb, b[1]), b] for y in channels]
    candidates = [_dedupe(c) for c in candidates]
    clear = [c for c in candidates if clearance(c, others) >= CLEARANCE]
    return clear[0] if clear else max(candidates, key=lambda c: clearance(c, others))


def element_kind(kind: str, spec: dict) -> dict:
    """A node's kind (vector, accumulating, memory, combiner) and its size (capacity, slots, k), or a PU's kind
    (mlp, gru, conv, ...), for the graph's labels; None where the element has no kind."""
    if kind == "node":
        sub = spec.get("kind", "vector")
        return {"subkind": sub, "size": spec.get({"accumulating": "capacity", "memory": "slots",
                                                   "combiner": "k"}.get(sub, ""), None)}
    if kind == "pu":
        return {"subkind": spec.get("kind", "mlp"), "size": None}
    return {"subkind": None, "size": None}


def network(config: dict, actions: List[dict]) -> Dict[str, list]:
    """The network of the paper's Fig. 1: elements (with x, y), directed edges [from, to, kind] and each
    edge's path (a list of [x, y] points from its start to its end)."""
    nodes = config.get("nodes") or {}
    pus = config.get("pus") or {}
    envs = config.get("envs") or {}
    layer: Dict[str, int] = {f"env:{e}": 0 for e in envs}
    for e, spec in envs.items():
        for n in spec.get("inputs", []):
            layer.setdefault(f"node:{n}", 1)
    for _ in range(len(pus) + 1):
        for p, spec in pus.items():
            known = [layer[f"node:{n}"] for n in spec.get("inputs", []) if f"node:{n}" in layer]
            if f"pu:{p}" not in layer and (known or not spec.get("inputs")):
                layer[f"pu:{p}"] = max(known, default=0) + 1
            if f"pu:{p}" in layer:
                for n in spec.get("outputs", []):
                    layer.setdefault(f"node:{n}", layer[f"pu:{p}"] + 1)
    for p in pus:
        layer.setdefault(f"pu:{p}", 2)
    for p, spec in pus.items():  # a PU reading nothing (a reset) sits just before the node it writes
        outs = [layer[f"node:{n}"] for n in spec.get("outputs", []) if f"node:{n}" in layer]
        if not spec.get("inputs") and outs:
            layer[f"pu:{p}"] = max(1, min(outs) - 1)
    for n in nodes:
        layer.setdefault(f"node:{n}", 1)
    def element(a: dict) -> Tuple[str, str]:  # the element an action runs: a PU, a node (node action), an env
        return a["kind"], a["name"] if a["kind"] == "pu" else a.get("node") if a["kind"] == "node" else a["env"]

    action_of: Dict[Tuple[str, str], List[int]] = {element(a): [] for a in actions}
    for i, a in enumerate(actions):
        action_of[element(a)].append(i)
    columns: Dict[int, List[str]] = {}
    for key, lay in layer.items():
        columns.setdefault(lay, []).append(key)
    elements = []
    for lay, keys in sorted(columns.items()):
        for j, key in enumerate(keys):
            kind, name = key.split(":", 1)
            spec = (nodes.get(name) if kind == "node" else pus.get(name) if kind == "pu" else None) or {}
            elements.append({"id": key, "kind": kind, "name": name, "x": float(lay),
                             "y": (len(keys) - 1) / 2 - j,
                             "actions": action_of.get((kind, name), []),
                             "cu_visible": bool(kind == "node" and spec.get("cu_visible")),
                             **element_kind(kind, spec)})
    top = max((e["y"] for e in elements), default=0.0) + 1.2
    elements.append({"id": "cu", "kind": "cu", "name": "CU", "x": max(layer.values(), default=0) / 2, "y": top,
                     "actions": [], "cu_visible": False, "subkind": None, "size": None})
    edges: List[Tuple[str, str, str]] = []
    for e, spec in envs.items():
        edges += [(f"env:{e}", f"node:{n}", "data") for n in spec.get("inputs", [])]
        edges += [(f"node:{n}", f"env:{e}", "data") for n in spec.get("outputs", [])]
    for p, spec in pus.items():
        edges += [(f"node:{n}", f"pu:{p}", "data") for n in spec.get("inputs", [])]
        edges += [(f"pu:{p}", f"node:{n}", "data") for n in spec.get("outputs", [])]
    edges += [(el["id"], "cu", "cu") for el in elements if el["cu_visible"]]
    at = {el["id"]: (el["x"], el["y"]) for el in elements}
    low = min(y for _, y in at.values())
    high = max(y for _, y in at.values())
    paths, routed = [], 0
    for a, b, _ in edges:
        others = [p for key, p in at.items() if key not in (a, b)]
        path = route(at[a], at[b], others, low, high, routed)
        routed += min(y for _, y in path) < low or max(y for _, y in path) > high
        paths.append([list(p) for p in path])
    return {"elements": elements, "edges": [list(e) for e in edges], "paths": paths}
