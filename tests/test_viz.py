"""The trace and the run viewer: trace/ contents, viewer.html offline in headless Chromium, bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "r"
    cmd = [sys.executable, "-m", "inet.cli", "run", "experiment=multitask/base", "iterations=1200",
           "log_interval=200", "trace.interval=500", "trace.window=30", "progress=false", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _steps(run_dir: Path) -> list:
    return [json.loads(ln) for p in sorted((run_dir / "trace").glob("window_*.jsonl"))
            for ln in p.read_text().splitlines()]


def test_trace_records_the_configured_windows(run_dir):
    meta = json.loads((run_dir / "trace" / "meta.json").read_text())
    assert [a["name"] for a in meta["actions"]] == ["pu0", "pu1", "pu2"]
    steps = _steps(run_dir)
    # windows start at 0, 500, 1000 and hold 30 iterations each (iteration = count after the step)
    assert [s["iteration"] for s in steps] == [*range(1, 31), *range(501, 531), *range(1001, 1031)]
    for s in steps:
        assert len(s["q"]) == 3 and s["action_name"] == meta["actions"][s["action"]]["name"]
        assert set(s["nodes"]) == {"n0", "n1", "n2", "n3"}
    greedy = [s for s in steps if not s["random"]]
    assert greedy and all(s["q"][s["action"]] == max(s["q"]) for s in greedy)
    labels = meta["cu_inputs"]
    assert [lab["part"] for lab in labels] == ["history"] * 6 + ["signals"] * 2 + ["nodes"] + ["meta"] * 2
    assert labels[0]["label"] == "action t-1 = pu0" and labels[8]["label"] == "n3"
    for prev, s in zip(steps, steps[1:]):
        assert len(s["cu_input"]) == len(labels)
        task = s["task"]["multitask"]
        assert task["target"] == pytest.approx(2 * task["inputs"]["a"] if task["inputs"]["a"] > task["inputs"]["b"]
                                               else task["inputs"]["b"] / 2, rel=1e-4)
        assert task["inputs"]["a"] == pytest.approx(s["nodes_before"]["n0"][0], rel=1e-5)
        # the CU saw n3 as it was before the step, and its own last action one-hot
        assert s["cu_input"][8] == pytest.approx(s["nodes_before"]["n3"][0], rel=1e-5)
        if s["iteration"] == prev["iteration"] + 1:
            assert s["cu_input"][:3] == [float(k == prev["action"]) for k in range(3)]
            assert task["age"] == (0 if prev["terminal"] else prev["task"]["multitask"]["age"] + 1)
        # every write is attributed; the last write of a node is its value after the step
        for node, by, who, value in s["writes"]:
            assert (by, who) in {("pu", s["action_name"]), ("new_task", "multitask")}
        for node in s["nodes"]:
            last = [w[3] for w in s["writes"] if w[0] == node]
            assert (last[-1] if last else s["nodes_before"][node]) == pytest.approx(s["nodes"][node], rel=1e-5)
        if s["terminal"]:  # a new task instance wrote a and b into n0 and n1, after the PU's write
            assert [w[:3] for w in s["writes"][-2:]] == [["n0", "new_task", "multitask"], ["n1", "new_task", "multitask"]]
        if s["action_name"] in ("pu1", "pu2"):  # a submit: its value, error and outcome
            assert s["writes"][0][:3] == ["n2", "pu", s["action_name"]] and s["terminal"]
            assert task["submitted"] == pytest.approx(s["writes"][0][3][0])
            assert task["error"] == pytest.approx(task["submitted"] - task["target"], abs=1e-5)
            assert task["ended"] in ("solved", "wrong answer")
            assert (task["ended"] == "solved") == (abs(task["error"]) < 0.05)
        else:
            assert task["submitted"] is None and task["error"] is None
    assert {s["action_name"] for s in steps} >= {"pu0", "pu1"}
    usage = (run_dir / "trace" / "actions.csv").read_text().splitlines()
    assert usage[0] == "iteration,pu0,pu1,pu2"
    rows = [[int(x) for x in ln.split(",")] for ln in usage[1:]]
    assert [r[0] for r in rows] == [200, 400, 600, 800, 1000, 1200]
    assert all(sum(r[1:]) == 200 for r in rows)


def test_trace_records_each_small_pu_function_per_window(run_dir):
    """meta.json: pu0 a heat map over (n0, n1), pu1 and pu2 curves beside 2a and b/2; functions.jsonl: one
    sample per window, which is what the PU computed then (the last one is checked against the saved weights)."""
    meta = json.loads((run_dir / "trace" / "meta.json").read_text())
    specs = {f["pu"]: f for f in meta["functions"]}
    assert specs["pu0"]["inputs"] == ["n0", "n1"] and specs["pu0"]["target"] is None
    assert len(specs["pu0"]["axes"]) == 2 and len(specs["pu0"]["axes"][0]) == 21
    x = specs["pu1"]["axes"][0]
    assert x[0] == 0 and x[-1] == 1 and len(x) == 51
    assert specs["pu1"]["target"]["label"] == "2a" and specs["pu1"]["target"]["values"] == pytest.approx([2 * v for v in x])
    assert specs["pu2"]["target"]["label"] == "b/2" and specs["pu2"]["target"]["values"] == pytest.approx([v / 2 for v in x])
    lines = [json.loads(ln) for ln in (run_dir / "trace" / "functions.jsonl").read_text().splitlines()]
    assert [(f["window"], f["iteration"]) for f in lines] == [(0, 1), (500, 501), (1000, 1001)]
    assert lines[0]["pus"]["pu1"] != lines[2]["pus"]["pu1"]  # the PU trained between the windows
    heat = lines[2]["pus"]["pu0"][0]
    assert len(heat) == 21 and len(heat[0]) == 21


def test_pu_functions_sample_what_the_pus_compute_and_reduce_knows_its_f():
    import torch

    from inet.compose import compose
    from inet.engine import Engine
    from inet.run import pu_functions

    engine = Engine(compose(["experiment=multitask/base"]))
    specs = {s.pu: s for s in pu_functions.plottable(engine)}
    values = pu_functions.sample(engine, list(specs.values()))
    x = torch.tensor(specs["pu1"].axes[0]).unsqueeze(1)
    with torch.no_grad():
        assert values["pu1"][0] == pytest.approx(engine.pus["pu1"](x)[0].reshape(-1).tolist(), rel=1e-3, abs=1e-4)
        # heat map rows run over y (n1), columns over x (n0)
        a, b = specs["pu0"].axes
        want = engine.pus["pu0"](torch.tensor([[a[3]]]), torch.tensor([[b[7]]]))[0].item()
    assert values["pu0"][0][7][3] == pytest.approx(want, rel=1e-3, abs=1e-4)

    engine = Engine(compose(["experiment=reduce/xor"]))
    specs = {s.pu: s for s in pu_functions.plottable(engine)}
    assert set(specs) == {"pu0", "pu1", "pu2"} and specs["pu2"].inputs == [] and specs["pu2"].axes == []
    reductor = specs["pu1"]
    assert reductor.inputs == ["n0", "n2"] and reductor.target["label"] == "xor(memory, item)"
    item, memory = reductor.axes
    z = reductor.target["values"]
    for j in (0, 20):
        for i in (0, 20):
            assert z[j][i] == (round(item[i]) + round(memory[j])) % 2
    assert pu_functions.sample(engine, [specs["pu2"]])["pu2"] == [[pytest.approx(0.0, abs=1e-6)]]


def test_a_task_without_viewer_hooks_is_described_by_its_input_nodes():
    """A user's task that implements only start/respond works unchanged: its instance is its input nodes'
    values, with no target, no target functions, and PU functions drawn over [0, 1]."""
    import torch

    from inet.config import EnvConfig, NodeConfig
    from inet.nodes import Nodes
    from inet.tasks.env import Environment

    class Plain(Environment):
        def start(self, lanes):
            self.nodes.write("x", lanes.tolist(), torch.full((len(lanes), 2), 0.25))

        def respond(self, step):
            pass

    nodes = Nodes({"x": NodeConfig(shape=[2]), "y": NodeConfig()}, 2, torch.device("cpu"))
    env = Plain("plain", EnvConfig(inputs=["x"], outputs=["y"]), nodes, 2, torch.device("cpu"), torch.Generator())
    env.reset()
    assert env.describe(1) == {"inputs": {"x": [0.25, 0.25]}, "target": None}
    assert env.target_functions() == [] and env.value_ranges() == {} and env.starting is False


def _traced(tmp_path: Path, overrides: list, iterations: int) -> tuple:
    """A fresh engine of `overrides` run `iterations` lockstep iterations, all traced into `tmp_path`: its config
    and the recorded steps."""
    from inet.compose import compose
    from inet.engine import Engine
    from inet.run.trace import TraceRecorder, load

    cfg = compose([*overrides, "trace.interval=100", f"trace.window={iterations}"])
    engine = Engine(cfg)
    rec = TraceRecorder(tmp_path, cfg.trace, cfg.log_interval, engine)
    for _ in range(iterations):
        before = engine.iteration
        rec.before_step(engine)
        rec.after_step(before, engine, engine.step())
    rec.close()
    return cfg, load(tmp_path)["steps"]


def test_reduce_trace_tells_an_env_action_from_a_new_task_instance(tmp_path):
    """Reduce under its scripted route: `next` writes the item (an Environment action), the submit ends the
    instance and the new instance's first write is by the Environment starting it."""
    _, steps = _traced(tmp_path, ["experiment=reduce/xor", "cu.script=inet.tasks.reduce.teacher"], 40)
    fetches = [s for s in steps if s["action_name"] == "next"]
    assert fetches
    for s in fetches:
        task = s["task"]["reduce"]
        item = float(task["inputs"]["x"][task["inputs"]["fetched"]])
        assert s["writes"][0] == ["n0", "env_action", "reduce.next", [item]]
    submits = [s for s in steps if s["action_name"] == "pu0"]
    assert submits
    for s in submits:
        task = s["task"]["reduce"]
        assert s["writes"] == [["n1", "pu", "pu0", s["nodes"]["n1"]], ["n0", "new_task", "reduce", [0.0]]]
        assert task["submitted"] == s["nodes"]["n1"][0]
        assert task["error"] == pytest.approx(task["submitted"] - task["target"])
        assert task["ended"] in ("solved", "wrong answer")


def test_trace_does_not_change_training(tmp_path):
    from inet.compose import compose
    from inet.engine import Engine
    from inet.run.trace import TraceRecorder

    cfg = compose(["experiment=multitask/base", "iterations=400", "trace.interval=50", "trace.window=20"])
    plain, traced = Engine(cfg), Engine(cfg)
    rec = TraceRecorder(tmp_path, cfg.trace, cfg.log_interval, traced)
    for _ in range(400):
        plain.step()
        before = traced.iteration
        rec.before_step(traced)
        rec.after_step(before, traced, traced.step())
    rec.close()
    for (k, a), b in zip(plain.pus.state_dict().items(), traced.pus.state_dict().values()):
        assert a.equal(b), k
    assert plain.cu.q.state_dict()["head.weight"].equal(traced.cu.q.state_dict()["head.weight"])


def test_viz_refuses_a_directory_that_is_not_a_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "viz", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not a run directory" in proc.stderr and str(tmp_path) in proc.stderr


ALARMS = {"alarms": [
    {"kind": "dead_pu", "subject": "pu2", "first_iteration": 200, "last_iteration": 1200,
     "message": "pu2 was never chosen in the last 1000 iterations"},
    {"kind": "usage_collapse", "subject": "pu1", "first_iteration": 400, "last_iteration": 1200,
     "message": "pu1 took > 90% of the actions for 800 iterations <&>"}]}


def test_alarms_banner_shows_alarms_json_only_when_it_lists_alarms(tmp_path):
    from inet.analysis.viz import alarm_banner, alarms

    assert alarms(tmp_path) == [] and alarm_banner([]) == ""
    (tmp_path / "alarms.json").write_text(json.dumps({"alarms": []}))
    assert alarms(tmp_path) == []
    (tmp_path / "alarms.json").write_text(json.dumps(ALARMS))
    listed = alarms(tmp_path)
    assert [(a["label"], a["subject"]) for a in listed] == [("dead PU", "pu2"), ("usage collapse", "pu1")]
    banner = alarm_banner(listed)
    assert banner.startswith('<div id="alarms" role="alert"><b>2 alarms</b>')
    assert "iterations 200&ndash;1200" in banner and "&lt;&amp;&gt;" in banner and "<&>" not in banner
    (tmp_path / "alarms.json").write_text("{not json")
    (bad,) = alarms(tmp_path)
    assert bad["kind"] == "unreadable" and "alarms.json could not be read" in bad["message"]


def test_viewer_in_headless_chromium(run_dir, tmp_path):
    """Open viewer.html from disk (offline), move the scrubber to recorded iterations, check what it shows:
    the graph, Q-values, node writes by writer, the task instance, the CU's inputs, the PU functions, the
    scrubber's marks, the play button and the alarms banner."""
    page_path = run_dir / "viewer.html"
    (run_dir / "alarms.json").unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "viz", str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'id="alarms"' not in page_path.read_text()  # no alarms.json: no banner
    (run_dir / "alarms.json").write_text(json.dumps(ALARMS))
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "viz", str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert page_path.stat().st_size > 1_000_000  # plotly.js is inlined
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    steps = _steps(run_dir)
    for s in steps:
        s["window"] = s["iteration"] - 1 - (s["iteration"] - 1) % 500
    meta = json.loads((run_dir / "trace" / "meta.json").read_text())
    functions = {f["window"]: f for f in map(json.loads, (run_dir / "trace" / "functions.jsonl").read_text().splitlines())}
    # two recorded iterations with different actions, one of them greedy
    first = next(i for i, s in enumerate(steps) if s["iteration"] > 500 and not s["random"])
    second = next((i for i, s in enumerate(steps) if i > first and s["action"] != steps[first]["action"]),
                  next(i for i, s in enumerate(steps) if s["action"] != steps[first]["action"]))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_path.as_uri())
        page.wait_for_function("document.getElementById('qbars').data !== undefined")
        assert first != second
        for i in (second, first):  # ends on the later, greedy one for the screenshot
            rec = steps[i]
            page.locator("#scrubber").fill(str(i))
            assert page.locator("#iteration").inner_text() == str(rec["iteration"])
            assert page.locator("#action-name").inner_text() == rec["action_name"]
            assert page.locator("#random-flag").inner_text() == ("random (exploration)" if rec["random"] else "greedy")
            assert page.locator("#graph").get_attribute("data-highlight") == rec["action_name"]
            graph = page.evaluate("""() => { const t = document.getElementById('graph').data[0];
                return {ids: t.customdata, colors: t.marker.color}; }""")
            hot = [graph["ids"][k] for k, c in enumerate(graph["colors"]) if c == "#d62728"]
            assert hot == [f"pu:{rec['action_name']}"]
            bars = page.evaluate("""() => { const t = document.getElementById('qbars').data[0];
                return {x: t.x, y: t.y, colors: t.marker.color}; }""")
            assert bars["x"] == ["pu0", "pu1", "pu2"]
            assert bars["y"] == pytest.approx(rec["q"], abs=1e-6)
            assert [k for k, c in enumerate(bars["colors"]) if c == "#d62728"] == [rec["action"]]
            # the bars are drawn: one SVG bar per action
            assert page.locator("#qbars g.point").count() == 3
            _check_cu_inputs(page, rec, meta)
            _check_pu_functions(page, rec, functions)
        # a submit that ended the instance: the task panel and who wrote what
        submit = next(i for i, s in enumerate(steps) if s["iteration"] > 500 and s["action_name"] in ("pu1", "pu2"))
        rec = steps[submit]
        page.locator("#scrubber").fill(str(submit))
        task, panel = rec["task"]["multitask"], page.locator("#task table[data-env=multitask]")
        for field, want in [("input-a", task["inputs"]["a"]), ("input-b", task["inputs"]["b"]),
                            ("target", task["target"]), ("submitted", task["submitted"]), ("error", task["error"])]:
            assert float(panel.locator(f"tr[data-field={field}] td").inner_text()) == pytest.approx(want, rel=2e-3)
        assert panel.locator("tr[data-field=ended] td").inner_text() == task["ended"]
        n2 = page.locator("#node-values tr[data-node=n2] .writer")
        assert n2.count() == 1 and n2.get_attribute("data-kind") == "pu"
        assert n2.get_attribute("data-writer") == rec["action_name"]
        for node in ("n0", "n1"):  # the new task instance's inputs, written by the Environment after the submit
            w = page.locator(f"#node-values tr[data-node={node}] .writer")
            assert (w.get_attribute("data-kind"), w.get_attribute("data-writer")) == ("new_task", "multitask")
        assert page.locator("#node-values tr[data-node=n3] .writer").count() == 0
        # the scrubber marks each new window and each new task instance
        windows = [i for i in range(1, len(steps)) if steps[i]["window"] != steps[i - 1]["window"]]
        instances = [i for i in range(1, len(steps)) if i not in windows and steps[i - 1]["terminal"]]
        marked = page.eval_on_selector_all("#scrub-marks .mark-window", "m => m.map(e => parseInt(e.dataset.index))")
        assert marked == windows
        assert len(windows) == 2 and page.locator("#scrub-marks .mark-instance").count() == len(instances) > 0
        page.locator("#next").click()
        assert page.locator("#iteration").inner_text() == str(steps[submit + 1]["iteration"])
        page.locator("#prev").click()
        assert page.locator("#action-name").inner_text() == rec["action_name"]
        # play steps through the iterations until paused
        page.locator("#play").click()
        assert page.locator("#play").get_attribute("data-playing") == "true"
        page.wait_for_function(f"document.getElementById('iteration').textContent !== '{rec['iteration']}'")
        page.locator("#play").click()
        assert page.locator("#play").get_attribute("data-playing") == "false"
        paused_at = page.locator("#iteration").inner_text()
        page.wait_for_timeout(900)
        assert page.locator("#iteration").inner_text() == paused_at
        assert int(paused_at) > rec["iteration"]
        # the banner lists alarms.json's alarms
        assert page.locator("#alarms li.alarm").count() == 2
        banner = page.locator("#alarms").inner_text()
        assert "dead PU pu2 iterations 200–1200: pu2 was never chosen" in banner and "<&>" in banner
        assert page.evaluate("document.getElementById('heatmap').data[0].type") == "heatmap"
        assert page.evaluate("document.getElementById('kpis').data.length") >= 3
        page.locator("#scrubber").fill(str(first))
        page.screenshot(path=str(run_dir / "viewer.png"), full_page=True)
        browser.close()
    assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests  # offline: nothing fetched
    assert (run_dir / "viewer.png").stat().st_size > 10_000


def _check_cu_inputs(page, rec: dict, meta: dict) -> None:
    """The CU's input vector as bars, one trace per part, in the order of the vector."""
    bars = page.evaluate("""() => document.getElementById('cu-inputs').data.map(t => ({name: t.name, x: t.x, y: t.y}))""")
    assert [b["name"] for b in bars] == ["history", "signals", "nodes", "meta"]
    assert [x for b in bars for x in b["x"]] == [lab["label"] for lab in meta["cu_inputs"]]
    assert [y for b in bars for y in b["y"]] == pytest.approx(rec["cu_input"])


def _check_pu_functions(page, rec: dict, functions: dict) -> None:
    """pu0 a heat map, pu1 and pu2 curves beside their targets, all as sampled at the scrubbed window."""
    sampled = functions[rec["window"]]["pus"]
    for pu in ("pu0", "pu1", "pu2"):
        el = page.locator(f"#pu-fn-{pu}")
        assert el.get_attribute("data-window") == str(rec["window"])
        data = page.evaluate(f"""() => document.getElementById('pu-fn-{pu}').data.map(
            t => ({{type: t.type, name: t.name, x: t.x, y: t.y, z: t.z}}))""")
        if pu == "pu0":
            assert data[0]["type"] == "heatmap" and data[0]["z"] == sampled["pu0"][0]
            continue
        assert data[0]["y"] == pytest.approx(sampled[pu][0])
        target = next(t for t in data if t["name"].startswith("target"))
        assert target["name"] == {"pu1": "target: 2a", "pu2": "target: b/2"}[pu]
        assert target["y"] == pytest.approx([2 * x if pu == "pu1" else x / 2 for x in target["x"]], abs=1e-3)
        marker = [t for t in data if t["name"] == "this iteration"]
        assert len(marker) == (1 if rec["action_name"] == pu else 0)
    # the curves are drawn (SVG paths), not only in the data
    assert page.locator("#pu-fn-pu1 .scatterlayer path.js-line").count() >= 2


def test_resumed_run_records_the_same_trace(tmp_path, monkeypatch):
    """SIGTERM inside a trace window, then resume=true: trace/ equals an uninterrupted run's, byte for byte."""
    import signal

    from inet.compose import compose
    from inet.engine import Engine
    from inet.run.runner import RunInterrupted, run

    overrides = ["experiment=multitask/base", "iterations=1000", "log_interval=200", "checkpoint_interval=300",
                 "trace.interval=400", "trace.window=150", "progress=false", "seed=2"]
    run(compose(overrides), tmp_path / "full", "config: test\n")
    original = Engine.step

    def step(self):
        out = original(self)
        if self.iteration == 450:  # inside the window [400, 550), after the checkpoint at 300 and a log at 400
            signal.raise_signal(signal.SIGTERM)
        return out

    monkeypatch.setattr(Engine, "step", step)
    with pytest.raises(RunInterrupted):
        run(compose(overrides), tmp_path / "cut", "config: test\n")
    monkeypatch.undo()
    run(compose([*overrides, "resume=true"]), tmp_path / "cut", "config: test\n")
    full, cut = tmp_path / "full" / "trace", tmp_path / "cut" / "trace"
    names = sorted(p.name for p in full.iterdir())
    assert names == ["actions.csv", "functions.jsonl", "meta.json", "window_0000000000.jsonl",
                     "window_0000000400.jsonl", "window_0000000800.jsonl"]
    assert sorted(p.name for p in cut.iterdir()) == names
    for name in names:
        assert (cut / name).read_bytes() == (full / name).read_bytes(), name


def test_show_displays_inline_in_jupyter(run_dir):
    from inet.analysis.viz import show

    html = show(run_dir)._repr_html_()
    assert html.startswith("<iframe srcdoc=") and "&lt;script&gt;" in html and "</script>" not in html


@pytest.mark.parametrize("override, key", [("trace.interval=0", "trace.interval"), ("trace.window=0", "trace.window"),
                                           ("trace.window=20000", "trace.window"), ("trace.lane=1", "trace.lane")])
def test_trace_settings_are_validated(override, key):
    from inet.compose import compose
    from inet.config import ConfigError

    with pytest.raises(ConfigError, match=f"^{key}:"):
        compose([override])


def test_network_layout_of_a_task_with_env_actions_and_a_memory_loop():
    """Fig. 1 for a reduce-like IN: env action `next`, a PU reading and writing the same node, a CU-visible node."""
    from inet.analysis.viz import network

    config = {"nodes": {"n0": {}, "n1": {}, "n2": {"cu_visible": True}},
              "pus": {"pu0": {"inputs": ["n2"], "outputs": ["n1"]}, "pu1": {"inputs": ["n0", "n2"], "outputs": ["n2"]},
                      "pu2": {"inputs": ["n2"], "outputs": ["n2"]}},
              "envs": {"reduce": {"inputs": ["n0"], "outputs": ["n1"]}}}
    actions = [{"name": "next", "kind": "env", "env": "reduce"},
               *({"name": p, "kind": "pu", "env": None} for p in ("pu0", "pu1", "pu2"))]
    net = network(config, actions)
    ids = {e["id"]: e for e in net["elements"]}
    assert set(ids) == {"env:reduce", "node:n0", "node:n1", "node:n2", "pu:pu0", "pu:pu1", "pu:pu2", "cu"}
    assert ids["env:reduce"]["actions"] == [0] and ids["pu:pu2"]["actions"] == [3]
    assert ids["env:reduce"]["x"] < ids["node:n0"]["x"] < ids["pu:pu1"]["x"]
    edges = {tuple(e) for e in net["edges"]}
    assert {("pu:pu2", "node:n2", "data"), ("node:n2", "pu:pu2", "data"), ("node:n1", "env:reduce", "data"),
            ("env:reduce", "node:n0", "data"), ("node:n2", "cu", "cu")} <= edges
    positions = {(e["x"], e["y"]) for e in net["elements"]}
    assert len(positions) == len(net["elements"])  # no two elements drawn on top of each other


def _clear_of_other_elements(net: dict) -> dict:
    """Each edge's least distance to an element it does not join."""
    from inet.analysis.viz_layout import clearance

    at = {e["id"]: (e["x"], e["y"]) for e in net["elements"]}
    return {(a, b): clearance([tuple(p) for p in path], [p for k, p in at.items() if k not in (a, b)])
            for (a, b, _), path in zip(net["edges"], net["paths"])}


@pytest.mark.parametrize("experiment", ["reduce/xor", "multitask/base", "multi/multitask_reduce"])
def test_no_edge_is_drawn_through_an_element(experiment):
    """Reduce's environment <-> n1 edge used to run straight through pu1, n2 and pu0; now it is routed below."""
    from omegaconf import OmegaConf

    from inet.analysis.viz_layout import CLEARANCE, network
    from inet.compose import compose
    from inet.engine import Engine
    from inet.run.trace import action_kinds

    cfg = compose([f"experiment={experiment}"])
    net = network(OmegaConf.to_container(OmegaConf.structured(cfg)), action_kinds(Engine(cfg)))
    clear = _clear_of_other_elements(net)
    assert min(clear.values()) >= CLEARANCE, {k: v for k, v in clear.items() if v < CLEARANCE}
    at = {e["id"]: [e["x"], e["y"]] for e in net["elements"]}
    assert all(path[0] == at[a] and path[-1] == at[b] for (a, b, _), path in zip(net["edges"], net["paths"]))
    if experiment == "reduce/xor":
        paths = {(a, b): p for (a, b, _), p in zip(net["edges"], net["paths"])}
        assert len(paths[("node:n1", "env:reduce")]) > 2  # routed, not straight
        assert len(paths[("node:n2", "pu:pu0")]) == 2


def test_node_kinds_and_pu_kinds_are_drawn_with_an_accumulating_nodes_entry_count(tmp_path):
    """emulate/attention under its script: the encoder fills the accumulating node one entry per item; the graph
    names each non-vector node's kind and size, and each built-in PU kind other than mlp."""
    from inet.analysis.viz import network
    from inet.compose import config_yaml
    from inet.run.trace import load
    import yaml

    cfg, steps = _traced(tmp_path, ["experiment=emulate/attention"], 30)
    (acc,) = [n for n, spec in cfg.nodes.items() if spec.kind == "accumulating"]
    counts = [s["counts"][acc] for s in steps]
    assert max(counts) == cfg.nodes[acc].capacity and min(counts) == 0  # filled per sequence, cleared after
    assert all(b - a in (0, 1) or b == 0 for a, b in zip(counts, counts[1:]))  # one entry per encode, or a clear
    net = network(yaml.safe_load(config_yaml(cfg)), load(tmp_path)["meta"]["actions"])
    node = next(e for e in net["elements"] if e["id"] == f"node:{acc}")
    assert (node["subkind"], node["size"]) == ("accumulating", cfg.nodes[acc].capacity)
    kinds = {e["name"]: e["subkind"] for e in net["elements"] if e["kind"] == "pu"}
    assert kinds == {n: p.kind for n, p in cfg.pus.items()}
