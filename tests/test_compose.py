"""Config groups that compose: reward/curriculum options placed per environment, the `cu` group,
tuning kept out of task files, entries added from the command line, unknown options listed."""
import dataclasses
import subprocess
import sys

import pytest
import yaml

from inet.compose import CONFIG_DIR, compose, group_options
from inet.config import ConfigError, CUConfig, CurriculumConfig, EnvConfig, NodeConfig, PUConfig, RewardConfig, RunConfig

ENTRY_DEFAULTS = {"nodes": NodeConfig, "pus": PUConfig, "envs": EnvConfig}


def option(group: str, name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / group / f"{name}.yaml").read_text())


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed(cfg: RunConfig) -> dict:
    """Every key whose value differs from the schema's default (an entry of nodes/pus/envs: from its
    dataclass's defaults; an entry with none, as `nodes.n0: {}`)."""
    got, default = dataclasses.asdict(cfg), flat(dataclasses.asdict(RunConfig()))
    out = {}
    for section, value in got.items():
        if section in ENTRY_DEFAULTS:
            entry_default = flat(dataclasses.asdict(ENTRY_DEFAULTS[section]()))
            for name, entry in value.items():
                diff = {f"{section}.{name}.{k}": v for k, v in flat(entry).items() if entry_default.get(k) != v}
                out.update(diff or {f"{section}.{name}": {}})
        elif isinstance(value, dict):
            out.update({k: v for k, v in flat(value, f"{section}.").items() if default.get(k) != v})
        elif default[section] != value:
            out[section] = value
    return out


# What every experiment composes to, as keys that differ from the schema's defaults. These are the values
# of the commit before the config groups (checked against it for every experiment): a change to an
# experiment's values is a change of this table too.
MULTITASK = {
    "nodes.n0": {}, "nodes.n1": {}, "nodes.n2": {}, "nodes.n3.cu_visible": True,
    "pus.pu0.inputs": ["n0", "n1"], "pus.pu0.outputs": ["n3"], "pus.pu1.inputs": ["n0"], "pus.pu1.outputs": ["n2"],
    "pus.pu2.inputs": ["n1"], "pus.pu2.outputs": ["n2"],
    "envs.multitask._target_": "inet.tasks.multitask.Multitask", "envs.multitask.inputs": ["n0", "n1"],
    "envs.multitask.outputs": ["n2"], "envs.multitask.reward.timeout": 6, "envs.multitask.reward.timeout_penalty": -0.5,
    "envs.multitask.reward.width": 0.1, "envs.multitask.params.tolerance": 0.05,
}
REDUCE = {
    "nodes.n0": {}, "nodes.n1": {}, "nodes.n2": {},
    "pus.pu0.inputs": ["n2"], "pus.pu0.outputs": ["n1"], "pus.pu0.hidden": [16], "pus.pu1.inputs": ["n0", "n2"],
    "pus.pu1.outputs": ["n2"], "pus.pu2.kind": "constant", "pus.pu2.outputs": ["n2"],
    "envs.reduce._target_": "inet.tasks.reduce.Reduce", "envs.reduce.inputs": ["n0"], "envs.reduce.outputs": ["n1"],
    "envs.reduce.reward.wrong_answer": -0.2, "envs.reduce.reward.invalid_action": -0.5,
    "envs.reduce.reward.timeout": 4, "envs.reduce.reward.timeout_penalty": -0.5,
    "envs.reduce.reward.timeout_per_item": 2.0, "envs.reduce.reward.shape": "binary",
    "envs.reduce.curriculum.enabled": True, "envs.reduce.curriculum.promote_after": 20,
    "envs.reduce.curriculum.demote_after": 5,
}
REDUCE_TUNING = {
    "envs.reduce.signals": ["new_instance", "new_item", "end_of_sequence"], "cu.inputs": ["signals"], "cu.gamma": 0.98,
    "cu.n_step": 160, "cu.target_update_interval": 500, "cu.exploration_fraction": 0.05, "tape.horizon": 16,
    "pu_optim.lr": 0.003, "evaluation.interval": 5000, "kpi_window": 200,
}
EXPECTED = {
    "emulate/fnn": {
        "name": "emulate/fnn", "iterations": 5000, "nodes.n0.shape": [4], "nodes.n1.shape": [4],
        "pus.pu0.inputs": ["n0"], "pus.pu0.outputs": ["n1"], "pus.pu0.hidden": [32, 32],
        "envs.regression._target_": "inet.tasks.regression.Regression", "envs.regression.inputs": ["n0"],
        "envs.regression.outputs": ["n1"], "envs.regression.params.pu": "pu0", "envs.regression.params.tolerance": 0.1,
        "cu.script": "inet.tasks.regression.teacher", "cu.inputs": ["history", "signals"],
    },
    "multitask/base": {**MULTITASK, "name": "multitask/base", "iterations": 200000},
    "multitask/cu_inputs": {**{k: v for k, v in MULTITASK.items() if k not in ("nodes.n0", "nodes.n1")},
                            "name": "multitask/cu_inputs", "iterations": 40000,
                            "nodes.n0.cu_visible": True, "nodes.n1.cu_visible": True},
    "multitask/pretrained": {
        **MULTITASK, "name": "multitask/pretrained", "pu_optim.guard": 3.0,
        **{f"pus.pu{i}.pretrain.{k}": v for i, data in enumerate(("compare", "double", "halve"))
           for k, v in (("data", f"inet.tasks.multitask.{data}_data"), ("steps", 2000))},
    },
    "multitask/training_wheels": {**MULTITASK, "name": "multitask/training_wheels", "iterations": 200000,
                                  "training_wheels.teacher": "inet.tasks.multitask.teacher",
                                  "training_wheels.iterations": 100000},
    **{f"reduce/{f}": {**REDUCE, **REDUCE_TUNING, "name": f"reduce/{f}", "iterations": 100000, "envs.reduce.params.f": f}
       for f in ("constant", "last", "and", "or", "xor")},
}


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_every_experiment_composes_to_its_recorded_values(experiment):
    assert changed(compose([f"experiment={experiment}"])) == EXPECTED[experiment]


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_cu_dqn_is_the_default_and_changes_nothing(experiment):
    cfg = compose([f"experiment={experiment}"])
    assert compose([f"experiment={experiment}", "cu=dqn"]) == cfg
    assert compose([f"experiment={experiment}", "cu=dqn", "cu.double=true"]).cu == dataclasses.replace(cfg.cu, double=True)


def test_cu_dqn_holds_the_schema_defaults():
    assert option("cu", "dqn") == dataclasses.asdict(CUConfig())


def test_cu_keys_override_the_option_in_either_order():
    for overrides in (["cu=dqn", "cu.double=true"], ["cu.double=true", "cu=dqn"]):
        cu = compose(["experiment=reduce/xor", *overrides]).cu
        assert cu.double and cu.n_step == 160 and cu.inputs == ["signals"]  # the experiment's tuning stays


def test_task_files_hold_only_the_task():
    for path in sorted((CONFIG_DIR / "task").glob("*.yaml")):
        assert set(yaml.safe_load(path.read_text())) <= {"defaults", "nodes", "pus", "envs"}, path.name


@pytest.mark.parametrize("group, place, name", [
    ("reward", "envs.reduce.reward", "harsh"), ("curriculum", "envs.reduce.curriculum", "doubling"),
    ("curriculum", "envs.reduce.curriculum", "fixed"), ("reward", "envs.multitask.reward", "reduce"),
])
def test_a_group_option_placed_in_an_environment_replaces_its_default(group, place, name):
    _, env, key = place.split(".")
    experiment = f"experiment={'reduce/xor' if env == 'reduce' else 'multitask/base'}"
    default = compose([experiment])
    cfg = compose([experiment, f"{group}@{place}={name}"])
    schema = {"reward": RewardConfig, "curriculum": CurriculumConfig}[group]
    assert getattr(cfg.envs[env], key) == schema(**option(group, name))
    assert getattr(cfg.envs[env], key) != getattr(default.envs[env], key)
    assert dataclasses.replace(cfg.envs[env], **{key: getattr(default.envs[env], key)}) == default.envs[env]
    assert dataclasses.replace(cfg, envs=default.envs) == default


def test_task_defaults_are_group_options():
    reduce, multitask = compose(["experiment=reduce/xor"]).envs["reduce"], compose([]).envs["multitask"]
    assert reduce.reward == RewardConfig(**option("reward", "reduce"))
    assert reduce.curriculum == CurriculumConfig(**option("curriculum", "reduce"))
    assert multitask.reward == RewardConfig(**option("reward", "multitask"))


def test_a_group_option_can_be_added_to_an_environment_without_one():
    cfg = compose(["experiment=emulate/fnn", "+reward@envs.regression.reward=harsh"])
    assert cfg.envs["regression"].reward == RewardConfig(**option("reward", "harsh"))


def test_both_forms_of_a_group_option_and_key_overrides_combine():
    cfg = compose(["experiment=reduce/xor", "reward@envs.reduce.reward=harsh", "curriculum@envs.reduce.curriculum=fixed",
                   "envs.reduce.curriculum.start_length=3", "+stabilisers=on"])
    assert cfg.envs["reduce"].reward.wrong_answer == -1.0 and cfg.envs["reduce"].reward.per_iteration == -0.01
    assert not cfg.envs["reduce"].curriculum.enabled and cfg.envs["reduce"].curriculum.start_length == 3
    assert cfg.nodes["n2"].round_to == [0, 1] and cfg.cu.epsilon_by_task_length and cfg.pu_optim.guard == 3.0


@pytest.mark.parametrize("override", ["reward=harsh", "+reward=harsh", "curriculum=doubling"])
def test_a_group_option_without_its_environment_is_refused_naming_the_syntax(override):
    group = override.lstrip("+").split("=")[0]
    with pytest.raises(ConfigError) as err:
        compose(["experiment=reduce/xor", override])
    assert f"{group}@envs.<env>.{group}=<option>" in str(err.value)
    assert ", ".join(group_options(group)) in str(err.value)


@pytest.mark.parametrize("overrides, group", [
    (["experiment=multitask/nope"], "experiment"),
    (["experiment=nope"], "experiment"),
    (["experiment=reduce/xor", "reward@envs.reduce.reward=nope"], "reward"),
    (["experiment=reduce/xor", "curriculum@envs.reduce.curriculum=nope"], "curriculum"),
    (["cu=nope"], "cu"),
])
def test_an_unknown_option_is_refused_listing_the_choices(overrides, group):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    bad = overrides[-1].split("=")[1]
    options = group_options(group)
    assert options == sorted(options) and options
    assert str(err.value) == f"{group}: no option '{bad}'; choose one of: {', '.join(options)}"


def test_experiment_options_are_listed_by_path():
    assert {"multitask/base", "reduce/xor", "emulate/fnn"} <= set(group_options("experiment"))


NEW_PU = PUConfig(kind="mlp", inputs=["n0", "n1"], outputs=["n2"])


@pytest.mark.parametrize("overrides", [
    ["+pus.pu3={kind: mlp, inputs: [n0, n1], outputs: [n2]}"],
    ["+pus.pu3.kind=mlp", "+pus.pu3.inputs=[n0,n1]", "+pus.pu3.outputs=[n2]"],
    ["pus.pu3.inputs=[n0,n1]", "pus.pu3.outputs=[n2]"],
])
def test_a_pu_added_from_the_command_line_gets_the_defaults(overrides):
    cfg = compose(overrides)
    assert cfg.pus["pu3"] == NEW_PU and cfg.pus["pu3"].hidden == [32]
    assert dataclasses.replace(cfg, pus={k: v for k, v in cfg.pus.items() if k != "pu3"}) == compose([])


@pytest.mark.parametrize("overrides", [["+nodes.n9={shape: [2], cu_visible: true}"],
                                       ["+nodes.n9.shape=[2]", "+nodes.n9.cu_visible=true"]])
def test_a_node_added_from_the_command_line_gets_the_defaults(overrides):
    assert compose(overrides).nodes["n9"] == NodeConfig(shape=[2], cu_visible=True)


@pytest.mark.parametrize("overrides", [
    ["+envs.second={_target_: inet.tasks.multitask.Multitask, inputs: [n0, n1], outputs: [n2], reward: {timeout: 3}}"],
    ["+envs.second._target_=inet.tasks.multitask.Multitask", "+envs.second.inputs=[n0,n1]", "+envs.second.outputs=[n2]",
     "+envs.second.reward.timeout=3"],
])
def test_an_environment_added_from_the_command_line_gets_the_defaults(overrides):
    cfg = compose(overrides)
    assert cfg.envs["second"] == EnvConfig(_target_="inet.tasks.multitask.Multitask", inputs=["n0", "n1"],
                                           outputs=["n2"], reward=RewardConfig(timeout=3))
    assert cfg.envs["multitask"] == compose([]).envs["multitask"]


def test_an_entry_key_the_yaml_leaves_out_is_set_with_or_without_plus():
    cfg = compose(["pus.pu1.freeze=true", "+pus.pu2.lr=0.01", "nodes.n2.round_to=[0,1]"])
    assert cfg.pus["pu1"].freeze and cfg.pus["pu2"].lr == 0.01 and cfg.nodes["n2"].round_to == [0, 1]


@pytest.mark.parametrize("overrides, key", [
    (["+pus.pu3.kindd=mlp"], "pus.pu3.kindd"),
    (["+pus.pu3={kindd: mlp}"], "pus.pu3.kindd"),
    (["pus.pu0.hiden=[4]"], "pus.pu0.hiden"),
    (["+pus.pu3.pretrain.stepz=5"], "pus.pu3.pretrain.stepz"),
    (["+nodes.n9.shap=[2]"], "nodes.n9.shap"),
    (["+envs.second.rewrd.timeout=3"], "envs.second.rewrd"),
    (["envs.multitask.reward.timout=3"], "envs.multitask.reward.timout"),
    (["pus.pu0.hidden=[a]"], "pus.pu0.hidden[0]"),
    (["+lanse=4"], "lanse"),
])
def test_an_unknown_or_mistyped_entry_key_is_refused_naming_it(overrides, key):
    with pytest.raises(ConfigError) as err:
        compose(overrides)
    assert str(err.value).startswith(f"{key}: ")


def test_cli_runs_with_a_pu_added_and_refuses_a_typo(tmp_path):
    cli = [sys.executable, "-m", "inet.cli", "run", "iterations=50", "progress=false"]
    out = tmp_path / "run"
    proc = subprocess.run([*cli, "+pus.pu3={kind: mlp, inputs: [n0, n1], outputs: [n2]}", f"hydra.run.dir={out}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / ".hydra" / "config.yaml").read_text())["pus"]["pu3"]["inputs"] == ["n0", "n1"]
    bad = tmp_path / "bad"
    proc = subprocess.run([*cli, "+pus.pu3.kind=mlp", "+pus.pu3.kindd=mlp", f"hydra.run.dir={bad}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "pus.pu3.kindd: unknown key" in proc.stderr
    assert not bad.exists()
