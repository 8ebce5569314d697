"""Errors around a run: one line naming the cause; nothing written where it can be checked first; otherwise
the run directory is marked failed with the reason, and `inet report` lists it so."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inet.analysis.report import find_runs, group, missing
from inet.cli import prepare
from inet.compose import compose
from inet.config import ConfigError
from inet.run import failure, files
from inet.run.runner import RunWriteFailed, run

ROOT = Path(__file__).resolve().parent.parent
BASE = ["experiment=multitask/base", "iterations=600", "log_interval=200", "checkpoint_interval=200",
        "progress=false", "trace.interval=200", "trace.window=20"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def inet_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inet.cli", "run", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@no_cuda
def test_cuda_without_cuda_is_one_line_before_any_directory(tmp_path):
    out = tmp_path / "run"
    proc = inet_run("device=cuda", "iterations=200", f"hydra.run.dir={out}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "device: cuda needs a CUDA GPU" in proc.stderr and "use device=cpu" in proc.stderr
    assert not out.exists()
    with pytest.raises(ConfigError, match="device: cuda:1 needs a CUDA GPU"):  # the API and sweep jobs too
        run(compose([*BASE, "device=cuda:1"]), out, "config: test\n")
    assert not out.exists()
    with pytest.raises(ConfigError, match="device: cuda needs a CUDA GPU"):
        prepare(["-m", "seed=0,1", "device=cuda", f"hydra.sweep.dir={out}"])
    assert not out.exists()


def test_an_unwritable_output_directory_is_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "a_file").write_text("not a directory")
    proc = inet_run("iterations=200", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "hydra.run.dir: cannot write" in proc.stderr and "ENOTDIR" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    with pytest.raises(ConfigError, match=r"hydra.sweep.dir: cannot write /proc/inet-sweep: /proc is not writable"):
        prepare(["-m", "seed=0,1", "hydra.sweep.dir=/proc/inet-sweep"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to a read-only folder")
def test_a_read_only_output_directory_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="is not writable.*EACCES"):
        prepare(["iterations=200", f"hydra.run.dir={ro / 'run'}"])
    assert list(ro.iterdir()) == []


def full_disk_for(monkeypatch, name: str, after: int) -> None:
    """From the (after+1)-th file opened whose name contains `name` on, writes fail with ENOSPC."""
    real, opened = files._open, []

    def opener(path, mode, **kw):
        if name in Path(path).name:
            opened.append(path)
            if len(opened) > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, mode, **kw)

    monkeypatch.setattr(files, "_open", opener)


def test_a_full_disk_at_checkpoint_time_marks_the_run_failed_for_report(tmp_path, monkeypatch):
    out = tmp_path / "run"
    (out / ".hydra").mkdir(parents=True)
    (out / ".hydra" / "config.yaml").write_text("name: multitask/base\nseed: 0\n")
    full_disk_for(monkeypatch, "checkpoint.pt", after=1)
    with pytest.raises(RunWriteFailed, match="ENOSPC"):
        run(compose(BASE), out, "config: test\n")
    monkeypatch.undo()
    mark = json.loads((out / failure.FILENAME).read_text())
    assert mark["error"] == "RunWriteFailed" and mark["iteration"] == 400
    assert mark["reason"] == f"cannot write {out / 'checkpoint.pt'}: No space left on device (ENOSPC)"
    [line] = missing(group(find_runs([tmp_path])), [])
    assert "failed: RunWriteFailed: cannot write" in line and "ENOSPC" in line and "(at iteration 400; " in line
    assert "crashed or still running" not in line
    run(compose([*BASE, "resume=true"]), out, "config: test\n")  # space is back: the mark goes, the run completes
    assert not (out / failure.FILENAME).exists() and (out / "summary.json").is_file()
    assert missing(group(find_runs([tmp_path])), []) == []
