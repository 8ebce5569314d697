"""`inet run` end to end: the run directory of DESIGN.md section 8."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inet.tasks import kpi_registry

KPIS = ("reward_per_iteration", "reward_per_task", "task_success", "optimal_route_rate", "iterations_to_converge",
        "iterations", "wall_seconds", "iterations_per_second", "seed", "config_hash", "versions")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cmd = [sys.executable, "-m", "inet.cli", "run", "experiment=multitask/base", "iterations=1500",
           "log_interval=500", "seed=7", "progress=false", f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "task_success" in proc.stdout  # the KPI table
    return out


def test_run_directory_holds_every_output(run_dir):
    for rel in (".hydra/config.yaml", "kpis.csv", "summary.json", "checkpoint.pt", "plots/kpis.png", "pus/pu0.pt"):
        assert (run_dir / rel).is_file(), rel
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_summary_and_kpis_agree(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    for k in KPIS:
        assert k in summary, k
    assert summary["iterations"] == 1500 and summary["seed"] == 7
    df = pd.read_csv(run_dir / "kpis.csv")
    assert df["iteration"].tolist() == [500, 1000, 1500]
    assert df["task_success"].iloc[-1] == pytest.approx(summary["task_success"])
    assert 0.0 <= summary["task_success"] <= 1.0


def test_tensorboard_tags_use_stable_prefixes_and_log_the_config(run_dir):
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = acc.Tags()
    scalars = set(tags["scalars"])
    assert {"rollout/task_success", "rollout/reward_per_iteration", "train/td_loss", "rollout/epsilon",
            "time/iterations_per_second"} <= scalars
    assert all(t.split("/")[0] in set(kpi_registry.TAG_GROUPS) for t in scalars)
    assert [e.step for e in acc.Scalars("rollout/task_success")] == [500, 1000, 1500]
    assert any(t.startswith("config") for t in tags["tensors"])


def test_saved_pu_loads_back_as_pretrained(run_dir):
    from inet.compose import compose
    from inet.engine import Engine

    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["engine"]["iteration"] == 1500
    engine = Engine(compose([f"pus.pu1.pretrained={run_dir / 'pus' / 'pu1.pt'}", "pus.pu1.freeze=true"]))
    for k, v in engine.pus["pu1"].state_dict().items():
        assert torch.equal(v, ckpt["engine"]["pus"][f"pu1.{k}"])
    assert not any(p.requires_grad for p in engine.pus["pu1"].parameters())


def test_freeze_keeps_pretrained_weights_fixed_during_the_run():
    from inet.compose import compose
    from inet.engine import Engine

    engine = Engine(compose(["experiment=multitask/pretrained", "pus.pu1.freeze=true"]))
    assert engine.pretrain_loss["pu1"] < 0.01  # pre-training ran although the PU is frozen afterwards
    before = [p.clone() for p in engine.pus["pu1"].parameters()]
    for _ in range(300):
        engine.step()
    assert all(torch.equal(a, b) for a, b in zip(before, engine.pus["pu1"].parameters()))


@pytest.mark.parametrize("mode", ["replace", "anneal"])
def test_training_wheels_reward_in_replay(mode):
    """replace: 1 for the teacher's action, else 0; anneal: the task's reward plus a bonus
    for the teacher's action that falls linearly from 1 to 0 over the wheels' iterations."""
    from inet.compose import compose
    from inet.engine import Engine
    from inet.tasks.multitask import teacher
    cfg = compose(["experiment=multitask/base", "iterations=400", "cu.exploration_fraction=0.5",
                   "training_wheels.teacher=inet.tasks.multitask.teacher", "training_wheels.iterations=200",
                   f"training_wheels.mode={mode}"])
    engine = Engine(cfg)
    followed = {True: 0, False: 0}
    while engine.iteration < cfg.iterations:
        it, taught = engine.iteration, teacher(engine.first_env).clone()
        step = engine.step()
        stored = engine.cu.replay.rewards[(engine.cu.replay.cursor - 1) % cfg.cu.buffer_size]
        follows = bool(step.actions[0] == taught[0])
        followed[follows] += 1
        if it >= 200:
            expected = step.reward[0]
        elif mode == "replace":
            expected = torch.tensor(float(follows))
        else:
            expected = step.reward[0] + float(follows) * (1 - it / 200)
        assert torch.isclose(stored, expected), (it, mode, stored, expected)
    assert min(followed.values()) > 20  # both branches were exercised


def test_lead_training_wheels_take_the_teachers_action_unless_exploring():
    """lead: during the wheels every lane takes the teacher's action except where the CU explores (a
    random action), and the reward in replay is the task's own; afterwards the CU acts on its own."""
    from inet.compose import compose
    from inet.engine import Engine
    from inet.tasks.multitask import teacher
    cfg = compose(["experiment=multitask/base", "iterations=400", "lanes=4", "cu.exploration_fraction=0.5",
                   "training_wheels.teacher=inet.tasks.multitask.teacher", "training_wheels.iterations=200",
                   "training_wheels.mode=lead"])
    engine = Engine(cfg)
    explored = after = 0
    while engine.iteration < cfg.iterations:
        it, taught = engine.iteration, teacher(engine.first_env).clone()
        step = engine.step()
        random = engine.last_info.explored
        stored = engine.cu.replay.rewards[(engine.cu.replay.cursor - 4 + torch.arange(4)) % cfg.cu.buffer_size]
        assert torch.equal(stored, step.reward)
        if it < 200:
            assert torch.equal(step.actions[~random], taught[~random])
            explored += int(random.sum())
        else:
            after += int((step.actions != taught).sum())
    assert explored > 20 and after > 20  # random actions during the wheels, the CU's own choices after
