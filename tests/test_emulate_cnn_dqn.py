"""The cnn and dqn emulations of paper 3 (DESIGN.md section 6, issue 17) and the conv PU kind."""
import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from inet.compose import compose
from inet.config import ConfigError, PUConfig
from inet.engine import Engine
from inet.pus import PU_KINDS, build_pu
from inet.tasks.game import Catch
from inet.tasks.images import CLASSES, shapes_batch
from inet.tasks.plain_dqn import PlainDQN, greedy_return
from inet.tasks.replay_env import ReplayMemory


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


def test_catch_ends_each_episode_after_rows_minus_one_steps_with_plus_or_minus_one():
    gen = torch.Generator().manual_seed(0)
    game = Catch(64, 5, 5, torch.device("cpu"))
    lanes = torch.arange(64)
    game.reset(lanes, gen)
    start_col = game.ball_col.clone()
    for i in range(4):
        obs = game.observe(lanes)
        assert obs.shape == (64, 25) and (obs.sum(1) >= 1).all()
        chase = (game.ball_col - game.paddle).sign() + 1  # move the paddle towards the ball
        reward, done = game.step(lanes, chase)
        assert done.all() == (i == 3) and (reward[~done] == 0).all()
    assert (reward == 1).all() and (game.ball_col == start_col).all()  # chasing always catches on 5x5
    game.reset(lanes, gen)
    for _ in range(4):
        reward, done = game.step(lanes, torch.zeros(64, dtype=torch.long))  # always left: misses most balls
    assert set(reward.tolist()) == {-1.0, 1.0} and (reward[game.ball_col == 0] == 1).all()


def test_replay_memory_keeps_the_last_capacity_records_per_lane():
    memory = ReplayMemory(2, 3, 4, torch.device("cpu"))
    for k in range(5):
        memory.add(torch.tensor([0]), torch.full((1, 4), float(k)))
    memory.add(torch.tensor([1]), torch.full((1, 4), 9.0))
    gen = torch.Generator().manual_seed(0)
    drawn = {memory.sample(torch.tensor([0, 1]), gen)[:, 0].tolist().__iter__().__next__() for _ in range(60)}
    assert drawn == {2.0, 3.0, 4.0}
    assert (memory.sample(torch.tensor([1]), gen) == 9.0).all()


def test_fetch_with_an_empty_memory_is_an_invalid_action():
    cfg = compose(["experiment=emulate/dqn", "cu.script=null", "lanes=2"])
    engine = Engine(cfg)
    fetch = engine.action_index["fetch"]
    engine.script = lambda env: torch.tensor([fetch, fetch])
    step = engine.step()
    assert step.env_reward["replay"].tolist() == [cfg.envs["replay"].reward.invalid_action] * 2


def test_a_wrong_replay_route_costs_the_reward_and_the_route_rate():
    """The loss pass through the live mover-in (the PU reads the live observation): route_rate 0, no reward."""
    cfg = compose(["experiment=emulate/dqn", "lanes=2",
                   "envs.game.params.cycle=[mv_live_in,dqn,mv_live_out,fetch,mv_replay_in,dqn,mv_replay_out,"
                   "mv_live_in,dqn,mv_replay_out]"])
    engine = Engine(cfg)
    for _ in range(50):
        engine.step()
    replay = engine.trackers["replay"].snapshot()
    assert replay["route_rate"] == 0.0 and replay["reward_per_task"] == 0.0
    assert engine.trackers["game"].snapshot()["route_rate"] == 1.0


@pytest.mark.parametrize("override, key", [
    ("nodes.n6.shape=[50]", "envs.game"),
    ("envs.game.params.route=[mv_live_in,dqn,mv_live_outt]", "envs.game.params.route[2]"),
    ("envs.game.params.cycle=[fetch,dqnn]", "envs.game.params.cycle[1]"),
    ("envs.replay.params.capacity=0", "envs.replay.params.capacity"),
    ("envs.replay.params.route=[mv_replay_in,dqn]", "envs.replay.params.route"),
    ("nodes.n1.shape=[4]", "pus.mv_live_out"),  # the mover between n5 [3] and n1 finds it first
])
def test_bad_dqn_emulation_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        Engine(compose(["experiment=emulate/dqn", override]))
    assert key in str(err.value)


@pytest.mark.parametrize("experiment", ["emulate/dqn_learned", "emulate/cnn_learned"])
def test_the_emulations_resume_exactly(experiment):
    """state_dict/load_state_dict mid-run (replays and images in flight) continue exactly as the uncut run."""
    cfg = compose([f"experiment={experiment}", "lanes=2", "cu.learning_starts=20"])
    full = Engine(cfg)
    for _ in range(60):
        full.step()
    state = copy.deepcopy(full.state_dict())
    for _ in range(60):
        full.step()
    cut = Engine(cfg)
    cut.load_state_dict(state)
    for _ in range(60):
        cut.step()
    for p, q in zip(full.pus.parameters(), cut.pus.parameters()):
        assert torch.equal(p, q)
    assert full.metrics() == pytest.approx(cut.metrics(), nan_ok=True)


@pytest.mark.slow
def test_learned_cu_finds_the_cnn_route():
    """emulate/cnn_learned, 20k iterations: the CU runs conv then head and the CNN classifies the shapes."""
    engine = Engine(compose(["experiment=emulate/cnn_learned"]))
    while engine.iteration < engine.cfg.iterations:
        engine.step()
    kpis = engine.kpis.snapshot()
    assert kpis["optimal_route_rate"] >= 0.95 and kpis["task_success"] >= 0.95


@pytest.mark.slow
def test_scripted_pu_dqn_plays_catch_as_well_as_the_plain_dqn_and_beats_random():
    """emulate/dqn as configured (3,000 game steps): measured 0.6 greedy for seed 0 (docs/emulations-cnn-dqn.md)."""
    cfg = compose(["experiment=emulate/dqn", "seed=0"])
    engine = Engine(cfg)
    plain = PlainDQN(copy.deepcopy(engine.pus["dqn"]), cfg)
    while engine.iteration < cfg.iterations:
        engine.step()
    for _ in range(cfg.iterations // cfg.lanes // 10):
        plain.step()
    ours, theirs = greedy_return(engine.pus["dqn"], 5, 5), greedy_return(plain.qnet, 5, 5)
    assert ours == theirs and ours >= 0.5  # a random policy scores about -0.6
