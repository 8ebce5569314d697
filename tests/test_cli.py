"""The `inet` command as a new user meets it: help, completion, flags written wrong, malformed YAML, sweep typos."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inet.cli import prepare
from inet.compose import compose, schema_keys
from inet.config import ConfigError
from inet.run_help import keys_help

ROOT = Path(__file__).resolve().parent.parent


def inet(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inet.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("command", [[], ["run"], ["report"], ["viz"], ["reproduce"], ["ablations"]])
def test_help_of_every_command_exits_0(command):
    proc = inet(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: inet" in proc.stdout and proc.stderr == ""


def test_run_help_names_inet_and_describes_every_key():
    proc = inet("run", "experiment=reduce/xor", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "powered by Hydra" not in proc.stdout and proc.stdout.startswith("inet run (inet ")
    assert "experiment: " in proc.stdout and "multitask/base" in proc.stdout  # the groups and their options
    assert "name=reduce/xor" in proc.stdout  # values as the given overrides compose them
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("cu.learning_rate="))
    assert line.split()[1:] == "Adam learning rate of the Q-network".split()


def test_every_schema_key_has_a_one_line_description():
    lines = keys_help(compose([]))
    keys = schema_keys()
    leaves = [k for k in keys if not any(other.startswith(k + ".") for other in keys)]
    described = {ln.split()[0].split("=")[0]: ln.split()[1:] for ln in lines}
    for key in [*leaves, "pus.<name>.kind", "envs.<name>.curriculum.mode", "nodes.<name>.round_from"]:
        assert described.get(key), f"{key} has no description in inet/config.py"
    assert described["nodes.<name>.round_from"][-1].endswith("right)")  # a comment over two lines, whole
    assert len(lines) == len(described)


def test_an_override_written_as_a_flag_is_named_without_dashes():
    with pytest.raises(ConfigError, match="overrides take no dashes; write experiment=multitask/base"):
        prepare(["--experiment=multitask/base"])
    proc = inet("run", "--experiment=multitask/base")
    assert proc.returncode == 2 and "write experiment=multitask/base" in proc.stderr
    assert "Traceback" not in proc.stderr and "does not exist" not in proc.stderr
    with pytest.raises(ConfigError, match="--frobnicate: unknown option"):
        prepare(["--frobnicate"])


def test_a_wrong_experiment_lists_the_available_ones():
    with pytest.raises(ConfigError) as err:
        compose(["experiment=multitask/bsae"])
    assert "no option 'multitask/bsae'" in str(err.value)
    assert "multitask/base" in str(err.value) and "reduce/xor" in str(err.value)


def test_a_key_typo_suggests_the_close_match():
    with pytest.raises(ConfigError, match=r"^cu.lerning_rate: no such key; did you mean cu.learning_rate\?"):
        compose(["cu.lerning_rate=0.1"])


def test_malformed_yaml_is_one_line_naming_file_line_column(tmp_path):
    (tmp_path / "experiment").mkdir()
    bad = tmp_path / "experiment" / "bad.yaml"
    bad.write_text("defaults:\n  - /experiment/multitask/base\nseed: [1, 2\niterations: 5\n")
    proc = inet("run", "--config-dir", str(tmp_path), "experiment=bad", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"{bad}:4:11: malformed YAML" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_sweep_typo_gets_inets_message_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = inet("run", "-m", "iteratons=200,300", "progress=false", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 2
    assert "iteratons: no such key; did you mean iterations?" in proc.stderr
    assert "+iteratons" not in proc.stderr and not sweep.exists()


def test_a_bad_value_in_a_later_sweep_job_names_that_job():
    with pytest.raises(ConfigError, match=r"cu.gamma: must be in \[0, 1\], got 2.0 \(sweep job 1: cu.gamma=2.0\)"):
        prepare(["-m", "cu.gamma=0.5,2.0"])


def test_bash_completion_offers_run_keys_and_experiments(tmp_path):
    (tmp_path / "inet").write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m inet.cli \"$@\"\n")
    (tmp_path / "inet").chmod(0o755)

    def complete(line: str) -> list:
        script = ('eval "$(inet run -sc install=bash)"\n'
                  f'COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; words=($COMP_LINE)\n'
                  'COMP_CWORD=$(( ${#words[@]} - 1 )); hydra_bash_completion; echo "${COMPREPLY[@]}"\n')
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("inet run cu.lear") == ["cu.learning_rate=", "cu.learning_starts="]
    assert complete("inet run experiment=multitask/b") == ["experiment=multitask/base"]
    assert complete("inet rep") == ["report", "reproduce"]
