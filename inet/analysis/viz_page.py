"""The viewer page: its HTML (PAGE) and the script that draws it from the data `viz.collect` gathers (APP_JS).

PAGE's placeholders: __TITLE__, __ALARMS__ (the banner, viz.alarm_banner), __PLOTLYJS__,
__DATA__ (the JSON of `collect`), __APP__ (APP_JS). Element ids are what the browser
test (tests/test_viz.py) and docs/viewer.md name.
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>inet viewer: __TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:18px;margin:4px 0} h2{font-size:15px;margin:10px 0 4px}
.row{display:flex;gap:12px;flex-wrap:wrap} .panel{flex:1;min-width:420px}
#scrubber{width:100%;margin:0} table{border-collapse:collapse;font-size:13px}
td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.random{color:#c00;font-weight:bold} .greedy{color:#070;font-weight:bold}
#alarms{background:#fdecea;border:1px solid #d62728;border-radius:4px;padding:6px 10px;margin:6px 0;font-size:14px}
#alarms ul{margin:4px 0 0 18px;padding:0}
#scrub-marks{position:relative;height:14px;margin:0 8px}
#scrub-marks span{position:absolute;top:0;width:2px;margin-left:-1px}
#scrub-marks .mark-window{height:14px;background:#333}
#scrub-marks .mark-instance{height:7px;background:#1f77b4}
.legend-mark{display:inline-block;width:2px;margin:0 3px 0 8px}
.writer-pu{color:#ff7f0e;font-weight:bold} .writer-new_task{color:#2ca02c;font-weight:bold}
.writer-env_action{color:#2ca02c}
.ended-solved{color:#070;font-weight:bold} .ended-failed{color:#c00;font-weight:bold}
.pu-fn{display:inline-block;width:440px;height:300px;vertical-align:top}
.pu-fn.two{width:620px}
</style>
<script>__PLOTLYJS__</script>
</head><body>
<h1>__TITLE__</h1>
__ALARMS__
<div id="controls">
 <input type="range" id="scrubber" min="0" value="0" step="1" aria-label="recorded iteration">
 <div id="scrub-marks" aria-hidden="true"></div>
 <div style="font-size:12px;color:#555">marks:
  <span class="legend-mark" style="height:12px;background:#333"></span>a new recorded window
  <span class="legend-mark" style="height:7px;background:#1f77b4"></span>a new task instance</div>
 <button id="prev" title="previous recorded iteration">&larr;</button>
 <button id="play" title="play / pause: step through the recorded iterations" data-playing="false">&#9654; play</button>
 <button id="next" title="next recorded iteration">&rarr;</button>
 <select id="speed" aria-label="play speed"><option value="1000">1 / s</option>
  <option value="400" selected>2.5 / s</option><option value="100">10 / s</option></select>
 <div>iteration <b id="iteration"></b> (recorded <span id="position"></span>, <span id="window"></span>):
  action <b id="action-name"></b> <span id="random-flag"></span>,
  reward <b id="reward"></b><span id="terminal"></span>, TD loss <span id="td-loss"></span>,
  PU loss <span id="pu-loss"></span>, epsilon <span id="epsilon"></span></div>
</div>
<div class="row">
 <div class="panel"><h2>Network (paper Fig. 1): executed action highlighted</h2><div id="graph" style="height:420px"></div></div>
 <div class="panel"><h2>CU Q-value per action</h2><div id="qbars" style="height:260px"></div>
  <h2>Node writes this iteration (before &rarr; who wrote what &rarr; after)</h2><table id="node-values"></table></div>
</div>
<div class="row">
 <div class="panel"><h2>Task instance (as the CU found it; what was submitted)</h2><div id="task"></div></div>
 <div class="panel"><h2>CU input vector, by part</h2><div id="cu-inputs" style="height:300px"></div></div>
</div>
<h2>What each PU computes at this window (PUs with at most two scalar inputs), beside the task's target</h2>
<div id="pu-functions"></div>
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
const PART_COLOR = {history: '#7f7f7f', signals: '#2ca02c', nodes: '#1f77b4', meta: '#9467bd'};
const WRITER = {pu: 'PU', new_task: 'new task instance', env_action: 'Environment action'};
const fmt = v => (v === null || v === undefined) ? '–' :
  (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) :
   Array.isArray(v) ? '[' + v.map(fmt).join(', ') + ']' : String(v));
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
const net = DATA.network, steps = DATA.steps, meta = DATA.meta;
const byId = Object.fromEntries(net.elements.map(e => [e.id, e]));
const CONFIG = {displayModeBar: false};

function graphFigure(s) {
  const active = net.elements.map(e => e.actions.includes(s.action));
  const label = net.elements.map(e => {
    if (e.kind === 'node' && e.subkind && e.subkind !== 'vector') {  // a node kind: its kind and fill, not every entry
      const n = (s.counts || {})[e.name];
      return e.name + '<br>' + e.subkind + (e.subkind === 'accumulating' ? ' ' + (n === undefined ? '?' : n) + '/' + e.size
                                               : ' ' + e.size);
    }
    if (e.kind === 'node') { const v = s.nodes[e.name]; return e.name + '<br>' + (v ? v.map(fmt).join(', ') : ''); }
    if (e.kind === 'pu' && e.subkind && !['mlp', 'custom'].includes(e.subkind)) return e.name + '<br>(' + e.subkind + ')';
    if (e.kind === 'env' && active[net.elements.indexOf(e)]) return e.name + '<br>[' + s.action_name + ']';
    return e.name;
  });
  const trace = {type: 'scatter', mode: 'markers+text', x: net.elements.map(e => e.x), y: net.elements.map(e => e.y),
    text: label, textposition: 'bottom center', hoverinfo: 'text', customdata: net.elements.map(e => e.id),
    marker: {size: net.elements.map((e, i) => active[i] ? 34 : 24),
             color: net.elements.map((e, i) => active[i] ? HL : BASE[e.kind]),
             symbol: net.elements.map(e => SYMBOL[e.kind]), line: {width: 1, color: '#333'}}};
  const shapes = [], annotations = [];
  net.edges.forEach(([a, b, kind], k) => {
    const hot = byId[a].actions.includes(s.action) || byId[b].actions.includes(s.action);
    const color = hot ? HL : (kind === 'cu' ? '#9467bd' : '#999'), width = hot ? 3 : 1.2;
    const path = net.paths[k], n = path.length;
    if (n > 2)  // a routed edge: its bends as a line below the elements, the last segment as the arrow
      shapes.push({type: 'path', layer: 'below', xref: 'x', yref: 'y', line: {color: color, width: width},
                   path: path.slice(0, n - 1).map((p, i) => (i ? 'L' : 'M') + p[0] + ',' + p[1]).join(' '),
                   name: a + '>' + b});
    const [p, q] = [path[n - 2], path[n - 1]];
    annotations.push({x: q[0], y: q[1], ax: p[0], ay: p[1], xref: 'x', yref: 'y', axref: 'x', ayref: 'y',
      showarrow: true, arrowhead: 2, arrowsize: 1.2, standoff: 14, startstandoff: n > 2 ? 0 : 14,
      arrowwidth: width, arrowcolor: color, text: ''});
  });
  const xs = net.paths.flat().map(p => p[0]), ys = net.paths.flat().map(p => p[1]).concat(net.elements.map(e => e.y));
  const layout = {margin: {l: 10, r: 10, t: 10, b: 10}, showlegend: false, annotations: annotations, shapes: shapes,
    xaxis: {visible: false, range: [Math.min(-0.6, ...xs), Math.max(...net.elements.map(e => e.x), ...xs) + 0.6]},
    yaxis: {visible: false, range: [Math.min(...ys) - 0.8, Math.max(...ys) + 0.6]}};
  return [[trace], layout];
}

function nodeTable(s) {
  const head = '<tr><th>node</th><th>before</th><th>written by (in order)</th><th>after</th></tr>';
  const rows = Object.keys(s.nodes).map(n => {
    const writes = (s.writes || []).filter(w => w[0] === n);
    const by = writes.length ? writes.map(([_, kind, who, v]) => '<span class="writer writer-' + kind + '" data-writer="' +
      esc(who) + '" data-kind="' + kind + '">' + esc(who) + ' (' + WRITER[kind] + '): ' + v.map(fmt).join(', ') +
      '</span>').join('<br>') : '–';
    return '<tr data-node="' + esc(n) + '"><th>' + esc(n) + '</th><td>' + (s.nodes_before[n] || []).map(fmt).join(', ') +
      '</td><td>' + by + '</td><td>' + s.nodes[n].map(fmt).join(', ') + '</td></tr>';
  });
  document.getElementById('node-values').innerHTML = head + rows.join('');
}

function taskPanel(s) {
  const parts = Object.entries(s.task || {}).map(([env, t]) => {
    const field = (name, label, value, cls) => '<tr data-field="' + name + '"><th>' + label + '</th><td' +
      (cls ? ' class="' + cls + '"' : '') + '>' + esc(fmt(value)) + '</td></tr>';
    const inputs = Object.entries(t.inputs || {}).map(([k, v]) => field('input-' + k, 'input ' + k, v)).join('');
    const ended = t.ended ? (t.ended === 'solved' ? 'ended-solved' : 'ended-failed') : '';
    return '<table class="task" data-env="' + esc(env) + '"><tr><th colspan="2">' + esc(env) +
      ' (iteration ' + t.age + ' of this instance' + (t.age === 0 ? ', new' : '') + ')</th></tr>' + inputs +
      field('target', 'target', t.target) + field('submitted', 'submitted', t.submitted) +
      field('error', 'error (submitted - target)', t.error) +
      field('ended', 'instance ended', t.ended || 'no (goes on)', ended) + '</table>';
  });
  document.getElementById('task').innerHTML = parts.join('') || '<i>no task description recorded</i>';
}

function cuInputs(s) {
  const labels = meta.cu_inputs || [], v = s.cu_input || [];
  const parts = [...new Set(labels.map(l => l.part))];
  const traces = parts.map(p => {
    const idx = labels.map((l, i) => l.part === p ? i : -1).filter(i => i >= 0);
    return {type: 'bar', name: p, x: idx.map(i => labels[i].label), y: idx.map(i => v[i]),
            marker: {color: PART_COLOR[p] || '#8c564b'}, hovertemplate: '%{x}: %{y}<extra>' + p + '</extra>'};
  });
  Plotly.react('cu-inputs', traces, {margin: {l: 40, r: 10, t: 10, b: 110}, barmode: 'group',
    legend: {orientation: 'h', y: 1.1}, xaxis: {tickangle: -40, automargin: true}}, CONFIG);
}

function functionsAt(window) {  // the PU functions sampled at this window (or the last one before it)
  let best = null;
  for (const f of DATA.functions) if (f.window <= window && (!best || f.window > best.window)) best = f;
  return best;
}

function puPlots(s) {
  const fns = functionsAt(s.window), box = document.getElementById('pu-functions');
  if (!(meta.functions || []).length) {
    box.textContent = 'No PU reads at most two scalars (or the trace predates PU functions).'; return;
  }
  (meta.functions || []).forEach(spec => {
    const id = 'pu-fn-' + spec.pu;
    let el = document.getElementById(id);
    if (!el) {
      el = document.createElement('div'); el.id = id; el.dataset.pu = spec.pu;
      el.className = 'pu-fn' + (spec.inputs.length === 2 && spec.target ? ' two' : ''); box.appendChild(el);
    }
    const values = fns ? fns.pus[spec.pu] : null;
    el.dataset.window = fns ? fns.window : '';
    const ran = s.action_name === spec.pu;
    const title = spec.pu + ': ' + (spec.inputs.join(', ') || 'no input') + ' → ' + spec.outputs.join(', ') +
      (fns ? ' (sampled at iteration ' + fns.iteration + ')' : ' (not sampled)') + (ran ? ' · ran now' : '');
    const layout = {title: {text: title, font: {size: 12}}, margin: {l: 45, r: 10, t: 30, b: 40},
                    legend: {orientation: 'h', x: 0, y: 1, yanchor: 'bottom', font: {size: 10}}};
    const here = spec.inputs.map(lbl => { const m = lbl.match(/^(.*?)(?:\[(\d+)\])?$/);
      const v = s.nodes_before[m[1]]; return v ? v[m[2] ? parseInt(m[2], 10) : 0] : null; });
    const written = spec.outputs.length ? (s.writes || []).find(w => w[1] === 'pu' &&
      w[0] === spec.outputs[0].replace(/\[\d+\]$/, '')) : null;  // what the PU wrote, if it ran now
    const out = written ? written[3] : null;
    let traces = [];
    if (spec.inputs.length === 0) {
      traces = [{type: 'bar', name: spec.pu, x: spec.outputs, y: values ? values.map(v => v[0]) : []}];
    } else if (spec.inputs.length === 1) {
      const x = spec.axes[0];
      traces = (values || []).map((y, k) => ({type: 'scatter', mode: 'lines', name: spec.pu + ' → ' + spec.outputs[k],
                                               x: x, y: y, line: {color: k ? undefined : '#ff7f0e', width: 2}}));
      if (spec.target) traces.push({type: 'scatter', mode: 'lines', name: 'target: ' + spec.target.label, x: x,
                                    y: spec.target.values, line: {color: '#2ca02c', dash: 'dash', width: 2}});
      if (ran && here[0] !== null && out) traces.push({type: 'scatter', mode: 'markers', name: 'this iteration',
        x: [here[0]], y: [out[0]], marker: {color: HL, size: 10}});
      layout.xaxis = {title: {text: spec.inputs[0]}}; layout.yaxis = {title: {text: spec.outputs[0] || ''}};
      layout.margin.t = 60;
    } else {
      const [x, y] = spec.axes, z = values ? values[0] : [];
      const all = z.flat().concat(spec.target ? spec.target.values.flat() : []).filter(v => v !== null);
      const zmin = Math.min(...all), zmax = Math.max(...all);
      traces = [{type: 'heatmap', name: spec.pu, x: x, y: y, z: z, zmin: zmin, zmax: zmax, colorscale: 'Viridis',
                 colorbar: {title: {text: spec.outputs[0]}, len: 0.9}}];
      layout.xaxis = {title: {text: spec.inputs[0]}, domain: spec.target ? [0, 0.44] : [0, 1]};
      layout.yaxis = {title: {text: spec.inputs[1]}};
      const notes = spec.target ? [{text: spec.pu, x: 0.22, y: 1.0, xref: 'paper', yref: 'paper',
                                    showarrow: false, yanchor: 'bottom', font: {size: 11}}] : [];
      if (spec.target) {
        traces.push({type: 'heatmap', name: 'target', x: x, y: y, z: spec.target.values, zmin: zmin, zmax: zmax,
                     colorscale: 'Viridis', showscale: false, xaxis: 'x2', yaxis: 'y2'});
        layout.xaxis2 = {title: {text: spec.inputs[0]}, domain: [0.52, 0.96], anchor: 'y2'};
        layout.yaxis2 = {anchor: 'x2', matches: 'y'};
        notes.push({text: 'target: ' + spec.target.label, x: 0.74, y: 1.0, xref: 'paper', yref: 'paper',
                    showarrow: false, yanchor: 'bottom', font: {size: 11}});
      }
      if (ran && here.every(v => v !== null)) traces.push({type: 'scatter', mode: 'markers', name: 'this iteration',
        x: [here[0]], y: [here[1]], marker: {color: HL, size: 10, symbol: 'x'}, showlegend: false});
      layout.annotations = notes; layout.margin.t = 45;
    }
    Plotly.react(el, traces, layout, CONFIG);
  });
}

function scrubMarks() {
  const box = document.getElementById('scrub-marks'), n = steps.length, marks = [];
  const at = i => (n > 1 ? 100 * i / (n - 1) : 0) + '%';
  for (let i = 1; i < n; i++) {
    if (steps[i].window !== steps[i - 1].window)
      marks.push('<span class="mark-window" style="left:' + at(i) + '" data-index="' + i + '" title="window from iteration ' +
                 steps[i].window + '"></span>');
    else if (steps[i - 1].terminal)
      marks.push('<span class="mark-instance" style="left:' + at(i) + '" data-index="' + i +
                 '" title="a new task instance"></span>');
  }
  box.innerHTML = marks.join('');
}

function show(i) {
  const s = steps[i];
  const [gd, gl] = graphFigure(s);
  Plotly.react('graph', gd, gl, CONFIG);
  const g = document.getElementById('graph');
  g.dataset.highlight = s.action_name;
  const q = s.q || DATA.actions.map(() => 0);
  Plotly.react('qbars', [{type: 'bar', x: DATA.actions, y: q, text: q.map(fmt), textposition: 'auto',
    marker: {color: DATA.actions.map((_, k) => k === s.action ? HL : '#7f7f7f')}}],
    {margin: {l: 40, r: 10, t: 10, b: 30}, yaxis: {title: {text: s.q ? 'Q' : 'scripted CU (no Q)'}}}, CONFIG);
  document.getElementById('iteration').textContent = s.iteration;
  document.getElementById('position').textContent = (i + 1) + ' of ' + steps.length;
  document.getElementById('window').textContent = 'window from iteration ' + s.window;
  document.getElementById('action-name').textContent = s.action_name;
  const rf = document.getElementById('random-flag');
  rf.textContent = s.random ? 'random (exploration)' : 'greedy';
  rf.className = s.random ? 'random' : 'greedy';
  document.getElementById('reward').textContent = fmt(s.reward);
  document.getElementById('terminal').textContent = s.terminal ? ' (task instance ended)' : '';
  document.getElementById('td-loss').textContent = fmt(s.td_loss);
  document.getElementById('pu-loss').textContent = fmt(s.pu_loss);
  document.getElementById('epsilon').textContent = fmt(s.epsilon);
  nodeTable(s);
  taskPanel(s);
  cuInputs(s);
  puPlots(s);
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
      CONFIG);
  }
  const k = DATA.kpis, n = k.panels.length;
  if (n) {  // one panel per declared panel, stacked, sharing the iteration axis
    const traces = k.panels.flatMap((p, i) => Object.entries(p.series).map(([name, y]) =>
      ({type: 'scatter', mode: 'lines', name: name, x: k.iteration, y: y, xaxis: 'x', yaxis: i ? 'y' + (i + 1) : 'y'})));
    const layout = {margin: {l: 50, r: 10, t: 30, b: 40}, grid: {rows: n, columns: 1, pattern: 'coupled'},
      xaxis: {title: {text: 'iteration'}}, legend: {orientation: 'h', y: 1.02, yanchor: 'bottom'}};
    k.panels.forEach((p, i) => { layout[i ? 'yaxis' + (i + 1) : 'yaxis'] = {title: {text: p.title, font: {size: 11}}}; });
    document.getElementById('kpis').style.height = (120 + 140 * n) + 'px';
    Plotly.newPlot('kpis', traces, layout, CONFIG);
  }
}

const scrubber = document.getElementById('scrubber');
scrubber.max = steps.length - 1;
scrubber.addEventListener('input', () => show(parseInt(scrubber.value, 10)));
function move(d) {
  const i = Math.min(steps.length - 1, Math.max(0, parseInt(scrubber.value, 10) + d));
  scrubber.value = i;
  show(i);
  return i;
}
document.getElementById('prev').addEventListener('click', () => move(-1));
document.getElementById('next').addEventListener('click', () => move(1));
const play = document.getElementById('play');
let timer = null;
function pause() {
  clearInterval(timer); timer = null;
  play.dataset.playing = 'false'; play.innerHTML = '&#9654; play';
}
function start() {
  if (parseInt(scrubber.value, 10) >= steps.length - 1) { scrubber.value = 0; show(0); }
  play.dataset.playing = 'true'; play.innerHTML = '&#10074;&#10074; pause';
  timer = setInterval(() => { if (move(1) >= steps.length - 1) pause(); },
                      parseInt(document.getElementById('speed').value, 10));
}
play.addEventListener('click', () => timer === null ? start() : pause());
document.getElementById('speed').addEventListener('change', () => { if (timer !== null) { pause(); start(); } });
scrubMarks();
staticPlots();
show(0);
"""
