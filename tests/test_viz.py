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
    usage = (run_dir / "trace" / "actions.csv").read_text().splitlines()
    assert usage[0] == "iteration,pu0,pu1,pu2"
    rows = [[int(x) for x in ln.split(",")] for ln in usage[1:]]
    assert [r[0] for r in rows] == [200, 400, 600, 800, 1000, 1200]
    assert all(sum(r[1:]) == 200 for r in rows)


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


def test_viewer_in_headless_chromium(run_dir, tmp_path):
    """Open viewer.html from disk (offline), move the scrubber to two recorded iterations, check what it shows."""
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "viz", str(run_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    page_path = run_dir / "viewer.html"
    assert page_path.stat().st_size > 1_000_000  # plotly.js is inlined
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    steps = _steps(run_dir)
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
        page.locator("#next").click()
        assert page.locator("#iteration").inner_text() == str(steps[first + 1]["iteration"])
        page.locator("#prev").click()
        assert page.locator("#action-name").inner_text() == steps[first]["action_name"]
        assert page.evaluate("document.getElementById('heatmap').data[0].type") == "heatmap"
        assert page.evaluate("document.getElementById('kpis').data.length") >= 3
        page.screenshot(path=str(run_dir / "viewer.png"), full_page=True)
        browser.close()
    assert all(u.startswith(("file:", "data:", "blob:")) for u in requests), requests  # offline: nothing fetched
    assert (run_dir / "viewer.png").stat().st_size > 10_000


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
    assert names == ["actions.csv", "meta.json", "window_0000000000.jsonl", "window_0000000400.jsonl",
                     "window_0000000800.jsonl"]
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
