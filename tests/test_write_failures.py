"""A write that fails part-way (a full disk) stops the run cleanly: a one-line message naming the run
directory and the cause, no partial file, the last good checkpoint intact, and `resume=true` continues
exactly once space is free."""
import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.summary.writer import record_writer

from inet.compose import compose
from inet.run import checkpoint, files
from inet.run.runner import RunWriteFailed, run

BASE = ["experiment=multitask/base", "iterations=1200", "log_interval=200", "checkpoint_interval=400",
        "progress=false", "seed=4", "trace.interval=400", "trace.window=60"]
ENOSPC = "No space left on device (ENOSPC)"


class FullDisk:
    """A raw file that takes `budget` more bytes (accepting a part of a larger write), then raises ENOSPC."""

    def __init__(self, f, budget: int):
        self.f, self.budget = f, budget

    def write(self, data) -> int:
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.f.write(bytes(data[:self.budget]))
        self.budget -= n
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, name: str, budget: int, after: int = 0) -> None:
    """Files whose name contains `name` fail after `budget` bytes, from the (after+1)-th opened on."""
    real, opened = files._open, []

    def opener(path, mode, **kw):
        f = real(path, mode, **kw)
        if name in Path(path).name:
            opened.append(path)
            if len(opened) > after:
                return FullDisk(f, budget)
        return f

    monkeypatch.setattr(files, "_open", opener)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "run"
    run(compose(BASE), out, "config: test\n")
    return out


def same_params(a: Path, b: Path) -> bool:
    pa, pb = (torch.load(d / checkpoint.FILENAME, weights_only=True)["engine"]["pus"] for d in (a, b))
    return all(torch.equal(pa[k], pb[k]) for k in pb)


def stops_then_resumes(cut: Path, full: Path, last_good: int) -> str:
    """Run until the patched write fails; check what is left; resume unpatched; return the message."""
    with pytest.raises(RunWriteFailed) as failed:
        run(compose(BASE), cut, "config: test\n")
    message = str(failed.value)
    assert "\n" not in message and str(cut) in message and ENOSPC in message
    assert f"(iteration {last_good}), left intact" in message and "resume=true" in message
    assert not list(cut.rglob("*.tmp")), "a partial temporary file was left behind"
    assert torch.load(cut / checkpoint.FILENAME, weights_only=True)["engine"]["iteration"] == last_good
    lines = (cut / "kpis.csv").read_bytes().split(b"\r\n")
    assert lines[-1] == b"" and len({ln.count(b",") for ln in lines[:-1]}) == 1, "kpis.csv ends mid-row"
    for window in (cut / "trace").glob("window_*.jsonl"):
        text = window.read_text()
        assert text.endswith("\n") and all(json.loads(ln) for ln in text.splitlines())
    return message


def half_into_line(path: Path, k: int) -> int:
    """Bytes of `path`'s first k lines plus half of line k + 1: a budget that runs out mid-line."""
    lines = path.read_bytes().splitlines(keepends=True)
    return sum(map(len, lines[:k])) + len(lines[k]) // 2


@pytest.mark.parametrize("name, budget, after, last_good", [
    ("checkpoint.pt", lambda full: 4000, 1, 400),  # the second checkpoint (iteration 800) fails part-way
    # the row of iteration 600 (after the header and the rows of 200 and 400) is cut off mid-line
    ("kpis.csv", lambda full: half_into_line(full / "kpis.csv", 3), 0, 400),
    # the trace window starting at 400 fills the disk in its 31st line
    ("window_0000000400", lambda full: half_into_line(full / "trace" / "window_0000000400.jsonl", 30), 0, 400),
    ("summary.json", lambda full: 10, 0, 1200),  # the end: the final checkpoint is written, summary.json is not
])
def test_a_write_failing_part_way_stops_cleanly_and_resume_continues_exactly(full, tmp_path, monkeypatch, name,
                                                                              budget, after, last_good):
    cut = tmp_path / "cut"
    fill_disk(monkeypatch, name, budget(full), after)
    message = stops_then_resumes(cut, full, last_good)
    assert name.split("_")[0] in message
    monkeypatch.undo()
    if last_good == 1200:
        assert not (cut / "summary.json").exists()
        return
    run(compose([*BASE, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
    assert (cut / "trace" / "actions.csv").read_bytes() == (full / "trace" / "actions.csv").read_bytes()
    assert same_params(cut, full)


def test_a_tensorboard_write_failure_stops_the_run_cleanly(full, tmp_path, monkeypatch):
    real = record_writer.RecordWriter.write
    cut = tmp_path / "cut"

    def write(self, data):  # the disk fills once the run has a checkpoint to resume from
        if (cut / "checkpoint.pt").exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    with pytest.raises(RunWriteFailed) as failed:
        run(compose(BASE), cut, "config: test\n")
    assert f"cannot write {cut / 'tb'}: {ENOSPC}" in str(failed.value)
    monkeypatch.undo()
    run(compose([*BASE, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()


def test_the_cli_prints_one_line_and_exits_74(tmp_path):
    out = tmp_path / "run"
    (out / "trace" / "actions.csv").mkdir(parents=True)  # a path the run cannot write: opening it fails
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "run", "experiment=multitask/base", "iterations=300",
                           "progress=false", f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 74, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inet: write failed:"), proc.stderr
    assert str(out) in lines[0] and "EISDIR" in lines[0] and "no checkpoint was written" in lines[0]
