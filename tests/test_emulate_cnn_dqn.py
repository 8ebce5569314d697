"""The cnn and dqn emulations of paper 3 (DESIGN.md section 6, issue 17) and the conv PU kind."""
import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inet.compose import compose
from inet.config import ConfigError
from inet.engine import Engine
from inet.pus import PU_KINDS, build_pu
from inet.config import PUConfig
from inet.tasks.images import CLASSES, shapes_batch
from inet.tasks.plain_dqn import PlainDQN


def test_every_kind_is_found_by_name_in_the_registry():
    assert {"mlp", "gru", "mover", "constant", "conv", "custom"} <= set(PU_KINDS)
    with pytest.raises(ConfigError, match=r"pus.p.kind: unknown kind 'lstm'; choose one of \['mlp'"):
        build_pu("p", PUConfig(kind="lstm", inputs=["a"], outputs=["b"]), {"a": (4,), "b": (4,)})


def test_conv_pu_writes_its_output_shapes_per_lane():
    cfg = PUConfig(kind="conv", inputs=["img"], outputs=["y", "z"], hidden=[8], params={"channels": [4, 6]})
    pu = build_pu("p", cfg, {"img": (2, 8, 6), "y": (3,), "z": (2, 2)})
    y, z = pu(torch.randn(5, 2, 8, 6))
    assert y.shape == (5, 3) and z.shape == (5, 2, 2)
    assert [m.out_channels for m in pu.convs] == [4, 6]


@pytest.mark.parametrize("override, message", [
    ("nodes.n0.shape=[64]", "pus.conv.inputs: a conv PU reads exactly one node of rank 3"),
    ("nodes.n0.shape=[8,8]", "pus.conv.inputs: a conv PU reads exactly one node of rank 3"),
    ("pus.conv.params.pool=4", "pus.conv.params.pool"),
    ("pus.conv.params.kernel=2", "pus.conv.params.kernel: must be odd"),
    ("pus.conv.params.channels=[]", "pus.conv.params.channels"),
    ("+pus.conv.params.stride=2", "pus.conv.params.stride: not a conv option"),
])
def test_bad_conv_pu_is_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        compose(["experiment=emulate/cnn", override])


def test_cli_refuses_a_conv_pu_on_a_node_of_the_wrong_rank_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "inet.cli", "run", "experiment=emulate/cnn", "nodes.n0.shape=[64]",
                           f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "pus.conv.inputs" in proc.stderr and "rank 3" in proc.stderr
    assert not out.exists()


def test_shapes_images_are_the_declared_classes():
    gen = torch.Generator().manual_seed(0)
    image, label = shapes_batch(400, 8, 8, 0.0, gen)
    assert image.shape == (400, 1, 8, 8) and set(label.tolist()) == set(range(len(CLASSES)))
    ink = image.flatten(1).sum(1)
    assert (ink >= 3).all()  # every shape has at least 3 pixels
    horizontal, vertical = image[label == 0, 0], image[label == 1, 0]
    assert (horizontal.sum(2).amax(1) == horizontal.sum((1, 2))).all()  # all ink in one row
    assert (vertical.sum(1).amax(1) == vertical.sum((1, 2))).all()  # all ink in one column


@pytest.mark.parametrize("lanes", [1, 4])
def test_scripted_cnn_equals_plain_cnn_training(lanes):
    """conv then head, cross-entropy on the logits: the same parameters as plain PyTorch after 100 steps."""
    cfg = compose(["experiment=emulate/cnn", f"lanes={lanes}", "seed=2"])
    engine = Engine(cfg)
    ref = copy.deepcopy(engine.pus)
    start = [p.detach().clone() for p in ref.parameters()]
    opt = torch.optim.Adam(ref.parameters(), lr=cfg.pu_optim.lr, fused=True)
    env = engine.first_env
    for _ in range(100):
        x, label = engine.nodes.values["n0"].clone(), env.label.clone()  # the images this step trains on
        engine.step()  # conv
        engine.step()  # head: the submit, its loss and the PUs' step
        loss = F.cross_entropy(ref["head"](ref["conv"](x)[0])[0], label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert engine.kpis.snapshot()["optimal_route_rate"] == 1.0
    moved = 0.0
    for p, q, p0 in zip(engine.pus.parameters(), ref.parameters(), start):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
        moved = max(moved, (q - p0).abs().max().item())
    assert moved > 1e-2, "training did not move the parameters; the comparison would be vacuous"


@pytest.mark.parametrize("lanes", [1, 3])
def test_scripted_dqn_in_equals_plain_dqn(lanes):
    """Live play then one replay per cycle of 10 iterations: the PU-DQN's parameters equal a plain DQN's after
    120 updates, and so do the games played (the same episode returns)."""
    cfg = compose(["experiment=emulate/dqn", f"lanes={lanes}", "seed=1", "envs.game.params.eps_steps=300"])
    engine = Engine(cfg)
    plain = PlainDQN(copy.deepcopy(engine.pus["dqn"]), cfg)
    start = [p.detach().clone() for p in plain.qnet.parameters()]
    for _ in range(120):
        for _ in range(10):
            engine.step()
        plain.step()
    game = engine.envs["game"]
    assert engine.trackers["replay"].snapshot()["route_rate"] == 1.0
    assert list(game.returns) == plain.returns[-len(game.returns):] and len(plain.returns) >= 30
    moved = 0.0
    for p, q, p0 in zip(engine.pus["dqn"].parameters(), plain.qnet.parameters(), start):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
        moved = max(moved, (q - p0).abs().max().item())
    assert moved > 1e-2, "training did not move the parameters; the comparison would be vacuous"
