"""Bad input (checkpoints, overrides, values) is refused before any work and leaves earlier runs byte-identical."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inet.cli import prepare
from inet.compose import compose
from inet.config import ConfigError
from inet.run import checkpoint
from inet.run.runner import run

CLI = [sys.executable, "-m", "inet.cli", "run"]


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("earlier") / "run"
    proc = subprocess.run([*CLI, "experiment=multitask/base", "iterations=600", "log_interval=200", "progress=false",
                           f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


BAD = [
    (["resume=true", "seed=5"], "different config (seed: 0 -> 5)"),
    (["resume=true", "tape.horizn=3"], "tape.horizn"),
    (["resume=true", "cu.buffer_size=-5"], "cu.buffer_size: must be >= 1"),
    (["resume=true", "nodes.n0.shape=[-1]"], "nodes.n0.shape: sizes must be >= 1"),
    (["resume=true", "tape.horizon=0"], "tape.horizon: must be >= 1"),
    (["resume=true", "cu.exploration_initial_eps=1.5"], "cu.exploration_initial_eps: epsilon must be in [0, 1]"),
    (["resume=true", "envs.multitask.reward.timeout=0"], "envs.multitask.reward.timeout: the action budget"),
    (["resume=true", "pus.pu1.kind=conv"], "pus.pu1.inputs: a conv PU reads exactly one node of rank 3"),
    (["seed=1"], "already holds a run; add resume=true"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_refused_naming_it_and_the_earlier_run_is_untouched(earlier, args, message):
    before = snapshot(earlier)
    with pytest.raises(ConfigError) as err:
        prepare([*args, f"hydra.run.dir={earlier}"])
    assert message in str(err.value)
    assert snapshot(earlier) == before


def test_resume_needs_a_run_directory():
    with pytest.raises(ConfigError, match="resume: resume=true continues the run in hydra.run.dir"):
        prepare(["resume=true"])


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_unreadable_checkpoint_is_refused_by_cli_and_runner(earlier, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(earlier, broken)
    path = broken / checkpoint.FILENAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    before = snapshot(broken)
    proc = subprocess.run([*CLI, "resume=true", f"hydra.run.dir={broken}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "cannot be read" in proc.stderr and "truncated or not an inet checkpoint" in proc.stderr
    cfg = compose(["experiment=multitask/base", "iterations=600", "log_interval=200", "progress=false",
                   "resume=true"])
    with pytest.raises(ConfigError, match="cannot be read"):
        run(cfg, broken, "config: test\n")
    assert snapshot(broken) == before


def test_cli_refuses_a_checkpoint_from_another_config_with_exit_code_2(earlier):
    before = snapshot(earlier)
    proc = subprocess.run([*CLI, "resume=true", "pus.pu0.hidden=[8]", f"hydra.run.dir={earlier}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "different config (pus.pu0.hidden: [32] -> [8])" in proc.stderr
    assert snapshot(earlier) == before


def test_resume_of_a_finished_run_changes_nothing(earlier):
    before = snapshot(earlier)
    proc = subprocess.run([*CLI, "resume=true", f"hydra.run.dir={earlier}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "already complete" in proc.stdout
    assert snapshot(earlier) == before
