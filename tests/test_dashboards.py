"""TensorBoard dashboards of one run: HParams in the run's own event file, custom scalars, the KPI figure."""
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2


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
    assert hp["cu.double"].bool_value is False
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = [m.name.tag for m in exp.metric_infos]
    assert "charts/task_success" in metrics and "charts/optimal_route_rate" in metrics
    scalars = set(acc.Tags()["scalars"])
    assert {"charts/task_success", "charts/optimal_route_rate", "charts/reward_per_task"} <= scalars


def test_custom_scalars_layout_names_existing_tags(acc):
    assert "custom_scalars__config__" in _plugin(acc, "custom_scalars")
    (event,) = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    titles = [c.title for c in layout.category]
    assert titles == ["KPIs", "Learning"]
    tags = {t for c in layout.category for chart in c.chart for t in chart.multiline.tag}
    scalars = set(acc.Tags()["scalars"])
    assert tags <= scalars, tags - scalars


def test_kpi_plot_is_logged_as_a_figure(acc):
    assert "plots/kpis" in acc.Tags()["images"]
    (image,) = acc.Images("plots/kpis")
    assert image.step == 600 and image.width > 300
