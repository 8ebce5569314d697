"""Alarms (inet/run/alarms.py): each raised by a run built to trigger it and not by a healthy one, in alarms.json,
kpis.csv and TensorBoard; the monitor driven directly with constructed statistics; the config keys checked."""
import csv
import json
import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inet.compose import compose
from inet.config import AlarmsConfig, ConfigError, validate
from inet.engine import Engine
from inet.run.alarms import FILENAME, KINDS, AlarmMonitor, DriftProbe, max_reward, q_bound
from inet.run.runner import run
from inet.tasks.multitask import teacher

from interrupt import run_until

COLUMNS = [f"alarms_{k}" for k in KINDS]
FAST = ["iterations=400", "log_interval=100", "progress=false", "trace.enabled=false", "checkpoint_interval=0"]
# thresholds a 400-iteration run can reach: a PU unused for 150 of the CU's choices is dead, 200 choices above
# 95% are a collapse, a 10% change of a PU's outputs as its usage share moves by 20 points is a drift
SCRIPTED = ["experiment=multitask/base", *FAST, "alarms.dead_pu_iterations=150", "alarms.collapse_iterations=200",
            "alarms.drift_change=0.1", "pus.pu1.lr=0.3", "+nodes.clock={shape: [1], round_to: [0], round_from: 200}"]


def always_pu1(env) -> torch.Tensor:
    return torch.full((env.lanes,), env.action_index["pu1"], dtype=torch.long)


def teacher_then_pu1(env) -> torch.Tensor:
    """The multitask route for the first 200 iterations, then pu1 only (pu1 retrains on both targets). The
    engine tells the nodes the iteration (for rounding): node `clock` rounds from 200 on, whatever resumed."""
    return always_pu1(env) if "clock" in env.nodes.round_to else teacher(env)


def strict(text: str):
    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def alarms_of(run_dir: Path) -> list:
    doc = strict((run_dir / FILENAME).read_text())
    assert list(doc) == ["alarms"]
    for a in doc["alarms"]:
        assert list(a) == ["kind", "subject", "first_iteration", "last_iteration", "message"]
        assert a["kind"] in KINDS and isinstance(a["subject"], str) and a["message"].endswith(".")
        assert isinstance(a["first_iteration"], int) and a["first_iteration"] <= a["last_iteration"]
    return doc["alarms"]


def held(run_dir: Path) -> dict:
    """(kind, subject) -> (first, last iteration)."""
    return {(a["kind"], a["subject"]): (a["first_iteration"], a["last_iteration"]) for a in alarms_of(run_dir)}


def columns(run_dir: Path) -> dict:
    with open(run_dir / "kpis.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: [float(r[c]) for r in rows] for c in COLUMNS}


def tensorboard(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A scripted CU that follows the multitask route, then runs pu1 only from iteration 200."""
    out = tmp_path_factory.mktemp("alarms") / "broken"
    run(compose([*SCRIPTED, "cu.script=test_alarms.teacher_then_pu1"]), out, "config: test\n")
    return out


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    """The same run with the route throughout."""
    out = tmp_path_factory.mktemp("alarms") / "healthy"
    run(compose([*SCRIPTED, "cu.script=inet.tasks.multitask.teacher"]), out, "config: test\n")
    return out


def test_a_cu_that_drops_two_pus_raises_dead_pu_usage_collapse_and_pu_drift(broken):
    assert held(broken) == {
        ("dead_pu", "pu0"): (400, 400), ("dead_pu", "pu2"): (400, 400),  # unused from 200: 200 choices >= 150
        ("usage_collapse", "pu1"): (400, 400),  # 100% of the choices of 300-400 only: 200 choices
        ("pu_drift", "pu1"): (300, 300),  # retrained on the other PU's target as its share went ~25% -> 100%
    }
    cols = columns(broken)
    assert cols["alarms_dead_pu"] == [0, 0, 0, 2] and cols["alarms_usage_collapse"] == [0, 0, 0, 1]
    assert cols["alarms_pu_drift"] == [0, 0, 1, 0]
    assert all(math.isnan(v) for v in cols["alarms_q_divergence"])  # a scripted CU has no Q-values
    acc = tensorboard(broken)
    assert [(e.step, e.value) for e in acc.Scalars("alarms/dead_pu")] == [(100, 0), (200, 0), (300, 0), (400, 2)]
    texts = {e.step: e.tensor_proto.string_val[0].decode() for e in acc.Tensors("alarms/text_summary")}
    assert sorted(texts) == [300, 400]
    assert "pu_drift (pu1)" in texts[300] and "dead_pu (pu0)" in texts[400] and "usage_collapse (pu1)" in texts[400]


def test_the_same_run_on_the_route_raises_nothing(healthy):
    assert alarms_of(healthy) == []
    cols = columns(healthy)
    for c in ("alarms_dead_pu", "alarms_usage_collapse", "alarms_pu_drift"):
        assert cols[c] == [0, 0, 0, 0], c
    assert "alarms/text_summary" not in tensorboard(healthy).Tags()["tensors"]


def test_alarm_columns_are_the_same_in_every_run(broken, healthy, tmp_path):
    off = tmp_path / "off"
    run(compose(["experiment=multitask/base", *FAST, "alarms.dead_pu_iterations=0", "alarms.q_margin=null",
                 "alarms.drift_change=null", "alarms.collapse_iterations=0"]), off, "config: test\n")
    heads = [(d / "kpis.csv").read_text().splitlines()[0] for d in (broken, healthy, off)]
    assert heads[0] == heads[1] == heads[2] and all(c in heads[0].split(",") for c in COLUMNS)
    assert all(math.isnan(v) for vs in columns(off).values() for v in vs)  # off: never measured
    assert alarms_of(off) == []  # present, empty


def test_resumed_run_keeps_its_alarms(broken, tmp_path, monkeypatch):
    overrides = [*SCRIPTED, "cu.script=test_alarms.teacher_then_pu1", "checkpoint_interval=50"]
    cut = tmp_path / "cut"
    run_until(monkeypatch, overrides, cut, 350)  # after the drift alarm, before dead PU and collapse
    assert held(cut) == {("pu_drift", "pu1"): (300, 300)}
    run(compose([*overrides, "resume=true"]), cut, "config: test\n")
    assert (cut / FILENAME).read_text() == (broken / FILENAME).read_text()
    assert (cut / "kpis.csv").read_text() == (broken / "kpis.csv").read_text()


LEARNED = ["experiment=multitask/cu_inputs", "iterations=300", "log_interval=100", "progress=false",
           "trace.enabled=false", "checkpoint_interval=0"]


def test_q_values_beyond_the_reward_bound_raise_q_divergence_and_within_it_do_not(tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    run(compose(LEARNED), ok, "config: test\n")
    # the same run, told that no iteration's reward exceeds 1e-4: its Q-values of ~0.1 cannot be returns
    run(compose([*LEARNED, "alarms.max_reward=1e-4"]), bad, "config: test\n")
    assert alarms_of(ok) == [] and columns(ok)["alarms_q_divergence"] == [0, 0, 0]
    (alarm,) = alarms_of(bad)
    assert (alarm["kind"], alarm["subject"], alarm["first_iteration"], alarm["last_iteration"]) == \
        ("q_divergence", "cu", 100, 300)
    assert "0.002" in alarm["message"]  # 2 x 1e-4 / (1 - 0.9)
    assert columns(bad)["alarms_q_divergence"] == [1, 1, 1]
    assert [e.value for e in tensorboard(bad).Scalars("alarms/q_divergence")] == [1, 1, 1]


# -- the monitor driven directly ---------------------------------------------------------------------------------
ACTIONS = ["submit", "pu0", "pu1"]


def monitor(**keys) -> AlarmMonitor:
    off = dict(dead_pu_iterations=0, collapse_iterations=0, q_margin=None, drift_change=None)
    return AlarmMonitor(AlarmsConfig(**{**off, **keys}), ACTIONS, ["pu0", "pu1"], q_bound=10.0)


def interval(m: AlarmMonitor, counts: dict, explored: int = 0) -> None:
    """One log interval's choices: counts by action name, plus `explored` exploration draws of pu1."""
    actions = [ACTIONS.index(a) for a, n in counts.items() for _ in range(n)]
    m.count(torch.tensor(actions + [2] * explored), torch.tensor([False] * len(actions) + [True] * explored))


def test_dead_pu_counts_the_cus_choices_only():
    m = monitor(dead_pu_iterations=300)
    raised = []
    for it in range(1, 7):
        # pu1 is chosen in the first interval only; later it runs as exploration draws, which do not count
        interval(m, {"submit": 50, "pu0": 50, "pu1": 1 if it == 1 else 0}, explored=0 if it == 1 else 20)
        cols = m.check(it * 100, {})
        raised += [(a.kind, a.subject, it) for a in m.raised]
        assert cols["alarms_dead_pu"] == (1.0 if it >= 4 else 0.0)
    assert raised == [("dead_pu", "pu1", 4)]  # 100 choices per interval: idle 300 at the 4th check
    assert m.alarms["dead_pu", "pu1"].last_iteration == 600


def test_usage_collapse_needs_every_interval_above_the_share():
    m = monitor(collapse_share=0.9, collapse_iterations=300)
    shares = [95, 95, 80, 95, 95, 95, 95]  # per 100 choices, pu0's; the dip at the 3rd restarts the count
    cols = []
    for it, s in enumerate(shares, 1):
        interval(m, {"pu0": s, "submit": 100 - s})
        cols.append(m.check(it * 100, {})["alarms_usage_collapse"])
    assert cols == [0, 0, 0, 0, 0, 1, 1]
    assert m.alarms["usage_collapse", "pu0"].first_iteration == 600
    healthy = monitor(collapse_share=0.9, collapse_iterations=300)
    for it in range(1, 8):
        interval(healthy, {"pu0": 89, "submit": 11})
        assert healthy.check(it * 100, {})["alarms_usage_collapse"] == 0
    assert not healthy.alarms


def test_q_divergence_beyond_the_margin_of_the_largest_return():
    m = monitor(q_margin=2.0)  # bound 10: alarm beyond |Q| = 20
    assert m.check(100, {"q_min": -5.0, "q_max": 19.9})["alarms_q_divergence"] == 0
    assert m.check(200, {"q_min": -20.5, "q_max": 3.0})["alarms_q_divergence"] == 1
    assert [(a.kind, a.subject) for a in m.raised] == [("q_divergence", "cu")]
    assert math.isnan(m.check(300, {"q_min": math.nan, "q_max": math.nan})["alarms_q_divergence"])  # no Q-values


def test_pu_drift_needs_a_sharp_change_and_a_usage_change():
    m = monitor(drift_change=0.5, drift_usage_change=0.2)
    base = torch.linspace(-1, 1, 8).unsqueeze(1)

    def check(it: int, out0, out1, use0: float, use1: float) -> float:
        return m.check(it, {"pu_usage/pu0": use0, "pu_usage/pu1": use1}, {"pu0": out0, "pu1": out1})["alarms_pu_drift"]

    assert check(100, base, base, 0.3, 0.3) == 0  # nothing to compare with yet
    assert check(200, base * 3, base, 0.3, 0.7) == 0  # pu0 changed, its usage did not; pu1 the reverse
    assert check(300, base * 3, base * 1.2, 0.3, 0.3) == 0  # pu1 changed by 20% only
    assert check(400, base, base * 1.2, 0.6, 0.3) == 1  # pu0: -67% as its share went 30% -> 60%
    assert [(a.kind, a.subject) for a in m.raised] == [("pu_drift", "pu0")]
    assert "30% to 60%" in m.alarms["pu_drift", "pu0"].message


def test_drift_probe_holds_a_pus_own_inputs_and_sees_its_function_change():
    engine = Engine(compose(["experiment=multitask/base", "iterations=100", "lanes=4",
                             "cu.script=inet.tasks.multitask.teacher"]))
    probe = DriftProbe(engine.pus, ["pu0", "pu1", "pu2"], rows=16)
    for _ in range(40):
        engine.step()
        probe.collect(engine.tape)
    assert probe.full and [probe.size(p) for p in ("pu0", "pu1", "pu2")] == [16, 16, 16]
    a = probe.inputs["pu1"][0]
    assert a.shape == (16, 1) and 0.0 <= float(a.min()) and float(a.max()) <= 1.0  # multitask's inputs, U(0, 1)
    before = probe.outputs()
    assert before["pu1"].shape == (16, 1)
    with torch.no_grad():
        engine.pus["pu1"].net[-1].bias += 5.0
    after = probe.outputs()
    assert torch.equal(before["pu0"], after["pu0"]) and not torch.equal(before["pu1"], after["pu1"])


def test_max_reward_and_the_q_bound_from_the_reward_terms():
    multitask = compose(["experiment=multitask/base"])  # success 1, timeout penalty -0.5
    assert max_reward(multitask) == 1.0 and q_bound(multitask) == pytest.approx(10.0)  # gamma 0.9
    harsh = compose(["experiment=reduce/xor", "reward@envs.reduce.reward=harsh"])  # 1 and 0.01 per iteration
    assert max_reward(harsh) == pytest.approx(1.01)
    assert q_bound(compose(["experiment=multitask/base", "alarms.max_reward=3", "cu.gamma=0.5"])) == 6.0
    assert q_bound(compose(["experiment=multitask/base", "cu.gamma=1.0"])) is None  # no bound
    assert q_bound(compose(["experiment=multitask/base", "cu.popart=true"])) is None  # normalised values


@pytest.mark.parametrize("key, value", [("dead_pu_iterations", -1), ("collapse_share", 1.0), ("collapse_share", 0.0),
                                        ("collapse_iterations", -5), ("q_margin", 0.5), ("max_reward", 0.0),
                                        ("drift_change", 0.0), ("drift_usage_change", 1.0)])
def test_bad_alarm_values_name_their_key(key, value):
    cfg = compose(["experiment=multitask/base"])
    setattr(cfg.alarms, key, value)
    with pytest.raises(ConfigError, match=rf"^alarms\.{key}: "):
        validate(cfg)


def test_no_usage_collapse_with_a_single_action():
    m = AlarmMonitor(AlarmsConfig(collapse_iterations=100), ["pu0"], ["pu0"], q_bound=None)
    for it in range(1, 4):
        m.count(torch.zeros(100, dtype=torch.long), torch.zeros(100, dtype=torch.bool))
        assert math.isnan(m.check(it * 100, {})["alarms_usage_collapse"])
    assert not m.alarms
