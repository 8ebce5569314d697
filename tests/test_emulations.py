"""The emulations of paper section 3 (DESIGN.md section 5's correctness contract): with the scripted CU, the IN
trains exactly like the plain PyTorch network, parameters within 1e-6 after 100 optimizer steps."""
import copy

import pytest
import torch

from inet.compose import compose
from inet.engine import Engine


def train_alongside(engine: Engine, loss_fn, steps: int) -> dict:
    """Step the engine until `steps` sequences were submitted in every lane; after each, one plain Adam step of
    copies of its PUs on the same sequences, with loss_fn(plain PUs, sequences [B, L, d])."""
    plain = copy.deepcopy(engine.pus)
    start = {n: [p.detach().clone() for p in pu.parameters()] for n, pu in plain.items()}
    opt = torch.optim.Adam(plain.parameters(), lr=engine.cfg.pu_optim.lr, fused=True)
    env = engine.first_env
    done = 0
    while done < steps:
        seq = env.seq.clone()  # the sequences of this iteration (a lane that submits starts a new one)
        step = engine.step()
        if step.ended:
            assert all(bool(e.submitted.all()) for e in step.ended) and len(step.ended[0].lanes) == engine.lanes
            loss = loss_fn(plain, seq)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
    for name, pu in plain.items():
        moved = max((q - p0).abs().max().item() for q, p0 in zip(pu.parameters(), start[name]))
        assert moved > 1e-3, f"training did not move {name}; the comparison would be vacuous"
        for p, q in zip(engine.pus[name].parameters(), pu.parameters()):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    return plain


def rnn_loss(pus, seq: torch.Tensor) -> torch.Tensor:
    """A GRU over the sequence from the learned initial state, a readout, MSE against the sum."""
    b = seq.shape[0]
    h = pus["reset"](n=b)[0]
    for t in range(seq.shape[1]):
        h = pus["rnn"](seq[:, t], h)[0]
    y = pus["readout"](h)[0]
    return (y - seq.sum(1)).square().mean()


def attention_loss(pus, seq: torch.Tensor) -> torch.Tensor:
    """Encode every item, then decode L outputs attending over all encodings; MSE against the reversed sequence."""
    b, length = seq.shape[:2]
    enc = torch.stack([pus["encode"](seq[:, t])[0] for t in range(length)], 1)
    mask = torch.ones(b, length)
    state = pus["start"](n=b)[0]
    loss = 0.0
    for j in range(length):
        y, state = pus["decode"](enc, mask, state)
        loss = loss + (y - seq[:, length - 1 - j]).square().mean()
    return loss


@pytest.mark.parametrize("lanes", [1, 3])
def test_scripted_rnn_equals_plain_gru_training(lanes):
    engine = Engine(compose(["experiment=emulate/rnn", f"lanes={lanes}", "seed=2"]))
    train_alongside(engine, rnn_loss, 100)


@pytest.fixture
def float64():
    """Exact arithmetic for the attention test: in float32 the engine sums the four decode records' gradients in
    another order than autograd, and Adam turns that rounding into up to ~9e-7 on parameters whose gradient is
    near zero, too close to the 1e-6 bound to be a stable test. In float64 the difference is ~1e-15."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("lanes", [1, 3])
def test_scripted_attention_equals_plain_encoder_decoder_training(lanes, float64):
    engine = Engine(compose(["experiment=emulate/attention", f"lanes={lanes}", "seed=2"]))
    train_alongside(engine, attention_loss, 100)


def test_a_shorter_horizon_breaks_the_rnn_equivalence():
    """The test above can fail: with horizon 3 the loss does not reach the first items' rnn runs."""
    engine = Engine(compose(["experiment=emulate/rnn", "tape.horizon=3", "seed=2"]))
    with pytest.raises(AssertionError):
        train_alongside(engine, rnn_loss, 5)


def test_scripted_route_is_the_rule_and_the_learned_variants_compose():
    engine = Engine(compose(["experiment=emulate/attention", "seed=0"]))
    names = [engine.action_names[int(engine.step().actions[0])] for _ in range(14)]
    assert names == ["clear_n2", "start", *["next", "encode"] * 4, *["decode"] * 4]
    assert engine.kpis.snapshot()["route_rate"] == 1.0
    for exp in ("emulate/rnn_learned", "emulate/attention_learned"):
        assert compose([f"experiment={exp}"]).cu.script is None


def test_route_rate_counts_breaking_the_rule_and_failing():
    """Instances: a second rnn run on one item (submitted, rule broken); the rule (kept); only resets until the
    timeout (failed, so not kept)."""
    engine = Engine(compose(["experiment=emulate/rnn", "seed=0"]))
    rule = ["reset", *["next", "rnn"] * 4, "readout"]
    actions = [*rule[:3], "rnn", *rule[3:], *rule, *["reset"] * 12]
    ended = []
    for name in actions:
        ended += engine.rollout.apply(engine.world, torch.tensor([engine.action_index[name]])).ended
    assert [bool(e.submitted[0]) for e in ended] == [True, True, False]
    assert [bool(e.extras["route_rate"][0]) for e in ended] == [False, True, False]


@pytest.mark.slow
def test_learned_cu_keeps_the_rnn_rule_on_its_own_after_the_training_wheels_within_40k_iterations():
    """Budget: emulate/rnn_learned as configured, seed 0: 40k iterations, the teacher's route leading for the first
    20k, the CU alone for the last 20k (~4-5 min of one core on the shared 2-core machine). Measured at the end:
    route_rate 0.98, task_success 0.905 over the last 200 task instances (docs/emulations.md)."""
    engine = Engine(compose(["experiment=emulate/rnn_learned", "seed=0"]))
    while engine.iteration < engine.cfg.iterations:
        engine.step()
    m = engine.metrics()
    assert m["route_rate"] >= 0.9 and m["task_success"] >= 0.8, m
