"""The Python API (inet/api.py): run, load, evaluate, and examples/ executed as a user would."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import inet
from inet.run import checkpoint, runner

ROOT = Path(__file__).resolve().parent.parent
OVERRIDES = ["experiment=multitask/base", "iterations=200", "log_interval=100", "progress=false",
             "trace.interval=100", "trace.window=10"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inet.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_names_are_the_api():
    assert callable(inet.compose) and callable(inet.run) and inet.Engine is inet.api.Engine
    assert inet.run.runner is runner and inet.compose.CONFIG_DIR.is_dir()  # the modules stay reachable


def test_run_load_evaluate(tmp_path):
    run_dir = inet.run(OVERRIDES, tmp_path / "run")
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == OVERRIDES
    assert inet.compose(OVERRIDES).name in (run_dir / ".hydra" / "config.yaml").read_text()

    engine = inet.load(run_dir)
    saved = checkpoint.read(run_dir / checkpoint.FILENAME)["engine"]
    assert engine.iteration == 200 == saved["iteration"]
    for name, pu in engine.pus.items():
        for key, value in pu.state_dict().items():
            assert torch.equal(value, saved["pus"][f"{name}.{key}"]), (name, key)
    before = {k: v.clone() for k, v in engine.pus.state_dict().items()}
    success = inet.evaluate(engine, instances=20)
    assert list(success) == [1] and 0.0 <= success[1] <= 1.0
    assert inet.evaluate(engine, instances=20) == success  # seeded: the same instances again
    assert engine.iteration == 200 and all(torch.equal(before[k], v) for k, v in engine.pus.state_dict().items())

    with pytest.raises(inet.ConfigError, match="already holds a run"):
        inet.run(OVERRIDES, run_dir)
    with pytest.raises(inet.ConfigError, match="not a run directory"):
        inet.load(tmp_path)


def test_api_run_is_read_by_report_viz_and_a_cli_resume(tmp_path):
    run_dir = inet.run(inet.compose(OVERRIDES), tmp_path / "run", overrides=OVERRIDES)
    assert cli("viz", str(run_dir), cwd=tmp_path).returncode == 0
    assert cli("report", str(run_dir), cwd=tmp_path).returncode == 0
    proc = cli("run", "resume=true", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0 and "already complete" in proc.stdout, proc.stderr


def test_example_script(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "train_load_evaluate.py"), "run", "300"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "greedy success after 300 iterations:" in proc.stdout
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
