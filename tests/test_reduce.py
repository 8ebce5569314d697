"""The reduce experiment (paper 5.2): plumbing with a scripted optimal CU, failures and their rewards,
the curriculum, and evaluation that leaves training untouched."""
import copy
import functools
import operator
import random

import numpy as np
import pytest
import torch

from inet.compose import compose
from inet.config import CurriculumConfig
from inet.engine import Engine
from inet.evaluation import evaluation_generator, success_at_length
from inet.nodes import snap
from inet.tasks.curriculum import Curriculum
from inet.tasks.reduce import reduce_target

EXACT = ["pus.pu1.kind=custom", "+pus.pu1._target_=inet.tasks.reduce.ExactReductor", "pus.pu0.kind=mover",
         "pus.pu2.trainable=false", "cu.script=inet.tasks.reduce.teacher", "evaluation.interval=0"]
REWARDS = ["envs.reduce.reward.invalid_action=-0.3", "envs.reduce.reward.wrong_answer=-0.7",
           "envs.reduce.reward.timeout_penalty=-0.9", "envs.reduce.reward.per_iteration=-0.01",
           "envs.reduce.reward.timeout=3", "envs.reduce.reward.timeout_per_item=2"]


def fixed(length: int) -> list:
    return ["curriculum@envs.reduce.curriculum=fixed", f"envs.reduce.curriculum.start_length={length}"]


def always(name: str):
    """A scripted CU that always takes action `name`."""
    return lambda env: torch.full((env.lanes,), env.action_index[name], dtype=torch.long)


always_next = always("next")
always_reset = always("pu2")


@pytest.mark.parametrize("f", ["xor", "and", "or", "last", "constant"])
def test_reduce_target_matches_python_reduce(f):
    g = torch.Generator().manual_seed(0)
    seq = (torch.rand(300, 9, generator=g) < 0.5).long()
    length = torch.randint(1, 10, (300,), generator=g)
    ops = {"xor": (operator.xor, 0), "and": (operator.and_, 1), "or": (operator.or_, 0),
           "last": (lambda m, x: x, 0), "constant": (lambda m, x: 1, 0)}
    op, start = ops[f]
    want = [functools.reduce(op, row[:n].tolist(), start) for row, n in zip(seq, length.tolist())]
    assert reduce_target(f, seq, length, constant=1).tolist() == want


def test_scripted_optimal_cu_with_an_exact_xor_pu_solves_parity_at_length_64():
    """Plumbing: the teacher's route (reset, (next, pu1) x 64, submit) with an exact XOR reductor."""
    engine = Engine(compose(["experiment=reduce/xor", *fixed(64), *EXACT, "lanes=200", "iterations=100000"]))
    ended = []
    while engine.kpis.tasks < 200:
        step = engine.step()
        ended += [e for e in step.ended]
    assert engine.iteration == 200 * (2 * 64 + 2)  # every lane took exactly the optimal 130 iterations
    assert all(e.success.all() and e.submitted.all() for e in ended)
    assert engine.metrics()["task_success"] == 1.0
    assert sorted(torch.cat([e.lanes for e in ended]).tolist()) == list(range(200))
    assert success_at_length(engine, 64, 200, evaluation_generator(0, 0, 64, engine.device)) == 1.0
    wrong = Engine(compose(["experiment=reduce/xor", *fixed(64), *EXACT, "+pus.pu1.params.f=or"]))
    # OR of 64 random bits is 1: right only on odd parity, about half of the instances
    assert 0.3 < success_at_length(wrong, 64, 200, evaluation_generator(0, 0, 64, wrong.device)) < 0.7


def run_until_end(engine: Engine, limit: int = 200):
    for _ in range(limit):
        step = engine.step()
        if step.ended:
            return engine.iteration, step
    raise AssertionError("no task instance ended")


def test_next_past_the_end_fails_with_the_invalid_action_reward():
    engine = Engine(compose(["experiment=reduce/xor", *fixed(2), *REWARDS, "cu.script=test_reduce.always_next"]))
    it, step = run_until_end(engine)
    assert it == 3  # two valid `next`, the third is past the end
    assert step.reward.item() == pytest.approx(-0.3 - 0.01)
    assert step.terminal.item() and not step.ended[0].success.item() and not step.ended[0].submitted.item()
    assert engine.metrics()["task_success"] == 0.0


def test_a_wrong_answer_fails_with_the_wrong_answer_reward():
    """f = constant 1, but the memory is reset to 0 and reduced with AND: the route completes with 0."""
    engine = Engine(compose(["experiment=reduce/constant", *fixed(3), *REWARDS, *EXACT, "+pus.pu1.params.f=and"]))
    it, step = run_until_end(engine)
    assert it == 2 * 3 + 2
    assert step.reward.item() == pytest.approx(-0.7 - 0.01)
    assert step.terminal.item() and step.ended[0].submitted.item() and not step.ended[0].success.item()


def test_a_timeout_fails_with_the_timeout_penalty_after_the_length_scaled_budget():
    engine = Engine(compose(["experiment=reduce/xor", *fixed(2), *REWARDS, "cu.script=test_reduce.always_reset"]))
    it, step = run_until_end(engine)
    assert it == 3 + 2 * 2  # reward.timeout + reward.timeout_per_item * L
    assert step.reward.item() == pytest.approx(-0.9 - 0.01)
    assert step.terminal.item() and not step.ended[0].success.item()


def test_submitting_before_the_end_of_the_sequence_is_an_invalid_action():
    engine = Engine(compose(["experiment=reduce/xor", *fixed(4), *REWARDS, *EXACT[:-2], "evaluation.interval=0",
                             "cu.script=test_reduce.always_submit"]))
    it, step = run_until_end(engine)
    assert it == 1 and step.reward.item() == pytest.approx(-0.3 - 0.01) and not step.ended[0].success.item()


always_submit = always("pu0")


def test_curriculum_promotes_and_demotes_exactly_as_configured():
    c = Curriculum(CurriculumConfig(enabled=True, start_length=3, min_length=1, max_length=6, promote_after=3,
                                    demote_after=2, mode="add", step=2))
    trace = []
    for ok in [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]:
        c.update([bool(ok)])
        trace.append(c.length)
    # a failure breaks the success streak; 3 in a row promote by 2, capped at 6; 2 failures in a row demote
    assert trace == [3, 3, 3, 3, 3, 5, 5, 5, 6, 6, 6, 6, 6, 4, 4, 2, 2, 1, 1, 1]
    assert c.max_reached == 6 and c.promotions == 2 and c.demotions == 3


def test_curriculum_doubling_with_hysteresis_ignores_instances_after_a_change():
    c = Curriculum(CurriculumConfig(enabled=True, start_length=2, min_length=1, max_length=8, promote_after=2,
                                    demote_after=1, mode="double", hysteresis=2))
    trace = []
    for ok in [1, 1, 0, 0, 1, 1, 0, 0, 0]:
        c.update([bool(ok)])
        trace.append(c.length)
    assert trace == [2, 4, 4, 4, 4, 8, 8, 8, 4]


def test_curriculum_in_the_environment_follows_the_scripted_cu_and_is_logged():
    over = ["experiment=reduce/xor", *EXACT, "envs.reduce.curriculum.promote_after=3",
            "envs.reduce.curriculum.mode=double", "envs.reduce.curriculum.max_length=8"]
    engine = Engine(compose(over))
    lengths = []
    while engine.kpis.tasks < 12:
        step = engine.step()
        if step.ended:
            lengths.append(int(engine.first_env.length.item()))
    assert lengths == [1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 8]  # the length of the instance started after each end
    m = engine.metrics()
    assert m["curriculum_length"] == 8 and m["max_length_reached"] == 8
    failing = Engine(compose(["experiment=reduce/xor", "cu.script=test_reduce.always_next",
                              "envs.reduce.curriculum.start_length=5", "envs.reduce.curriculum.demote_after=2"]))
    while failing.kpis.tasks < 4:
        failing.step()
    assert failing.metrics()["curriculum_length"] == 3 and failing.metrics()["max_length_reached"] == 5


def flat(state, prefix=""):
    """(path, leaf) pairs of a nested state."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from flat(v, f"{prefix}/{k}")
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from flat(v, f"{prefix}/{i}")
    else:
        yield prefix, state


def same_state(a, b) -> bool:
    fa, fb = list(flat(a)), list(flat(b))
    if [k for k, _ in fa] != [k for k, _ in fb]:
        return False
    for (_, x), (_, y) in zip(fa, fb):
        if isinstance(x, torch.Tensor):
            if not (x.shape == y.shape and torch.equal(x, y)):
                return False
        elif isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif not (x == y or (x != x and y != y)):
            return False
    return True


def test_evaluation_leaves_the_training_state_untouched():
    over = ["experiment=reduce/xor", "iterations=1200", "evaluation.interval=0", "evaluation.instances=50",
            "evaluation.lengths=[1,2,4,8]", "seed=3"]
    a, b = Engine(compose(over)), Engine(compose(over))
    for e in (a, b):
        while e.iteration < 600:
            e.step()
    before = copy.deepcopy(a.state_dict())
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    results = a.evaluator.run(a)
    assert set(results) == {1, 2, 4, 8}
    state = a.state_dict()
    state.pop("evaluation")
    before.pop("evaluation")
    assert same_state(state, before)  # parameters, optimizers, replay, tape, nodes, env, generators
    assert random.getstate() == rng[0] and torch.equal(torch.get_rng_state(), rng[2])
    assert np.array_equal(np.random.get_state()[1], rng[1][1])
    for e in (a, b):
        while e.iteration < 1200:
            e.step()
    sa, sb = a.state_dict(), b.state_dict()
    sa.pop("evaluation")
    sb.pop("evaluation")
    assert same_state(sa, sb)  # training continues exactly as if no evaluation had run


def test_evaluation_is_scheduled_logged_and_reported():
    over = ["experiment=reduce/xor", *EXACT[:-1], "evaluation.interval=50", "evaluation.instances=20",
            "evaluation.lengths=[1,4,16]", "envs.reduce.curriculum.max_length=4",
            "envs.reduce.curriculum.promote_after=1", "envs.reduce.curriculum.mode=double", "iterations=100"]
    engine = Engine(compose(over))
    while engine.iteration < 100:
        engine.step()
    m = engine.metrics()
    assert engine.evaluator.evaluated_at == 100
    assert (m["eval_success_L1"], m["eval_success_L4"], m["eval_success_L16"]) == (1.0, 1.0, 1.0)
    assert m["max_length_reliable"] == 16 and m["max_length_reached"] == 4 and m["max_length_reliable_prefix"] == 16
    s = engine.task_summary()
    assert s["eval_success_by_length"] == {1: 1.0, 4: 1.0, 16: 1.0} and s["extrapolation"] == {16: 1.0}


def test_max_length_reliable_is_the_largest_reliable_length_and_the_prefix_needs_all_shorter_ones():
    from inet.config import EvaluationConfig
    from inet.evaluation import Evaluator

    ev = Evaluator(EvaluationConfig(interval=1, lengths=[1, 2, 4, 8, 16]))
    ev.results = {1: 1.0, 2: 0.96, 4: 0.5, 8: 0.95, 16: 0.94}
    assert ev.max_length_reliable == 8 and ev.max_length_reliable_prefix == 2


def test_rounded_nodes_snap_values_and_pass_gradients_straight_through():
    levels = torch.tensor([0.0, 1.0])
    assert snap(torch.tensor([[-0.3], [0.49], [0.51], [7.0]]), levels).reshape(-1).tolist() == [0, 0, 1, 1]
    over = ["experiment=reduce/xor", *fixed(1), "+stabilisers=on", "nodes.n2.round_from=0", "cu.script=inet.tasks.reduce.teacher",
            "evaluation.interval=0"]
    engine = Engine(compose(over))
    before = {k: v.clone() for k, v in engine.pus["pu1"].state_dict().items()}
    while engine.kpis.tasks < 5:
        engine.step()
        assert set(engine.nodes.values["n2"].reshape(-1).tolist()) <= {0.0, 1.0}
    # pu1 writes the rounded n2 and has no loss of its own: it learns only through n2's straight-through gradient
    assert any(not torch.equal(before[k], v) for k, v in engine.pus["pu1"].state_dict().items())


def test_epsilon_scaled_by_expected_task_length():
    over = ["experiment=reduce/xor", *fixed(8), "lanes=2000", "cu.exploration_initial_eps=0.9",
            "cu.exploration_final_eps=0.9", "evaluation.interval=0"]
    plain = Engine(compose(over))
    scaled = Engine(compose([*over, "cu.epsilon_by_task_length=true"]))
    explored = [e._choose()[1].float().mean().item() for e in (plain, scaled)]
    assert explored[0] == pytest.approx(0.9, abs=0.03)
    assert explored[1] == pytest.approx(0.9 / 18, abs=0.015)  # 2 L + 2 = 18 iterations per instance


def test_curriculum_mix_rehearses_shorter_lengths_which_do_not_move_the_curriculum():
    over = ["experiment=reduce/xor", *EXACT, "lanes=400", "envs.reduce.curriculum.start_length=6",
            "envs.reduce.curriculum.mix=0.5", "envs.reduce.curriculum.promote_after=1000"]
    engine = Engine(compose(over))
    lengths = engine.first_env.length
    assert lengths.min() >= 1 and lengths.max() == 6
    assert 0.4 < (lengths == 6).float().mean() < 0.7  # half keep the length, half draw one of 1..6
    assert set(lengths.tolist()) == set(range(1, 7))
    at_six = 0
    while engine.kpis.tasks < 400:
        before = engine.first_env.length.clone()
        step = engine.step()
        at_six += sum(int((before[e.lanes] == 6).sum()) for e in step.ended)
    c = engine.first_env.curriculum
    assert c.successes == at_six < engine.kpis.tasks  # every instance solved, only those at length 6 counted


def test_the_configured_signals_are_what_the_cu_sees_in_that_order():
    script = ["experiment=reduce/xor", "cu.script=inet.tasks.reduce.teacher"]  # the same actions in both
    every = Engine(compose([*script, "envs.reduce.signals=null"]))
    chosen = Engine(compose([*script, "envs.reduce.signals=[end_of_sequence,age]"]))
    for engine in (every, chosen):
        for _ in range(5):
            engine.step()
    env = every.first_env
    assert env.signal_names == ("new_instance", "age", "new_item", "end_of_sequence")
    assert chosen.first_env.signal_names == ("end_of_sequence", "age")
    assert every.obs.shape == (1, 4) and chosen.obs.shape == (1, 2)
    assert torch.equal(chosen.first_env.signals(), env.signals()[:, [3, 1]])
