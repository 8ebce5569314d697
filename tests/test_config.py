"""Bad configs are rejected before iteration 0 with a message that names the offending key."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from inet.compose import compose
from inet.config import ConfigError
from inet.engine import Engine


class WrongShape(nn.Module):
    """A custom PU that writes 3 values into a node of shape [1]."""

    def __init__(self, in_shapes, out_shapes):
        super().__init__()
        self.lin = nn.Linear(1, 3)

    def forward(self, x):
        return self.lin(x)


BAD = [
    (["lanse=4"], "lanse"),  # typo of a top-level key
    (["lanes=abc"], "lanes"),  # wrong type
    (["lanes=0"], "lanes"),
    (["pus.pu1.inputs=[n9]"], "pus.pu1.inputs"),  # a node that does not exist
    (["envs.multitask.outputs=[n7]"], "envs.multitask.outputs"),
    (["pus.pu1.kind=mover", "nodes.n2.shape=[3]"], "pus.pu1"),  # shape mismatch node <-> PU
    (["pus.pu1.kind=custom", "+pus.pu1._target_=tests.test_config.WrongShape"], "pus.pu1"),
    (["pus.pu0.kind=lstm"], "pus.pu0.kind"),
    (["pus.pu0.hiden=[4]"], "hiden"),  # typo inside a PU
    (["nodes.n0.shape=[-1]"], "nodes.n0.shape"),  # negative size
    (["tape.horizon=0"], "tape.horizon"),
    (["cu.exploration_final_eps=1.5"], "cu.exploration_final_eps"),  # epsilon > 1
    (["envs.multitask.reward.timeout=0"], "envs.multitask.reward.timeout"),  # action budget < 1
    (["cu.inputs=[history,histroy]"], "cu.inputs"),
    (["cu.batch_size=64", "cu.buffer_size=32"], "cu.batch_size"),
    (["envs.multitask._target_=inet.tasks.nope.Env"], "envs.multitask._target_"),
    (["training_wheels.iterations=10"], "training_wheels.teacher"),
    (["training_wheels.mode=fade"], "training_wheels.mode"),
    (["nodes.n3.cu_view=[0,5]"], "nodes.n3.cu_view"),
    (["pus.pu0.pretrained=/nonexistent/pu0.pt"], "pus.pu0.pretrained"),
    *[(["experiment=reduce/xor", o], k) for o, k in [
        ("envs.reduce.curriculum.start_length=-1", "envs.reduce.curriculum.start_length"),  # negative length
        ("envs.reduce.curriculum.min_length=0", "envs.reduce.curriculum.min_length"),
        ("envs.reduce.curriculum.max_length=0", "envs.reduce.curriculum.max_length"),  # bounds inverted
        ("envs.reduce.curriculum.start_length=80", "envs.reduce.curriculum.start_length"),  # above max_length
        ("envs.reduce.curriculum.promote_after=0", "envs.reduce.curriculum.promote_after"),
        ("envs.reduce.curriculum.demote_after=-2", "envs.reduce.curriculum.demote_after"),
        ("envs.reduce.curriculum.mode=triple", "envs.reduce.curriculum.mode"),
        ("envs.reduce.curriculum.hysteresis=-1", "envs.reduce.curriculum.hysteresis"),
        ("envs.reduce.reward.timeout_per_item=-2", "envs.reduce.reward.timeout_per_item"),
        ("envs.reduce.params.f=nand", "envs.reduce.params.f"),
        ("evaluation.lengths=[0,4]", "evaluation.lengths"),
        ("evaluation.instances=0", "evaluation.instances"),
        ("evaluation.interval=-5", "evaluation.interval"),
        ("evaluation.threshold=1.5", "evaluation.threshold"),
        ("nodes.n2.round_to=[]", "nodes.n2.round_to"),
        ("nodes.n2.round_from=-1", "nodes.n2.round_from"),
        ("envs.reduce.params.route.reset=pu9", "envs.reduce.params.route.reset"),
        ("envs.reduce.signals=[new_instance,end_of_seq]", "envs.reduce.signals"),
        ("cu.n_step=0", "cu.n_step"),
    ]],
]


@pytest.mark.parametrize("overrides, key", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_config_is_rejected_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        Engine(compose(overrides))
    assert key in str(err.value)


def test_pretrained_of_the_wrong_shape_is_rejected(tmp_path):
    path = tmp_path / "pu.pt"
    torch.save(nn.Linear(5, 5).state_dict(), path)
    with pytest.raises(ConfigError, match="pus.pu1.pretrained"):
        Engine(compose([f"pus.pu1.pretrained={path}"]))


def test_cli_rejects_a_bad_config_before_any_work(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "run", "tape.horizon=0", f"hydra.run.dir={out}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "tape.horizon" in proc.stderr and "must be >= 1" in proc.stderr
    assert not (out / "kpis.csv").exists() and not (out / "checkpoint.pt").exists()
