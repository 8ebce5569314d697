"""Determinism, and a run stopped by SIGTERM and resumed equals an uninterrupted one."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inet.compose import compose
from inet.run import checkpoint
from inet.run.runner import RunInterrupted, run

from interrupt import stop_at

BASE = ["experiment=multitask/base", "iterations=2000", "log_interval=250", "checkpoint_interval=500",
        "progress=false"]


def run_to_end(tmp: Path, name: str, overrides: list) -> Path:
    out = tmp / name
    run(compose(overrides), out, "config: test\n")
    return out


def final_params(run_dir: Path) -> dict:
    state = torch.load(run_dir / checkpoint.FILENAME, weights_only=True)["engine"]
    return {**{f"pu.{k}": v for k, v in state["pus"].items()}, **{f"cu.{k}": v for k, v in state["cu"]["q"].items()},
            **{f"target.{k}": v for k, v in state["cu"]["target"].items()}}


def same_params(a: Path, b: Path) -> bool:
    pa, pb = final_params(a), final_params(b)
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def scalars(run_dir: Path, tag: str) -> list:
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return [(e.step, e.value if e.value == e.value else "nan") for e in acc.Scalars(tag)]  # nan == nan here


def test_same_seed_gives_identical_kpis_and_parameters_different_seed_differs(tmp_path):
    a = run_to_end(tmp_path, "a", [*BASE, "seed=3"])
    b = run_to_end(tmp_path, "b", [*BASE, "seed=3"])
    c = run_to_end(tmp_path, "c", [*BASE, "seed=4"])
    assert (a / "kpis.csv").read_bytes() == (b / "kpis.csv").read_bytes()
    assert same_params(a, b)
    assert (a / "kpis.csv").read_bytes() != (c / "kpis.csv").read_bytes()
    assert not same_params(a, c)


# reduce/xor: evaluations (their own generator) at 500, 1000, 1500, 2000 and a curriculum that moves
REDUCE = ["evaluation.interval=500", "evaluation.instances=20", "evaluation.lengths=[1,2,4]",
          "envs.reduce.curriculum.promote_after=2", "envs.reduce.curriculum.demote_after=3"]


@pytest.mark.parametrize("experiment, k, extra", [("multitask/base", 777, []), ("multitask/cu_inputs", 1001, []),
                                                  ("reduce/xor", 1003, REDUCE),
                                                  pytest.param("multitask/base", 745, ["cu.what_if=1"], id="what_if"),
                                                  ("multitask/shortcut", 996, [])])  # pre-trained PUs, a shortcut
def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, experiment, k, extra):
    overrides = [*BASE, f"experiment={experiment}", "seed=5", *extra]
    full = run_to_end(tmp_path, "full", overrides)
    cut = tmp_path / "cut"
    stop_at(monkeypatch, k)
    with pytest.raises(RunInterrupted, match=f"SIGTERM at iteration {k}") as stopped:
        run(compose(overrides), cut, "config: test\n")
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    monkeypatch.undo()

    state = torch.load(cut / checkpoint.FILENAME, weights_only=True)
    assert state["engine"]["iteration"] == k
    env_state = next(iter(state["engine"]["envs"].values()))
    assert env_state["age"].item() > 0, "k must fall inside a task instance"
    if experiment.startswith("reduce"):
        task = env_state["task"]
        assert 0 < task["pos"].item() < task["length"].item(), "k must fall inside the sequence"
        assert task["curriculum"]["promotions"] + task["curriculum"]["demotions"] > 0
        assert state["engine"]["evaluation"]["reduce"]["evaluated_at"] == 1000
    assert len(state["engine"]["tape"]["records"]) > 0
    assert [int(r.split(",")[0]) for r in (cut / "kpis.csv").read_text().splitlines()[1:]][-1] == k // 250 * 250

    run(compose([*overrides, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
    assert same_params(cut, full)
    steps = list(range(250, 2001, 250))
    tags = ["rollout/task_success", "train/td_loss"]
    if experiment.startswith("reduce"):
        tags += ["rollout/curriculum_length", "eval/success_L4", "eval/max_length_reliable"]
        assert json.loads((cut / "summary.json").read_text())["eval_success_by_length"] == \
            json.loads((full / "summary.json").read_text())["eval_success_by_length"]
    for tag in tags:
        assert scalars(cut, tag) == scalars(full, tag)
        assert [s for s, _ in scalars(cut, tag)] == steps  # no step repeated or skipped


def test_rows_logged_after_the_checkpoint_are_replaced_on_resume(tmp_path, monkeypatch):
    """A hard kill (SIGKILL, power loss) can leave kpis.csv rows newer than the checkpoint: resume drops them."""
    overrides = [*BASE, "seed=6"]
    full = run_to_end(tmp_path, "full", overrides)
    cut = tmp_path / "cut"
    stop_at(monkeypatch, 1500)
    with pytest.raises(RunInterrupted):
        run(compose(overrides), cut, "config: test\n")
    monkeypatch.undo()
    columns = (cut / "kpis.csv").read_text().splitlines()[0].count(",")
    with open(cut / "kpis.csv", "a") as f:
        f.write("1750" + ",999" * columns + "\n")  # a row the killed process wrote after its last checkpoint
    run(compose([*overrides, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
    assert same_params(cut, full)


def test_cli_sigterm_checkpoints_and_resume_true_continues(tmp_path):
    """The real path: `inet run`, SIGTERM from outside at an arbitrary moment, `inet run resume=true`."""
    overrides = ["experiment=multitask/base", "iterations=3000", "log_interval=500", "seed=8", "progress=false"]
    full = run_to_end(tmp_path, "full", overrides)
    cut = tmp_path / "cut"
    cli = [sys.executable, "-m", "inet.cli", "run"]
    proc = subprocess.Popen([*cli, *overrides, f"hydra.run.dir={cut}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (cut / "kpis.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived (machine too fast for this test)")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM at iteration" in err and "resume=true" in err
    resumed = subprocess.run([*cli, "resume=true", f"hydra.run.dir={cut}"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
    assert same_params(cut, full)


def test_deterministic_algorithms_option(tmp_path):
    """`deterministic=true` turns torch's deterministic mode on for the run; on CPU the numbers do not change."""
    overrides = [*BASE, "iterations=600", "seed=9"]
    a = run_to_end(tmp_path, "a", [*overrides, "deterministic=true"])
    assert torch.are_deterministic_algorithms_enabled()
    b = run_to_end(tmp_path, "b", overrides)
    assert not torch.are_deterministic_algorithms_enabled()
    assert (a / "kpis.csv").read_bytes() == (b / "kpis.csv").read_bytes()
