"""Sweep job directory names: short, one level, without result-neutral keys, unique within a sweep."""
import pytest

from inet.analysis.sweep import DIRNAME_MAX, job_dirname
from inet.cli import prepare
from inet.config import ConfigError


def test_a_job_is_named_by_its_experiment_and_the_keys_that_change_results():
    assert job_dirname(["experiment=multitask/cu_inputs", "seed=0", "progress=false", "log_interval=100",
                        "trace.window=10", "hydra.sweep.dir=x", "threads=2"]) == "multitask.cu_inputs__seed=0"
    assert job_dirname(["seed=1", "cu.learning_rate=0.001", "+pus.pu3.kind=mlp"]) == \
        "cu.learning_rate=0.001__pus.pu3.kind=mlp__seed=1"
    assert job_dirname(["pus.pu0.pretrained=/a/b c.pt"]) == "pus.pu0.pretrained=_a_b_c.pt"  # one level, no spaces
    assert job_dirname(["progress=true"]) == "base"


def test_a_long_name_is_cut_and_kept_unique_by_a_hash():
    a = job_dirname([f"cu.hidden=[{','.join(['64'] * 40)}]", "seed=0"])
    b = job_dirname([f"cu.hidden=[{','.join(['64'] * 40)}]", "seed=1"])
    assert len(a) == DIRNAME_MAX and a != b and "/" not in a


def test_jobs_that_would_share_a_directory_are_refused_before_the_sweep():
    with pytest.raises(ConfigError, match="jobs 0 and 1 of the sweep would share the directory base"):
        prepare(["-m", "log_interval=100,200"])
