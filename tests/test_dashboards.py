"""TensorBoard dashboards of one run: SB3 tag prefixes, learning diagnostics (Q-values, learning rates, per PU
usage share, loss and gradient norm), alarms, typed HParams in the run's own event file, custom scalars, the KPI
figure."""
import math
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from inet.tasks.kpi_registry import TAG_GROUPS

PUS = ("pu0", "pu1", "pu2")
STEPS = [200, 400, 600]


@pytest.fixture(scope="module")
def acc(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "r"
    cmd = [sys.executable, "-m", "inet.cli", "run", "experiment=multitask/pretrained", "iterations=600",
           "log_interval=200", "pus.pu0.pretrain.steps=200", "pus.pu1.pretrain.steps=200",
           "pus.pu2.pretrain.steps=200", "seed=3", "progress=false", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # one run in TensorBoard: a single event file, no sub-runs (add_hparams / add_scalars would add some)
    assert [p.name for p in (out / "tb").iterdir() if p.is_dir()] == []
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 1
    a = EventAccumulator(str(out / "tb"), size_guidance={"tensors": 0, "images": 0})
    a.Reload()
    return a


def _plugin(acc, plugin: str) -> dict:
    return acc.PluginTagToContent(plugin)


def test_hparams_session_with_final_kpis_as_metrics(acc):
    content = _plugin(acc, "hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hp = {k: v for k, v in start.hparams.items()}
    assert hp["seed"].number_value == 3
    assert hp["name"].string_value == "multitask/pretrained"
    assert hp["pu_optim.guard"].number_value == 3.0
    assert hp["cu.double"].WhichOneof("kind") == "bool_value" and hp["cu.double"].bool_value is False
    # typed: an unset key (None) is left out, never the text "None"
    assert "cu.script" not in hp and all(v.string_value != "None" for v in hp.values())
    kinds = {i.name: i.type for i in plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment.hparam_infos}
    assert kinds["seed"] == kinds["pu_optim.guard"] == api_pb2.DATA_TYPE_FLOAT64
    assert kinds["cu.double"] == api_pb2.DATA_TYPE_BOOL and kinds["name"] == api_pb2.DATA_TYPE_STRING
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = [m.name.tag for m in exp.metric_infos]
    assert "rollout/task_success" in metrics and "rollout/optimal_route_rate" in metrics
    scalars = set(acc.Tags()["scalars"])
    assert {"rollout/task_success", "rollout/optimal_route_rate", "rollout/reward_per_task"} <= scalars


def test_custom_scalars_layout_names_existing_tags(acc):
    assert "custom_scalars__config__" in _plugin(acc, "custom_scalars")
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    titles = [c.title for c in layout.category]
    assert titles == ["KPIs", "Learning", "PUs", "Alarms"]
    charts = {(c.title, chart.title): set(chart.multiline.tag) for c in layout.category for chart in c.chart}
    assert charts["Learning", "Q-values"] == {"train/q_mean", "train/q_min", "train/q_max"}
    assert {"train/learning_rate", *(f"train/pu_learning_rate/{p}" for p in PUS)} == charts["Learning", "learning rates"]
    assert charts["PUs", "PU usage share"] == {f"rollout/pu_usage/{p}" for p in PUS}
    assert charts["PUs", "PU gradient norm"] == {f"train/pu_grad_norm/{p}" for p in PUS}
    assert charts["PUs", "PU loss"] == {f"train/pu_loss/{p}" for p in PUS}
    assert charts["Alarms", "alarms (subjects in alarm)"] == {
        f"alarms/{k}" for k in ("dead_pu", "usage_collapse", "q_divergence", "pu_drift")}
    tags = {t for c in layout.category for chart in c.chart for t in chart.multiline.tag}
    scalars = set(acc.Tags()["scalars"])
    assert tags <= scalars, tags - scalars


def test_kpi_plot_is_logged_as_a_figure(acc):
    assert "plots/kpis" in acc.Tags()["images"]
    (image,) = acc.Images("plots/kpis")
    assert image.step == 600 and image.width > 300


def _values(acc, tag: str) -> list:
    events = acc.Scalars(tag)
    assert [e.step for e in events] == STEPS, tag
    return [e.value for e in events]


def test_every_scalar_uses_an_sb3_prefix(acc):
    scalars = acc.Tags()["scalars"]
    assert {t.split("/")[0] for t in scalars} <= set(TAG_GROUPS), scalars
    assert not [t for t in scalars if t.split("/")[0] in ("charts", "losses", "cu")]
    assert {"rollout/task_success", "rollout/epsilon", "train/td_loss", "train/pu_loss",
            "time/iterations_per_second"} <= set(scalars)


def test_q_values_and_learning_rates(acc):
    q = {s: _values(acc, f"train/q_{s}") for s in ("min", "mean", "max")}
    assert all(lo <= m <= hi for lo, m, hi in zip(q["min"], q["mean"], q["max"]))
    assert all(math.isfinite(v) for vs in q.values() for v in vs)
    assert _values(acc, "train/learning_rate") == pytest.approx([1e-3] * 3)
    for pu in PUS:
        assert all(v > 0 for v in _values(acc, f"train/pu_learning_rate/{pu}"))


def test_per_pu_usage_share_loss_and_gradient_norm(acc):
    usage = {pu: _values(acc, f"rollout/pu_usage/{pu}") for pu in PUS}
    for i in range(len(STEPS)):
        shares = [usage[pu][i] for pu in PUS]
        assert all(0.0 <= s <= 1.0 for s in shares) and 0.0 < sum(shares) <= 1.0 + 1e-6
    norms = [v for pu in PUS for v in _values(acc, f"train/pu_grad_norm/{pu}")]
    assert any(v > 0 for v in norms) and all(v >= 0 or math.isnan(v) for v in norms)
    # multitask's loss is on the submitted node n2: it reaches pu1 and pu2 (which write n2), never pu0 (which
    # writes n3, read by no PU)
    losses = {pu: _values(acc, f"train/pu_loss/{pu}") for pu in PUS}
    assert all(math.isnan(v) for v in losses["pu0"])
    assert all(v >= 0 for pu in ("pu1", "pu2") for v in losses[pu] if not math.isnan(v))
    assert any(v > 0 for pu in ("pu1", "pu2") for v in losses[pu])
