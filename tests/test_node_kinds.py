"""Node kinds (inet/node_kinds.py): reading, writing, gradient flow through the tape, checkpoints, bad settings."""
import copy
import io

import pytest
import torch
from torch import nn

from inet.cli import prepare
from inet.compose import compose
from inet.config import ConfigError, CUConfig, EnvConfig, NodeConfig, PUConfig, RunConfig, TapeConfig, validate
from inet.engine import Engine
from inet.node_kinds import ENV, Slots


class MaskedMean(nn.Module):
    """A PU that accepts a batch: the mean of the filled entries, through a linear layer."""

    accepts_batch = True

    def __init__(self, in_shapes, out_shapes):
        super().__init__()
        self.lin = nn.Linear(in_shapes[0][-1], out_shapes[0][0])

    def forward(self, entries, mask):
        mean = (entries * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.lin(mean)


class NoBatch(MaskedMean):
    accepts_batch = False


def kinds_config(horizon: int = 4, **node_changes) -> RunConfig:
    """x (written by the regression env) feeds an accumulating node a, a memory m (address addr) and a combiner c;
    each has a reader writing y."""
    nodes = {"x": NodeConfig(shape=[4]), "y": NodeConfig(shape=[4]), "addr": NodeConfig(shape=[3]),
             "a": NodeConfig(shape=[4], kind="accumulating", capacity=3),
             "m": NodeConfig(shape=[4], kind="memory", slots=3, address="addr"),
             "c": NodeConfig(shape=[4], kind="combiner", k=2)}
    for name, changes in node_changes.items():
        nodes[name] = NodeConfig(**{**nodes[name].__dict__, **changes}) if name in nodes else NodeConfig(**changes)
    mlp = dict(kind="mlp", hidden=[8])
    pus = {"enc": PUConfig(inputs=["x"], outputs=["a"], **mlp),
           "pool": PUConfig(kind="custom", _target_="test_node_kinds.MaskedMean", inputs=["a"], outputs=["y"]),
           "mw": PUConfig(inputs=["x"], outputs=["m"], **mlp), "mr": PUConfig(inputs=["m"], outputs=["y"], **mlp),
           "cw": PUConfig(inputs=["x"], outputs=["c"], **mlp), "cr": PUConfig(inputs=["c"], outputs=["y"], **mlp)}
    env = EnvConfig(_target_="inet.tasks.regression.Regression", inputs=["x"], outputs=["y"], params={"pu": "enc"})
    return RunConfig(nodes=nodes, pus=pus, envs={"regression": env}, lanes=3, tape=TapeConfig(horizon=horizon),
                     cu=CUConfig(script="inet.tasks.regression.teacher", inputs=["history"]))


def put(engine: Engine, node: str, lanes, value: torch.Tensor) -> None:
    engine.nodes.write(node, lanes, value)


def address(engine: Engine, slots) -> None:
    """Point each lane's address at `slots[lane]`."""
    put(engine, "addr", list(range(len(slots))), torch.eye(3)[slots])


def grads(engine: Engine) -> dict:
    return {n: [None if p.grad is None else p.grad.clone() for p in pu.parameters()] for n, pu in engine.pus.items()}


def sweep_loss_on(engine: Engine, node: str, lanes, g: torch.Tensor) -> None:
    engine.tape.add_grad([engine.nodes.writers[node][i] for i in lanes], node, lanes, g)
    engine.tape.sweep(engine.runners)


# -- reading and writing ------------------------------------------------------------------------

def test_accumulating_appends_per_lane_reads_as_batch_and_clears():
    engine = Engine(kinds_config())
    nodes = engine.nodes
    nodes.write("a", [0, 1, 2], torch.full((3, 4), 1.0), writer=10)
    nodes.write("a", [2], torch.full((1, 4), 2.0), writer=11)
    assert nodes.counts["a"] == [1, 1, 2]
    (entries, parents), (mask, mask_parents) = nodes.read("a", [1, 2], torch.tensor([1, 2]))
    assert entries.shape == (2, 3, 4) and type(parents) is Slots
    assert list(parents) == [(10, ENV, ENV), (10, 11, ENV)] and mask_parents == [ENV, ENV]
    assert mask.tolist() == [[1, 0, 0], [1, 1, 0]]
    assert entries[1, :2, 0].tolist() == [1.0, 2.0] and entries[0, 1].abs().sum() == 0
    for w in (12, 13):  # lane 2 fills up, then drops its oldest entry
        nodes.write("a", [2], torch.full((1, 4), float(w)), writer=w)
    assert nodes.counts["a"][2] == 3 and nodes.slot_writers["a"][2] == [11, 12, 13]
    assert nodes.values["a"][2, :, 0].tolist() == [2.0, 12.0, 13.0]
    assert {10, 11, 12, 13} <= nodes.live_writers()
    nodes.clear("a", [2])
    assert nodes.counts["a"] == [1, 1, 0] and nodes.slot_writers["a"][2] == [ENV] * 3
    assert nodes.values["a"][2].abs().sum() == 0 and nodes.values["a"][0, 0, 0] == 1.0


def test_memory_reads_and_writes_the_slot_its_address_node_names_per_lane():
    engine = Engine(kinds_config())
    nodes = engine.nodes
    address(engine, [2, 0, 2])
    nodes.write("m", [0, 1, 2], torch.arange(3.0).unsqueeze(1).expand(3, 4), writer=7)
    assert nodes.slot_writers["m"] == [[ENV, ENV, 7], [7, ENV, ENV], [ENV, ENV, 7]]
    address(engine, [2, 1, 0])
    ((value, parents),) = nodes.read("m", [0, 1, 2], None)
    assert value[:, 0].tolist() == [0.0, 0.0, 0.0] and parents == [7, ENV, ENV]
    ((value, parents),) = nodes.read("m", [2], torch.tensor([2]))
    assert value[0, 0] == 0.0 and parents == [ENV]
    address(engine, [0, 0, 2])
    ((value, parents),) = nodes.read("m", [1, 2], torch.tensor([1, 2]))
    assert value[:, 0].tolist() == [1.0, 2.0] and parents == [7, 7]


def test_combiner_keeps_the_last_k_values_newest_first_and_combines_with_learned_weights():
    engine = Engine(kinds_config())
    nodes = engine.nodes
    for w in (1, 2, 3):
        nodes.write("c", [0, 1], torch.full((2, 4), float(w)), writer=w)
    assert nodes.slot_writers["c"][:2] == [[3, 2], [3, 2]] and nodes.counts["c"] == [2, 2, 0]
    combine = engine.node_modules["node:c"]
    assert combine.weight.tolist() == [1.0, 0.0]  # starts as a vector node: the newest value
    with torch.no_grad():
        combine.weight.copy_(torch.tensor([0.5, 2.0]))
    engine.run_pu("cr", [0, 1, 2], {})
    ref = engine.pus["cr"](torch.tensor([[0.5 * 3 + 2.0 * 2] * 4, [5.5] * 4, [0.0] * 4]))[0]
    torch.testing.assert_close(engine.nodes.values["y"], ref)


def test_clear_is_a_cu_action_of_each_accumulating_node_only():
    engine = Engine(kinds_config())
    assert [a for a in engine.action_names if a.startswith("clear")] == ["clear_a"]
    engine.nodes.write("a", [0, 1, 2], torch.ones(3, 4), writer=5)
    world = engine.world
    engine.rollout.apply(world, torch.tensor([engine.action_index["clear_a"], engine.action_index["cw"], engine.action_index["clear_a"]]))
    assert engine.nodes.counts["a"] == [0, 1, 0]


# -- gradient flow through the tape ------------------------------------------------------------

def test_each_accumulated_entry_gives_its_gradient_to_the_run_that_wrote_it():
    """enc runs on lanes {0,1,2}, then on {1} with a new x, then pool reads the batch; a loss on y: the tape's
    gradients equal autograd through the same computation, with lanes holding different entry counts."""
    engine = Engine(kinds_config())
    ref = copy.deepcopy(engine.pus)
    x1 = torch.randn(3, 4)
    x2 = torch.randn(1, 4)
    put(engine, "x", [0, 1, 2], x1)
    engine.run_pu("enc", [0, 1, 2], {})
    put(engine, "x", [1], x2)
    engine.run_pu("enc", [1], {})
    engine.run_pu("pool", [0, 1, 2], {})
    g = torch.randn(3, 4)
    sweep_loss_on(engine, "y", [0, 1, 2], g)

    e1 = ref["enc"](x1)[0]
    e2 = ref["enc"](x2)[0]
    entries = torch.zeros(3, 3, 4)
    entries = entries.index_put((torch.arange(3), torch.zeros(3, dtype=torch.long)), e1)
    entries = entries.index_put((torch.tensor([1]), torch.tensor([1])), e2)
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 0, 0]])
    (ref["pool"](entries, mask) * g).sum().backward()
    for name in ("enc", "pool"):
        for p, q in zip(engine.pus[name].parameters(), ref[name].parameters()):
            torch.testing.assert_close(p.grad, q.grad)


def test_an_accumulated_entry_is_one_record_deep_whatever_was_appended_after_it():
    """With horizon 2 the loss on pool's output reaches every entry's writer (depth 2), not beyond."""
    engine = Engine(kinds_config(horizon=2))
    for _ in range(3):
        put(engine, "x", [0, 1, 2], torch.randn(3, 4))
        engine.run_pu("enc", [0, 1, 2], {})
    engine.run_pu("pool", [0, 1, 2], {})
    sweep_loss_on(engine, "y", [0, 1, 2], torch.ones(3, 4))
    assert all(p.grad is not None for p in engine.pus["enc"].parameters())
    engine = Engine(kinds_config(horizon=1))
    put(engine, "x", [0, 1, 2], torch.randn(3, 4))
    engine.run_pu("enc", [0, 1, 2], {})
    engine.run_pu("pool", [0, 1, 2], {})
    sweep_loss_on(engine, "y", [0, 1, 2], torch.ones(3, 4))
    assert all(p.grad is None for p in engine.pus["enc"].parameters())


def test_the_gradient_flows_through_a_memory_read_to_the_run_that_wrote_the_slot():
    """mw writes slot 2 in lanes 0, 1 (x1), then slot 0 in lane 1 (x2); mr reads slot 2 in both lanes: the
    gradient reaches only the first run (lane 1's later write went to another slot), exactly as autograd."""
    engine = Engine(kinds_config())
    ref = copy.deepcopy(engine.pus)
    x1, x2 = torch.randn(2, 4), torch.randn(1, 4)
    address(engine, [2, 2, 0])
    put(engine, "x", [0, 1], x1)
    engine.run_pu("mw", [0, 1], {})
    address(engine, [2, 0, 0])
    put(engine, "x", [1], x2)
    engine.run_pu("mw", [1], {})
    address(engine, [2, 2, 0])
    engine.run_pu("mr", [0, 1], {})
    g = torch.randn(2, 4)
    sweep_loss_on(engine, "y", [0, 1], g)
    (ref["mr"](ref["mw"](x1)[0])[0] * g).sum().backward()
    for name in ("mw", "mr"):
        for p, q in zip(engine.pus[name].parameters(), ref[name].parameters()):
            torch.testing.assert_close(p.grad, q.grad)


def test_a_combiner_trains_its_weights_and_both_writers_through_the_tape():
    engine = Engine(kinds_config())
    ref = copy.deepcopy(engine.pus)
    weight = torch.tensor([0.7, -0.4], requires_grad=True)
    with torch.no_grad():
        engine.node_modules["node:c"].weight.copy_(weight)
    xs = torch.randn(2, 3, 4)
    for x in xs:
        put(engine, "x", [0, 1, 2], x)
        engine.run_pu("cw", [0, 1, 2], {})
    engine.run_pu("cr", [0, 1, 2], {})
    g = torch.randn(3, 4)
    sweep_loss_on(engine, "y", [0, 1, 2], g)
    combined = weight[0] * ref["cw"](xs[1])[0] + weight[1] * ref["cw"](xs[0])[0]
    (ref["cr"](combined)[0] * g).sum().backward()
    torch.testing.assert_close(engine.node_modules["node:c"].weight.grad, weight.grad)
    for name in ("cw", "cr"):
        for p, q in zip(engine.pus[name].parameters(), ref[name].parameters()):
            torch.testing.assert_close(p.grad, q.grad)
    assert "node:c" in engine.pu_optimizer.params  # its weights are stepped with the PUs


# -- checkpoint and resume ---------------------------------------------------------------------

def roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # as checkpoints load: plain containers only


def test_kinds_state_survives_a_weights_only_checkpoint_and_sweeps_the_same():
    engine = Engine(kinds_config())
    address(engine, [1, 2, 0])
    for _ in range(2):
        put(engine, "x", [0, 1, 2], torch.randn(3, 4))
        for pu in ("enc", "mw", "cw"):
            engine.run_pu(pu, [0, 1, 2], {})
    engine.run_pu("enc", [1], {})
    engine.run_pu("pool", [0, 1, 2], {})
    other = Engine(kinds_config())
    other.load_state_dict(roundtrip(engine.state_dict()))
    for attr in ("slot_writers", "counts", "writers"):
        assert getattr(other.nodes, attr) == getattr(engine.nodes, attr)
    for n, v in engine.nodes.values.items():
        torch.testing.assert_close(other.nodes.values[n], v, atol=0, rtol=0)
    assert any(type(ps) is Slots for r in other.tape.records.values() for ps in r.parents)
    for e in (engine, other):
        sweep_loss_on(e, "y", [0, 1, 2], torch.ones(3, 4))
    for a, b in zip(grads(engine).values(), grads(other).values()):
        for p, q in zip(a, b):
            assert (p is None) == (q is None) and (p is None or torch.equal(p, q))


def test_attention_resumed_mid_sequence_continues_exactly():
    """Stop the scripted attention emulation mid-sequence (entries half filled, Slots records on the tape),
    restore into a fresh engine, and both go on identically."""
    cfg = compose(["experiment=emulate/attention", "lanes=2", "seed=1"])
    engine = Engine(cfg)
    for _ in range(20):
        engine.step()
    assert 0 < engine.nodes.counts["n2"][0] < 4
    other = Engine(cfg)
    other.load_state_dict(roundtrip(engine.state_dict()))
    for _ in range(30):
        engine.step()
        other.step()
    for p, q in zip(engine.pus.parameters(), other.pus.parameters()):
        assert torch.equal(p, q)
    assert engine.nodes.counts == other.nodes.counts
    assert torch.equal(engine.nodes.values["n2"], other.nodes.values["n2"])


# -- bad settings --------------------------------------------------------------------------------

BAD = [
    ({"a": {"capacity": 0}}, {}, "nodes.a.capacity: must be >= 1, got 0"),
    ({"a": {"capacity": None}}, {}, "nodes.a.capacity: kind accumulating needs `capacity:`"),
    ({"m": {"slots": 0}}, {}, "nodes.m.slots: must be >= 1, got 0"),
    ({"c": {"k": 0}}, {}, "nodes.c.k: must be >= 1, got 0"),
    ({"addr": {"shape": [4]}}, {}, "nodes.m.address: node 'addr' has 4 values (shape [4]); an address needs one per slot (3)"),
    ({"m": {"address": "nope"}}, {}, "nodes.m.address: node 'nope' does not exist"),
    ({"m": {"address": "a"}}, {}, "nodes.m.address: node 'a' is accumulating; an address is a vector node"),
    ({"x": {"capacity": 3}}, {}, "nodes.x.capacity: is only used with kind accumulating; this node is vector"),
    ({"a": {"kind": "stack"}}, {}, "nodes.a.kind: unknown kind 'stack'"),
    ({"a": {"cu_visible": True}}, {}, "nodes.a.cu_visible: the CU sees only vector nodes"),
    ({}, {"pool": {"kind": "mlp", "_target_": None}}, "pus.pool.inputs: node 'a' is accumulating"),
    ({}, {"pool": {"_target_": "test_node_kinds.NoBatch"}}, "test_node_kinds.NoBatch does not accept a batch"),
]


@pytest.mark.parametrize("nodes, pus, message", BAD, ids=[m.split(":")[0] for _, _, m in BAD])
def test_bad_kind_settings_are_refused_naming_the_key(nodes, pus, message):
    cfg = kinds_config(**nodes)
    for name, changes in pus.items():
        cfg.pus[name] = PUConfig(**{**cfg.pus[name].__dict__, **changes})
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_environments_read_and_write_only_vector_nodes():
    cfg = kinds_config()
    cfg.envs["regression"].outputs = ["a"]
    with pytest.raises(ConfigError, match="envs.regression.outputs: node 'a' is accumulating"):
        validate(cfg)


@pytest.mark.parametrize("override, message", [
    ("nodes.n2.capacity=0", "nodes.n2.capacity: must be >= 1"),
    ("pus.encode.inputs=[n2]", "pus.encode.inputs: node 'n2' is accumulating"),
    ("+nodes.mem={kind:memory,slots:0,address:n0}", "nodes.mem.slots: must be >= 1"),
    ("+nodes.mem={kind:memory,slots:3,address:n0}", "nodes.mem.address: node 'n0' has 4 values"),
    ("+nodes.comb={kind:combiner,k:0}", "nodes.comb.k: must be >= 1"),
])
def test_the_command_refuses_bad_kinds_before_any_run_directory_exists(tmp_path, override, message):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        prepare(["experiment=emulate/attention", override, f"hydra.run.dir={run_dir}"])
    assert not run_dir.exists() and list(tmp_path.iterdir()) == []


def test_a_checkpoint_from_before_node_kinds_still_resumes(tmp_path):
    """Its config has no nodes.<n>.kind/capacity/slots/address/k: they are at their defaults, not a changed config."""
    from inet.run import checkpoint

    cfg = compose(["experiment=emulate/fnn", "iterations=50"])
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, cfg, Engine(cfg).state_dict(), {})
    state = torch.load(path, weights_only=False)
    new = ("kind", "capacity", "slots", "address", "k")
    state["config"] = {k: v for k, v in state["config"].items()
                       if not (k.startswith("nodes.") and k.rsplit(".", 1)[1] in new)}
    assert len(state["config"]) < len(checkpoint.flat_config(cfg))
    torch.save(state, path)
    checkpoint.load(path, cfg)
    changed = compose(["experiment=emulate/fnn", "iterations=50", "+nodes.extra={kind:combiner,k:2}"])
    with pytest.raises(ConfigError, match="nodes.extra.k: .<unset>. -> 2"):
        checkpoint.load(path, changed)
