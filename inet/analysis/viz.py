"""The run viewer: `inet viz RUN_DIR` writes RUN_DIR/viewer.html, one self-contained page.

The page (plotly.js inlined, so it opens offline) shows the network as in the
paper's Fig. 1 (Environments, Nodes, PUs, the CU, and their edges); a scrubber over
the recorded iterations of `trace/` that highlights the executed action on the
graph and shows node values, the CU's Q-value per action as bars, whether the
action was random, the reward and the losses; an action-usage heat map (actions x
training time, which makes a local optimum such as "always pu1" obvious); and the
KPI curves of `kpis.csv`, one panel per line panel its tasks declared (the run's
kpis.json, inet/tasks/kpi_registry.py). In Jupyter, `show(run_dir)` displays it inline.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd
from omegaconf import OmegaConf

from ..run import trace
from ..run.files import json_safe
from ..tasks import kpi_registry

VIEWER = "viewer.html"


class NotARunError(ValueError):
    """The directory is not a run directory with a trace (the message says what is missing)."""


def network(config: dict, actions: List[dict]) -> Dict[str, list]:
    """The network of the paper's Fig. 1 as elements (with x, y) and directed edges.

    Layers from left to right: Environments, the nodes they write, the PUs reading
    them, the nodes those write, and so on; the CU sits above, fed by its visible nodes.
    """
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
    for n in nodes:
        layer.setdefault(f"node:{n}", 1)
    action_of = {(a["kind"], a["name"] if a["kind"] == "pu" else a["env"]): [] for a in actions}
    for i, a in enumerate(actions):
        action_of[(a["kind"], a["name"] if a["kind"] == "pu" else a["env"])].append(i)
    columns: Dict[int, List[str]] = {}
    for key, lay in layer.items():
        columns.setdefault(lay, []).append(key)
    elements = []
    for lay, keys in sorted(columns.items()):
        for j, key in enumerate(keys):
            kind, name = key.split(":", 1)
            elements.append({"id": key, "kind": kind, "name": name, "x": float(lay),
                             "y": (len(keys) - 1) / 2 - j,
                             "actions": action_of.get((kind, name), []),
                             "cu_visible": bool(kind == "node" and (nodes.get(name) or {}).get("cu_visible"))})
    top = max((e["y"] for e in elements), default=0.0) + 1.2
    elements.append({"id": "cu", "kind": "cu", "name": "CU", "x": max(layer.values(), default=0) / 2, "y": top,
                     "actions": [], "cu_visible": False})
    edges: List[Tuple[str, str, str]] = []
    for e, spec in envs.items():
        edges += [(f"env:{e}", f"node:{n}", "data") for n in spec.get("inputs", [])]
        edges += [(f"node:{n}", f"env:{e}", "data") for n in spec.get("outputs", [])]
    for p, spec in pus.items():
        edges += [(f"node:{n}", f"pu:{p}", "data") for n in spec.get("inputs", [])]
        edges += [(f"pu:{p}", f"node:{n}", "data") for n in spec.get("outputs", [])]
    edges += [(el["id"], "cu", "cu") for el in elements if el["cu_visible"]]
    return {"elements": elements, "edges": [list(e) for e in edges]}


def kpi_panels(df: pd.DataFrame, kpis: List[kpi_registry.KPI]) -> List[dict]:
    """The declared line panels with data: title, and each KPI's values by name."""
    out = []
    for by_panel in kpi_registry.panels(k for k in kpis if k.curve).values():
        for panel, ks in by_panel.items():
            series = {k.name: df[k.name].tolist() for k in ks if k.name in df}
            if panel.kind == "line" and series:
                out.append({"title": panel.title, "series": series})
    return out


def collect(run_dir: Path) -> dict:
    """Everything the page shows, as plain data. Raises NotARunError for a directory that is not a run."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise NotARunError(f"{run_dir}: no such directory")
    if not cfg_path.is_file():
        raise NotARunError(f"{run_dir}: not a run directory (no .hydra/config.yaml); pass the directory "
                           "`inet run` printed, e.g. outputs/runs/<experiment>/seed0_<time>")
    try:
        tr = trace.load(run_dir)
    except FileNotFoundError as e:
        raise NotARunError(str(e)) from None
    if not tr["steps"]:
        raise NotARunError(f"{run_dir}: trace/ holds no recorded iterations (the run stopped before its first "
                           "window; see trace.interval and trace.window)")
    config = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
    kpis: Dict[str, list] = {"iteration": [], "panels": []}
    if (run_dir / "kpis.csv").is_file():
        df = pd.read_csv(run_dir / "kpis.csv")
        kpis = {"iteration": df["iteration"].tolist(), "panels": kpi_panels(df, kpi_registry.load(run_dir))}
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    meta = tr["meta"]
    return json_safe({
        "title": f"{config.get('name', run_dir.name)}  seed {config.get('seed', '?')}",
        "run_dir": str(run_dir),
        "actions": [a["name"] for a in meta["actions"]],
        "meta": meta,
        "network": network(config, meta["actions"]),
        "steps": tr["steps"],
        "usage": tr["usage"],
        "kpis": kpis,
        "summary": {k: v for k, v in summary.items() if not isinstance(v, dict)},
    })


def render(data: dict) -> str:
    """The self-contained HTML page for `data` (from `collect`)."""
    from plotly.offline import get_plotlyjs

    blob = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", html.escape(data["title"]))
            .replace("__PLOTLYJS__", get_plotlyjs().replace("</script", "<\\/script"))
            .replace("__DATA__", blob)
            .replace("__APP__", APP_JS))


def write_viewer(run_dir: Path) -> Path:
    """Write RUN_DIR/viewer.html and return its path."""
    path = Path(run_dir) / VIEWER
    path.write_text(render(collect(Path(run_dir))), encoding="utf-8")
    return path


class InlineViewer:
    """A viewer page that Jupyter displays inline (through `_repr_html_`, so IPython is not needed to build it)."""

    def __init__(self, page: str, height: int):
        self.page = page
        self.height = height

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" '
                f'style="width:100%;height:{self.height}px;border:0"></iframe>')


def show(run_dir: Path, height: int = 1100) -> InlineViewer:
    """In Jupyter, `inet.analysis.viz.show(run_dir)` as a cell's last line displays the viewer (writing viewer.html too)."""
    return InlineViewer(write_viewer(Path(run_dir)).read_text(encoding="utf-8"), height)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>inet viewer: __TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:18px;margin:4px 0} h2{font-size:15px;margin:10px 0 4px}
.row{display:flex;gap:12px;flex-wrap:wrap} .panel{flex:1;min-width:420px}
#scrubber{width:100%} table{border-collapse:collapse;font-size:13px} td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
.random{color:#c00;font-weight:bold} .greedy{color:#070;font-weight:bold}
</style>
<script>__PLOTLYJS__</script>
</head><body>
<h1>__TITLE__</h1>
<div id="controls">
 <input type="range" id="scrubber" min="0" value="0" step="1" aria-label="recorded iteration">
 <button id="prev" title="previous recorded iteration">&larr;</button>
 <button id="next" title="next recorded iteration">&rarr;</button>
 <div>iteration <b id="iteration"></b> (recorded <span id="position"></span>):
  action <b id="action-name"></b> <span id="random-flag"></span>,
  reward <b id="reward"></b><span id="terminal"></span>, TD loss <span id="td-loss"></span>,
  PU loss <span id="pu-loss"></span>, epsilon <span id="epsilon"></span></div>
</div>
<div class="row">
 <div class="panel"><h2>Network (paper Fig. 1): executed action highlighted</h2><div id="graph" style="height:420px"></div></div>
 <div class="panel"><h2>CU Q-value per action</h2><div id="qbars" style="height:300px"></div>
  <h2>Node values (before &rarr; after)</h2><table id="node-values"></table></div>
</div>
<div class="row">
 <div class="panel"><h2>Action usage over training (fraction per log interval)</h2><div id="heatmap" style="height:300px"></div></div>
 <div class="panel"><h2>KPIs</h2><div id="kpis"></div></div>
</div>
<script>const DATA = __DATA__;</script>
<script>__APP__</script>
</body></html>
"""

APP_JS = r"""
const HL = '#d62728';
const BASE = {env: '#2ca02c', node: '#1f77b4', pu: '#ff7f0e', cu: '#9467bd'};
const SYMBOL = {env: 'diamond', node: 'circle', pu: 'square', cu: 'star'};
const fmt = v => (v === null || v === undefined) ? '–' : (typeof v === 'number' ? v.toPrecision(4) : String(v));
const net = DATA.network, steps = DATA.steps;
const byId = Object.fromEntries(net.elements.map(e => [e.id, e]));

function graphFigure(s) {
  const active = net.elements.map(e => e.actions.includes(s.action));
  const label = net.elements.map(e => {
    if (e.kind === 'node') { const v = s.nodes[e.name]; return e.name + '<br>' + (v ? v.map(fmt).join(', ') : ''); }
    if (e.kind === 'env' && active[net.elements.indexOf(e)]) return e.name + '<br>[' + s.action_name + ']';
    return e.name;
  });
  const trace = {type: 'scatter', mode: 'markers+text', x: net.elements.map(e => e.x), y: net.elements.map(e => e.y),
    text: label, textposition: 'bottom center', hoverinfo: 'text', customdata: net.elements.map(e => e.id),
    marker: {size: net.elements.map((e, i) => active[i] ? 34 : 24),
             color: net.elements.map((e, i) => active[i] ? HL : BASE[e.kind]),
             symbol: net.elements.map(e => SYMBOL[e.kind]), line: {width: 1, color: '#333'}}};
  const annotations = net.edges.map(([a, b, kind]) => {
    const hot = byId[a].actions.includes(s.action) || byId[b].actions.includes(s.action);
    return {x: byId[b].x, y: byId[b].y, ax: byId[a].x, ay: byId[a].y, xref: 'x', yref: 'y', axref: 'x', ayref: 'y',
            showarrow: true, arrowhead: 2, arrowsize: 1.2, standoff: 14, startstandoff: 14,
            arrowwidth: hot ? 3 : 1.2, arrowcolor: hot ? HL : (kind === 'cu' ? '#9467bd' : '#999'), text: ''};
  });
  const layout = {margin: {l: 10, r: 10, t: 10, b: 10}, showlegend: false, annotations: annotations,
    xaxis: {visible: false, range: [-0.6, Math.max(...net.elements.map(e => e.x)) + 0.6]},
    yaxis: {visible: false, range: [Math.min(...net.elements.map(e => e.y)) - 0.8, Math.max(...net.elements.map(e => e.y)) + 0.6]}};
  return [[trace], layout];
}

function show(i) {
  const s = steps[i];
  const [gd, gl] = graphFigure(s);
  Plotly.react('graph', gd, gl, {displayModeBar: false});
  const g = document.getElementById('graph');
  g.dataset.highlight = s.action_name;
  const q = s.q || DATA.actions.map(() => 0);
  Plotly.react('qbars', [{type: 'bar', x: DATA.actions, y: q, text: q.map(fmt), textposition: 'auto',
    marker: {color: DATA.actions.map((_, k) => k === s.action ? HL : '#7f7f7f')}}],
    {margin: {l: 40, r: 10, t: 10, b: 30}, yaxis: {title: {text: s.q ? 'Q' : 'scripted CU (no Q)'}}},
    {displayModeBar: false});
  document.getElementById('iteration').textContent = s.iteration;
  document.getElementById('position').textContent = (i + 1) + ' of ' + steps.length;
  document.getElementById('action-name').textContent = s.action_name;
  const rf = document.getElementById('random-flag');
  rf.textContent = s.random ? 'random (exploration)' : 'greedy';
  rf.className = s.random ? 'random' : 'greedy';
  document.getElementById('reward').textContent = fmt(s.reward);
  document.getElementById('terminal').textContent = s.terminal ? ' (task instance ended)' : '';
  document.getElementById('td-loss').textContent = fmt(s.td_loss);
  document.getElementById('pu-loss').textContent = fmt(s.pu_loss);
  document.getElementById('epsilon').textContent = fmt(s.epsilon);
  const rows = Object.keys(s.nodes).map(n => '<tr><th>' + n + '</th><td>' + (s.nodes_before[n] || []).map(fmt).join(', ') +
    '</td><td>&rarr;</td><td>' + s.nodes[n].map(fmt).join(', ') + '</td></tr>');
  document.getElementById('node-values').innerHTML = rows.join('');
  const line = {type: 'line', xref: 'x', yref: 'paper', x0: s.iteration, x1: s.iteration, y0: 0, y1: 1,
                line: {color: HL, width: 1.5}};
  for (const id of ['heatmap', 'kpis']) {
    const el = document.getElementById(id);
    if (el.layout) Plotly.relayout(el, {shapes: [line]});
  }
}

function staticPlots() {
  if (DATA.usage.length) {
    const it = DATA.usage.map(r => r[0]);
    const z = DATA.actions.map((_, k) => DATA.usage.map(r => {
      const tot = r.slice(1).reduce((a, b) => a + b, 0); return tot ? r[k + 1] / tot : 0; }));
    Plotly.newPlot('heatmap', [{type: 'heatmap', x: it, y: DATA.actions, z: z, colorscale: 'Viridis', zmin: 0, zmax: 1,
      colorbar: {title: {text: 'share'}}}], {margin: {l: 60, r: 10, t: 10, b: 40}, xaxis: {title: {text: 'iteration'}}},
      {displayModeBar: false});
  }
  const k = DATA.kpis, n = k.panels.length;
  if (n) {  // one panel per declared panel, stacked, sharing the iteration axis
    const traces = k.panels.flatMap((p, i) => Object.entries(p.series).map(([name, y]) =>
      ({type: 'scatter', mode: 'lines', name: name, x: k.iteration, y: y, xaxis: 'x', yaxis: i ? 'y' + (i + 1) : 'y'})));
    const layout = {margin: {l: 50, r: 10, t: 30, b: 40}, grid: {rows: n, columns: 1, pattern: 'coupled'},
      xaxis: {title: {text: 'iteration'}}, legend: {orientation: 'h', y: 1.02, yanchor: 'bottom'}};
    k.panels.forEach((p, i) => { layout[i ? 'yaxis' + (i + 1) : 'yaxis'] = {title: {text: p.title, font: {size: 11}}}; });
    document.getElementById('kpis').style.height = (120 + 140 * n) + 'px';
    Plotly.newPlot('kpis', traces, layout, {displayModeBar: false});
  }
}

const scrubber = document.getElementById('scrubber');
scrubber.max = steps.length - 1;
scrubber.addEventListener('input', () => show(parseInt(scrubber.value, 10)));
function move(d) {
  scrubber.value = Math.min(steps.length - 1, Math.max(0, parseInt(scrubber.value, 10) + d));
  show(parseInt(scrubber.value, 10));
}
document.getElementById('prev').addEventListener('click', () => move(-1));
document.getElementById('next').addEventListener('click', () => move(1));
staticPlots();
show(0);
"""
