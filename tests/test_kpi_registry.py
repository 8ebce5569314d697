"""The KPI registry: a task declares each KPI once, and every output takes the KPI list from there."""
import json
import shutil

import pandas as pd
import pytest
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from inet.analysis import viz
from inet.analysis.report import write_report
from inet.compose import compose
from inet.config import CUConfig, EnvConfig, NodeConfig, PUConfig, RunConfig, TraceConfig
from inet.engine import Engine
from inet.run.logger import RunLogger
from inet.run.plots import plot_run
from inet.run.runner import run
from inet.tasks import kpi_registry
from inet.tasks.kpi_registry import KPI, declared_kpis, qualified


def toy_config(envs=("toy",), **top) -> RunConfig:
    """An IN for tests/toy_kpi_task.py: n0 -> pu0 -> n1 per Environment; a scripted CU with one
    Environment (a script acts on one), the DQN with several."""
    nodes = {f"{e}_{n}": NodeConfig() for e in envs for n in ("in", "out")}
    pus = {("pu0" if i == 0 else f"pu{i}"): PUConfig(inputs=[f"{e}_in"], outputs=[f"{e}_out"])
           for i, e in enumerate(envs)}
    envs_cfg = {e: EnvConfig(_target_="toy_kpi_task.Echo", inputs=[f"{e}_in"], outputs=[f"{e}_out"]) for e in envs}
    script = "toy_kpi_task.teacher" if len(envs) == 1 else None
    return RunConfig(name="toy/echo", nodes=nodes, pus=pus, envs=envs_cfg,
                     cu=CUConfig(script=script, inputs=["history", "signals"]), **top)


def toy_run(run_dir, overrides=()):
    """A short run of the toy task with a Hydra-like .hydra/ (for `inet report` and the viewer)."""
    cfg = toy_config(iterations=600, log_interval=200, progress=False, trace=TraceConfig(interval=200, window=10))
    (run_dir / ".hydra").mkdir(parents=True)
    config_yaml = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    (run_dir / ".hydra" / "config.yaml").write_text(config_yaml)
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(list(overrides)))
    run(cfg, run_dir, config_yaml)
    return run_dir


def test_a_kpi_declared_by_a_task_outside_inet_reaches_every_output(tmp_path):
    """tests/toy_kpi_task.py declares `mean_abs_error` (lower is better); nothing under inet/ names it."""
    run_dir = toy_run(tmp_path / "run")
    # kpis.csv and summary.json
    df = pd.read_csv(run_dir / "kpis.csv")
    assert "mean_abs_error" in df.columns and df["mean_abs_error"].notna().all()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mean_abs_error"] == pytest.approx(df["mean_abs_error"].iloc[-1])
    assert [k.name for k in kpi_registry.load(run_dir)][-1] == "mean_abs_error"
    # TensorBoard: the scalar, an HParams metric, a custom-scalars chart
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("rollout/mean_abs_error")] == [200, 400, 600]
    hp = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    assert "rollout/mean_abs_error" in [m.name.tag for m in plugin_data_pb2.HParamsPluginData.FromString(hp)
                                       .experiment.metric_infos]
    (event,) = acc.Tensors("custom_scalars__config__")
    charts = {c.title: list(c.multiline.tag) for cat in layout_pb2.Layout.FromString(
        event.tensor_proto.string_val[0]).category for c in cat.chart}
    assert charts["mean abs error"] == ["rollout/mean_abs_error"]
    # the run's plots: a panel for it in plots/kpis.png
    figures = plot_run(run_dir / "kpis.csv", tmp_path / "plots", "toy", kpi_registry.load(run_dir))
    assert "mean abs error" in [ax.get_ylabel() for ax in figures["kpis"].axes]
    # the viewer's page data
    data = viz.collect(run_dir)
    panel = next(p for p in data["kpis"]["panels"] if p["title"] == "mean abs error")
    assert panel["series"]["mean_abs_error"] == pytest.approx(df["mean_abs_error"].tolist())
    # `inet report`: a second variant with a larger error; lower is better, so the first is the best
    worse = tmp_path / "worse"
    shutil.copytree(run_dir, worse)
    (worse / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(["pu_optim.lr=0.1"]))
    (worse / "summary.json").write_text(json.dumps({**summary, "mean_abs_error": 2 * summary["mean_abs_error"]}))
    md = write_report([run_dir, worse], tmp_path / "report").read_text()
    table = md.split("## KPIs", 1)[1].split("##", 1)[0].splitlines()
    header = next(line for line in table if line.startswith("| variant | seeds |")).split(" | ")
    column = header.index("mean_abs_error ↓")
    cells = {line.split(" | ")[0]: line.split(" | ")[column] for line in table if line.startswith("| `toy/echo")}
    assert cells["| `toy/echo`"].endswith("(best)") and not cells["| `toy/echo (pu_optim.lr=0.1)`"].endswith("(best)")
    assert cells["| `toy/echo`"].startswith(f"{summary['mean_abs_error']:.4g}")
    report = pd.read_csv(tmp_path / "report" / "report.csv").set_index("variant")
    assert report.loc["toy/echo", "mean_abs_error_mean"] == pytest.approx(summary["mean_abs_error"])
    assert (tmp_path / "report" / "plots" / "mean_abs_error.png").stat().st_size > 5_000


def test_one_environment_keeps_the_names_several_prefix_them_with_the_environments_name():
    kpi = KPI("eval_success_L8", "x", tag_group="eval")
    assert qualified("reduce", kpi, 1) == kpi and kpi.tag == "eval/success_L8"
    two = qualified("reduce", kpi, 2)
    assert two.name == "reduce/eval_success_L8" and two.tag == "eval/reduce/success_L8"
    engine = Engine(toy_config(envs=("a", "b")))
    names = [k.name for k in engine.declared_kpis()]
    assert names[:2] == ["a/task_success", "a/reward_per_iteration"] and "b/mean_abs_error" in names
    for _ in range(20):
        engine.step()
    metrics = engine.metrics()
    assert {"a/mean_abs_error", "b/mean_abs_error"} <= set(metrics) and "mean_abs_error" not in metrics


def test_tasks_declare_their_kpis_bases_first_and_by_configuration():
    multitask = Engine(compose(["experiment=multitask/base"])).declared_kpis()
    assert [k.name for k in multitask] == ["task_success", "reward_per_iteration", "reward_per_task",
                                           "iterations_to_converge", "tasks", "optimal_route_rate",
                                           "correct_pu_rate"]
    plain = Engine(compose(["experiment=reduce/xor", "evaluation.interval=0"])).declared_kpis()
    evaluated = Engine(compose(["experiment=reduce/xor", "evaluation.interval=100",
                                "evaluation.lengths=[1,4]"])).declared_kpis()
    extra = [k.name for k in evaluated if k not in plain]
    assert extra[:3] == ["eval_success_L1", "eval_success_L4", "eval_extrapolation_success"]
    assert "eval_success_by_length" in extra and "max_length_reached" in [k.name for k in plain]


def test_a_name_declared_twice_or_a_metric_never_declared_is_refused(tmp_path):
    from toy_kpi_task import Echo

    class Twice(Echo):
        kpis = (KPI("task_success", "again"),)

    with pytest.raises(ValueError, match="'task_success' is declared twice"):
        declared_kpis(Twice)
    logger = RunLogger(tmp_path, "config: test\n", declared_kpis(Echo), kpi_registry.DIAGNOSTICS)
    with pytest.raises(ValueError, match="metric 'surprise' is not declared"):
        logger.log(1, {"task_success": 1.0, "surprise": 2.0})
    logger.close()


def test_summary_gives_null_for_a_kpi_never_measured_and_ints_for_counts():
    kpis = [KPI("a", "x"), KPI("b", "x", integer=True), KPI("c", "x", summary="end"), KPI("d", "x", summary=None)]
    assert kpi_registry.summarise(kpis, {"a": float("nan"), "b": 3.0, "d": 1.0}, {"c": None}) == \
        {"a": None, "b": 3, "c": None}
