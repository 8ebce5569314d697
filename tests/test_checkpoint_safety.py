"""Loading a checkpoint never runs code from it (weights_only), and format 3 is migrated exactly."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from inet.cli import prepare
from inet.compose import compose
from inet.config import ConfigError
from inet.run import checkpoint
from inet.run.runner import run

from interrupt import run_until

BASE = ["experiment=reduce/xor", "iterations=1200", "log_interval=200", "checkpoint_interval=400", "progress=false",
        "evaluation.interval=400", "evaluation.instances=10", "evaluation.lengths=[1,2]", "seed=2"]


def write_marker(path: str) -> None:
    Path(path).write_text("code ran")


class Payload:
    """An object whose unpickling calls a function: what a malicious checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return write_marker, (self.marker,)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    run(compose(BASE), out, "config: test\n")
    return out


def test_a_checkpoint_holds_only_tensors_and_plain_data(finished):
    path = finished / checkpoint.FILENAME
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    state = torch.load(path, weights_only=True)
    assert state["format"] == checkpoint.FORMAT == 4
    assert isinstance(state["engine"]["rng"]["numpy"]["key"], torch.Tensor)


@pytest.mark.parametrize("where", ["top", "nested"])
def test_a_code_executing_checkpoint_is_refused_and_its_code_never_runs(finished, tmp_path, where):
    marker = tmp_path / "marker"
    state = torch.load(finished / checkpoint.FILENAME, weights_only=True)
    if where == "top":
        state = {"format": 4, "payload": Payload(marker)}
    else:
        state["engine"]["stats"]["pu_loss"] = Payload(marker)
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save(state, evil / checkpoint.FILENAME)
    with pytest.raises(ConfigError) as err:
        checkpoint.load(evil / checkpoint.FILENAME, compose(BASE))
    message = str(err.value)
    assert "write_marker" in message and "could run code" in message and "refused" in message
    with pytest.raises(ConfigError, match="could run code"):
        prepare([*BASE, "resume=true", f"hydra.run.dir={evil}"])
    assert not marker.exists()


def as_format_3(path: Path) -> None:
    """Rewrite a format-4 checkpoint as inet wrote format 3: NumPy's RNG state as its legacy tuple with an
    array, the CU without `cu._target_`/`cu.params` or its own iteration count, one KPI tracker."""
    state = torch.load(path, weights_only=True)
    n = state["engine"]["rng"]["numpy"]
    state["engine"]["rng"]["numpy"] = ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                                       n["gauss"])
    for key in ("cu._target_", "cu.params"):
        del state["config"][key]
    del state["engine"]["cu"]["iteration"]
    (state["engine"]["kpis"],) = state["engine"]["kpis"].values()
    state["format"] = 3
    torch.save(state, path)


def test_a_format_3_checkpoint_is_migrated_and_resumes_bit_for_bit(finished, tmp_path, monkeypatch):
    cut = tmp_path / "cut"
    run_until(monkeypatch, BASE, cut, 700)
    as_format_3(cut / checkpoint.FILENAME)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(cut / checkpoint.FILENAME)  # it needs NumPy
    run(compose([*BASE, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (finished / "kpis.csv").read_bytes()
    a = torch.load(cut / checkpoint.FILENAME, weights_only=True)["engine"]
    b = torch.load(finished / checkpoint.FILENAME, weights_only=True)["engine"]
    assert all(torch.equal(a["pus"][k], b["pus"][k]) for k in b["pus"])
    assert all(torch.equal(a["cu"]["q"][k], b["cu"]["q"][k]) for k in b["cu"]["q"])


def test_another_format_is_refused_naming_it(finished, tmp_path):
    state = torch.load(finished / checkpoint.FILENAME, weights_only=True)
    state["format"], state["inet"] = 2, "0.0.1"
    torch.save(state, tmp_path / checkpoint.FILENAME)
    with pytest.raises(ConfigError, match=r"is format 2 \(written by inet 0.0.1\); this inet reads format 4"):
        checkpoint.load(tmp_path / checkpoint.FILENAME, compose(BASE))
    assert os.listdir(tmp_path) == [checkpoint.FILENAME]
