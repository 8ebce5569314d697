"""Node-level actions with a learned rater (paper 6.7; inet/node_actions.py)."""
from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from torch import nn

from inet.analysis.viz_layout import network
from inet.compose import compose
from inet.config import ConfigError, CUConfig, NodeConfig
from inet.engine import Engine
from inet.evaluation import success_at_length
from inet.node_actions import NodeRaters
from inet.nodes import Nodes
from inet.run import checkpoint
from inet.run.runner import RunInterrupted, run
from inet.run.trace import action_kinds

from interrupt import stop_at

CPU = torch.device("cpu")
MULTITASK = ["experiment=multitask/cu_inputs", "cu.node_actions=true"]


class Prefers(nn.Module):
    """A rater for multitask's n2 (features: n0, n1, the candidate value, one-hot of pu1, pu2) that predicts
    loss 0 for the PU of the larger input and 1 for the other: pu1 where n0 > n1, else pu2."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # so that the raters' update has a graph to go through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        right = (x[..., 0] > x[..., 1]).float() == x[..., 3]
        return (1.0 - right.float()).unsqueeze(-1) + self.unused


def engine_with(overrides: list, n0: list, n1: list) -> Engine:
    """A multitask engine with node actions, no rater exploration, the `Prefers` rater and inputs n0, n1."""
    engine = Engine(compose([*MULTITASK, f"lanes={len(n0)}", "cu.node_rater_epsilon=0", *overrides]))
    engine.node_raters.raters["n2"] = Prefers()
    lanes, env = list(range(len(n0))), engine.first_env
    env.a, env.b = torch.tensor(n0), torch.tensor(n1)
    env.target = torch.where(env.a > env.b, 2 * env.a, env.b / 2)
    engine.nodes.write("n0", lanes, env.a.unsqueeze(1))
    engine.nodes.write("n1", lanes, env.b.unsqueeze(1))
    return engine


def node_action(engine: Engine, node: str):
    """Every lane takes `node:<node>` once (recorded on the tape, with the Environments' feedback)."""
    actions = torch.full((engine.lanes,), engine.action_index[f"node:{node}"])
    return engine.rollout.apply(engine.world, actions, engine.tape, engine._nonfinite)


def test_node_actions_are_off_by_default():
    cfg = compose(["experiment=multitask/cu_inputs"])
    assert cfg.cu.node_actions is False
    engine = Engine(cfg)
    assert engine.action_names == ["pu0", "pu1", "pu2"] and engine.node_raters is None
    assert engine.ran_index == engine.action_index
    assert math.isnan(engine.metrics()["rater_loss"]) and math.isnan(engine.metrics()["rater_agreement"])


def test_the_cu_gets_one_action_per_written_node_and_the_environments_the_pus_after_them():
    engine = Engine(compose(MULTITASK))
    assert engine.action_names == ["node:n2", "node:n3"]  # node declaration order
    assert engine.ran_index == {"node:n2": 0, "node:n3": 1, "pu0": 2, "pu1": 3, "pu2": 4}
    assert engine.first_env.first == 2  # multitask's route is named by PUs: `Step.ran` tells it pu0 ran
    assert engine.node_raters.writers == {"n2": ["pu1", "pu2"], "n3": ["pu0"]}
    assert list(engine.node_raters.raters) == ["n2"]  # a node with one writer needs no rater
    assert [a["kind"] for a in action_kinds(engine)] == ["node", "node"]
    drawn = {e["id"]: e["actions"] for e in network(asdict(engine.cfg), action_kinds(engine))["elements"]}
    assert drawn["node:n2"] == [0] and drawn["node:n3"] == [1] and drawn["pu:pu1"] == []  # the viewer lights the node
    reduce = Engine(compose(["experiment=reduce/xor", "cu.node_actions=true"]))
    assert reduce.action_names == ["next", "node:n1", "node:n2"]  # env actions stay


def test_a_node_action_runs_every_writer_and_writes_the_one_the_rater_rates_best():
    engine = engine_with([], n0=[0.9, 0.2, 0.7], n1=[0.1, 0.6, 0.3])
    with torch.no_grad():
        want = {"pu1": engine.pus["pu1"](engine.nodes.values["n0"])[0], "pu2": engine.pus["pu2"](engine.nodes.values["n1"])[0]}
    calls = {"pu1": 0, "pu2": 0}
    for name in calls:
        engine.pus[name].register_forward_hook(lambda m, i, o, name=name: calls.__setitem__(name, calls[name] + 1))
    written_before = engine.nodes.values["n2"].clone()
    step = node_action(engine, "n2")
    assert calls == {"pu1": 1, "pu2": 1}  # both writers ran, once each, on all lanes
    winners = ["pu1", "pu2", "pu1"]
    for lane, pu in enumerate(winners):
        assert torch.equal(engine.nodes.values["n2"][lane], want[pu][lane])
        assert engine.tape.records[engine.nodes.writers["n2"][lane]].pu == pu
    assert not torch.equal(engine.nodes.values["n2"], written_before)
    assert step.ran.tolist() == [engine.ran_index[p] for p in winners]
    assert step.actions.tolist() == [engine.action_index["node:n2"]] * 3  # the CU's choice stays as it was
    assert sorted(r.pu for r in engine.tape.records.values()) == ["pu1", "pu2"]  # one record per winner, no loser
    assert sorted(step.written["n2"]) == [0, 1, 2]


def test_the_winner_gets_the_node_losss_gradient_and_the_loser_none():
    engine = engine_with([], n0=[0.2, 0.1], n1=[0.6, 0.8])  # b > a in both lanes: pu2 wins both
    step = node_action(engine, "n2")
    assert step.losses and step.ran.tolist() == [engine.ran_index["pu2"]] * 2
    for p in engine.pus.parameters():
        p.grad = None
    engine._node_losses(step)
    engine.tape.sweep(engine.runners)
    assert all(p.grad is None for p in engine.pus["pu1"].parameters())
    b = torch.tensor([[0.6], [0.8]])
    pu2 = engine.pus["pu2"]  # the loss (pu2(b) - b/2)^2 summed over the lanes, over 2 lanes (tape.env_scale 1)
    expected = torch.autograd.grad((pu2(b)[0].reshape(-1) - b.reshape(-1) / 2).square().sum() / 2, list(pu2.parameters()))
    for p, g in zip(pu2.parameters(), expected):
        torch.testing.assert_close(p.grad, g)


def test_the_rater_learns_to_prefer_the_writer_whose_values_get_the_lower_loss():
    """Two writers of y: `good` always writes the target 1.0, `bad` 3.0; the loss is (y - 1)^2 per lane."""
    nodes = Nodes({"y": NodeConfig()}, 4, CPU)
    raters = NodeRaters(CUConfig(node_rater_epsilon=0.0, node_rater_lr=1e-2), {"y": ["bad", "good"]},
                        {"bad": [], "good": []}, nodes, seed=0, device=CPU)
    lanes = [0, 1, 2, 3]
    outputs = {0: torch.full((4, 1), 3.0), 1: torch.full((4, 1), 1.0)}
    first = raters.predict("y", torch.zeros(4, 0), torch.stack([outputs[0], outputs[1]], 1))
    for rid in range(300):
        choice = raters.choose("y", nodes, lanes, None, outputs, training=True)
        value = torch.stack([outputs[int(c)][i] for i, c in enumerate(choice)])
        raters.track("y", lanes, [rid] * 4)
        raters.observe("y", lanes, value, [rid] * 4, lambda v: (v.reshape(-1) - 1.0).square())
        raters.learn()
    assert raters.choose("y", nodes, lanes, None, outputs, training=False).tolist() == [1, 1, 1, 1]
    predicted = raters.predict("y", torch.zeros(4, 0), torch.stack([outputs[0], outputs[1]], 1))
    torch.testing.assert_close(predicted, torch.tensor([[4.0, 0.0]] * 4), atol=0.1, rtol=0)
    assert not torch.allclose(first, predicted, atol=0.5)
    m = raters.metrics()
    assert 0.0 < m["rater_agreement"] <= 1.0 and m["rater_loss"] > 0


def test_a_value_overwritten_before_its_loss_teaches_nothing_and_a_pick_teaches_once():
    nodes = Nodes({"y": NodeConfig()}, 2, CPU)
    raters = NodeRaters(CUConfig(node_rater_epsilon=0.0), {"y": ["a", "b"]}, {"a": [], "b": []}, nodes, 0, CPU)
    outputs = {0: torch.zeros(2, 1), 1: torch.ones(2, 1)}
    raters.choose("y", nodes, [0, 1], None, outputs, training=True)
    raters.track("y", [0, 1], [7, 7])
    loss = lambda v: v.reshape(-1).square()  # noqa: E731
    raters.observe("y", [0, 1], torch.zeros(2, 1), [-1, 8], loss)  # lane 0 by an Environment, lane 1 by record 8
    assert raters._batch == {}
    raters.observe("y", [1], torch.zeros(1, 1), [7], loss)
    assert len(raters._batch["y"]) == 1 and raters._batch["y"][0][2].tolist() == [[0.0, 1.0]]  # both candidates
    raters.observe("y", [1], torch.zeros(1, 1), [7], loss)
    assert len(raters._batch["y"]) == 1  # taught once
    raters.observe("y", [0, 1], torch.zeros(2, 1), [7, 7], lambda v: v.square().sum())  # a sum over two lanes
    assert len(raters._batch["y"]) == 1


def test_greedy_evaluation_runs_node_actions_without_exploring_or_keeping_picks():
    engine = Engine(compose(["experiment=reduce/xor", "cu.node_actions=true", "lanes=2"]))
    for _ in range(20):
        engine.step()
    gen, picks = engine.node_raters.gen.get_state(), engine.node_raters.picks["n2"].state_dict()
    success_at_length(engine, 2, 8, torch.Generator().manual_seed(0))
    assert torch.equal(engine.node_raters.gen.get_state(), gen)
    after = engine.node_raters.picks["n2"].state_dict()
    assert after["rid"] == picks["rid"] and torch.equal(after["values"], picks["values"])


@pytest.mark.parametrize("override", ["experiment=multitask/training_wheels", "cu.script=inet.tasks.multitask.teacher",
                                      "pus.pu0.outputs=[n3,n2]"])
def test_what_names_pu_actions_or_writes_several_nodes_is_refused_naming_the_key(override):
    with pytest.raises(ConfigError, match=r"^cu.node_actions: .*cu.node_actions=false"):
        compose([*MULTITASK, override])


def test_kinded_nodes_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^cu.node_actions: node 'n2' is accumulating"):
        compose(["experiment=emulate/attention", "cu.script=null", "cu.node_actions=true"])


@pytest.mark.parametrize("override,key", [("cu.node_rater_epsilon=1.5", "cu.node_rater_epsilon"),
                                          ("cu.node_rater_lr=0", "cu.node_rater_lr"),
                                          ("cu.node_rater_hidden=[0]", "cu.node_rater_hidden")])
def test_bad_rater_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        compose([*MULTITASK, override])


def test_a_run_with_node_actions_logs_the_rater_and_resumes_exactly(tmp_path, monkeypatch):
    overrides = [*MULTITASK, "lanes=4", "iterations=800", "log_interval=200", "checkpoint_interval=400", "seed=2",
                 "progress=false"]
    full = tmp_path / "full"
    run(compose(overrides), full, "config: test\n")
    cut = tmp_path / "cut"
    stop_at(monkeypatch, 604)
    with pytest.raises(RunInterrupted):
        run(compose(overrides), cut, "config: test\n")
    monkeypatch.undo()
    state = torch.load(cut / checkpoint.FILENAME, weights_only=True)["engine"]
    assert state["iteration"] == 604 and state["node_actions"]["compared"] > 0  # mid-interval rater counts
    run(compose([*overrides, "resume=true"]), cut, "config: test\n")
    assert (cut / "kpis.csv").read_bytes() == (full / "kpis.csv").read_bytes()
    ends = [torch.load(d / checkpoint.FILENAME, weights_only=True)["engine"] for d in (full, cut)]
    for a, b in zip(*(e["node_actions"]["raters"].values() for e in ends)):
        assert torch.equal(a, b)
    header, *rows = (full / "kpis.csv").read_text().splitlines()
    columns = header.split(",")
    last = dict(zip(columns, rows[-1].split(",")))
    assert 0.0 <= float(last["rater_agreement"]) <= 1.0 and float(last["rater_loss"]) >= 0.0
