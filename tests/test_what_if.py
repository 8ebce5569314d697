"""What-if tests (paper 6.4 (c); inet/cu/what_if.py): the simulation, what is kept, what is left alone, the engine."""
from __future__ import annotations

import copy

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError, CUConfig
from inet.cu import Transition
from inet.cu.dqn import DQN
from inet.cu.qr_dqn import QRDQN
from inet.engine import Engine
from inet.run.trace import WriteLog
from inet.tasks.multitask import Multitask

# every part of the CU input, so the simulated input is checked in all of them
MULTITASK = ["experiment=multitask/cu_inputs", "lanes=4", "cu.learning_starts=0", "seed=3"]
REDUCE = ["experiment=reduce/xor", "lanes=4", "cu.learning_starts=0", "seed=3", "envs.reduce.signals=null",
          "cu.inputs=[history,signals,nodes,meta]", "nodes.n2.cu_visible=true",
          "envs.reduce.curriculum.start_length=6", "envs.reduce.curriculum.max_length=6"]


def engine(overrides: list, *extra: str) -> Engine:
    return Engine(compose([*overrides, *extra]))


def force(e: Engine, actions: torch.Tensor, greedy: torch.Tensor) -> None:
    """Make `e` take `actions` as exploration draws next (argmax where they are the greedy action)."""
    e._choose = lambda: (actions, torch.ones_like(actions, dtype=torch.bool), actions == greedy)


def state_equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(state_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("overrides, whatif", [(MULTITASK, ["pu0"] * 4), (REDUCE, ["pu1", "pu2", "pu1", "pu2"])])
def test_the_simulated_next_input_is_the_one_taking_the_pu_gives(overrides, whatif):
    a = engine(overrides, "cu.what_if=1")
    while a.iteration < 80:  # nodes, ages, histories and items fetched differ between lanes
        a.step()
    state = a.state_dict()
    actions = torch.tensor([a.action_index[n] for n in whatif])
    greedy = a.cu.act(a.obs, a.iteration, greedy=True)[0]
    start = a.what_if.start(a.world, a.first_env)
    lanes = (~start.ended).nonzero().flatten().tolist()
    simulated, finite = a.what_if.simulate(start, a.rollout, actions, lanes, greedy)
    assert lanes and finite == lanes

    b = engine(overrides)  # the same state, what-ifs off: take the PUs for real
    b.load_state_dict(state)
    force(b, actions, greedy)
    step = b.step()
    assert not step.terminal[lanes].any()
    assert torch.equal(simulated[lanes], b.obs[lanes])
    assert not torch.equal(simulated[lanes], a.obs[lanes])  # it moved on from the input the CU acted on


class Values:
    """A learner's value function for the test: V(s) = 10 where the last action was `good`, -10 where it was
    `bad`, 0 otherwise (read from the history part of the CU input)."""

    def __init__(self, e: Engine, good: str, bad: str):
        self.n, self.good, self.bad = e.n_actions, e.action_index[good], e.action_index[bad]
        self.stored = []

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        last = obs[:, :self.n].argmax(1)  # history comes first: the newest action's one-hot
        v = 10.0 * (last == self.good).float() - 10.0 * (last == self.bad).float()
        return v.unsqueeze(1).expand(-1, self.n)

    def store(self, t: Transition) -> None:
        self.stored.append(t)


def test_a_what_if_is_stored_iff_the_cu_values_where_it_leads_more():
    e = engine(REDUCE, "cu.what_if=2", "cu.n_step=1")
    while e.iteration < 40:
        e.step()
    judge = Values(e, good="pu1", bad="pu2")
    e.cu.values, e.cu.store = judge.values, judge.store
    size = e.cu.replay.size
    actions = torch.full((4,), e.action_index["next"])
    greedy = e.cu.act(e.obs, e.iteration, greedy=True)[0]
    force(e, actions, greedy)
    obs, start = e.obs, e.what_if.start(e.world, e.first_env)  # what the engine's step takes too
    e.start_interval()
    e.step()
    lanes = (~start.ended).nonzero().flatten().tolist()
    assert len(lanes) >= 2
    (t,) = judge.stored
    # pu1 leads to V = 10: r_w + 0.98 * 10 beats `next`'s reward + 0.98 * 0; pu2 (V = -10) never does
    assert t.actions.tolist() == [e.action_index["pu1"]] * len(lanes)
    rows = [next(lane for lane in lanes if torch.equal(obs[lane], o)) for o in t.obs]  # rows: by draw, then lane
    assert sorted(rows) == lanes and torch.equal(t.reward, start.reward[rows])
    assert torch.equal(t.terminal, torch.zeros(len(lanes)))
    assert torch.equal(t.next_obs[:, :e.n_actions].argmax(1), t.actions)
    assert e.cu.replay.size == size + 4  # the real transitions only: the what-ifs went to `store`
    m = e.metrics()
    assert m["whatif_tested"] == pytest.approx(2 * len(lanes) / 4) and m["whatif_kept_share"] == 0.5


def test_the_dqn_familys_store_adds_one_step_transitions_and_values_are_the_acting_values():
    for cls in (DQN, QRDQN):
        unit = cls(CUConfig(gamma=0.5), obs_dim=3, n_actions=4, total_iterations=100, device=torch.device("cpu"),
                   generator=torch.Generator().manual_seed(0))
        obs = torch.randn(5, 3)
        assert torch.equal(unit.values(obs), unit.act(obs, 0, greedy=True)[1].values)
        unit.store(Transition(obs, torch.arange(5) % 4, torch.ones(5), obs + 1, torch.tensor([0.0, 1, 0, 0, 0])))
        r = unit.replay
        assert r.size == 5 and unit.steps == 0 and unit.updates == 0
        assert r.discount[:5].tolist() == [0.5, 0.0, 0.5, 0.5, 0.5] and torch.equal(r.next_obs[:5], obs + 1)


def test_what_ifs_leave_the_nodes_tape_environments_and_history_as_they_are():
    e = engine(MULTITASK, "cu.what_if=1")
    while e.iteration < 120:
        e.step()
    judge = Values(e, good="pu0", bad="pu1")  # every what-if (pu0) is useful: stored
    e.cu.store = judge.store
    e.cu.values = judge.values
    before = {"nodes": e.nodes.state_dict(), "tape": e.tape.state_dict(), "envs": e.first_env.state_dict(),
              "history": e.world.history.clone(), "meta": e.world.meta.clone(), "obs": e.obs.clone(),
              "pus": {k: v.clone() for k, v in e.pus.state_dict().items()}}
    start = e.what_if.start(e.world, e.first_env)
    actions = torch.full((4,), e.action_index["pu1"])
    t = Transition(e.obs, actions, torch.zeros(4), e.obs, torch.ones(4))
    e.what_if.test(start, e.rollout, e.cu, t, actions, lambda a, r: r)
    assert len(judge.stored) == 1 and len(judge.stored[0].actions) == int((~start.ended).sum()) > 0
    after = {"nodes": e.nodes.state_dict(), "tape": e.tape.state_dict(), "envs": e.first_env.state_dict(),
             "history": e.world.history, "meta": e.world.meta, "obs": e.obs, "pus": e.pus.state_dict()}
    assert state_equal(before, after)


def test_an_engine_with_what_ifs_stores_them_logs_them_and_resumes_exactly():
    overrides = [*MULTITASK[:2], "cu.learning_starts=50", "cu.what_if=1"]
    e = engine(overrides)
    while e.iteration < 400:
        e.step()
    m = e.metrics()
    assert 0 < m["whatif_tested"] <= 1 and 0 <= m["whatif_kept_share"] <= 1
    fresh, state = engine(overrides), copy.deepcopy(e.state_dict())
    for _ in range(60):
        e.step()
    fresh.load_state_dict(state)  # after: the run's global generator is restored too
    for _ in range(60):
        fresh.step()
    assert state_equal(e.cu.state_dict(), fresh.cu.state_dict())
    assert str(e.metrics()) == str(fresh.metrics())  # as text: nan != nan
    assert state_equal(e.what_if.state_dict(), fresh.what_if.state_dict())
    other = engine(overrides)  # the what-ifs' own generator is part of the state: another draw, another run
    other.load_state_dict(state)
    other.what_if.gen.manual_seed(1)
    for _ in range(60):
        other.step()
    assert not state_equal(e.cu.state_dict(), other.cu.state_dict())


def test_what_ifs_are_off_by_default():
    assert CUConfig().what_if == 0
    e = engine(MULTITASK)
    assert e.cfg.cu.what_if == 0 and e.what_if is None
    m = e.metrics()
    assert m["whatif_tested"] != m["whatif_tested"] and m["whatif_kept_share"] != m["whatif_kept_share"]  # nan


class Signalled(Multitask):
    """A task with a signal of its own and no `quiet_signals`: it cannot say what a PU run brings."""

    task_signals = ("flag",)

    def extra_signals(self) -> torch.Tensor:
        return torch.zeros(self.lanes, 1)


@pytest.mark.parametrize("overrides, match", [
    (["cu.what_if=-1"], r"cu\.what_if: must be >= 0"),
    (["cu.what_if=1", "cu.what_if_interval=0"], r"cu\.what_if_interval: must be >= 1"),
    (["cu.what_if=1", "cu.popart=true"], r"cu\.what_if: .*PopArt"),
    (["cu.what_if=1", "experiment=multi/multitask_reduce"], r"cu\.what_if: .*one Environment"),
    (["cu.what_if=1", "experiment=emulate/attention"], r"cu\.what_if: .*vector nodes"),
    (["cu.what_if=1", "cu.script=inet.tasks.multitask.teacher"], r"cu\.what_if: a scripted CU"),
    (["cu.what_if=1", "pus.pu0.outputs=[n2]"], r"cu\.what_if: .*every PU"),
    (["cu.what_if=1", "cu.node_actions=true"], r"cu\.what_if: node actions"),
])
def test_bad_settings_are_refused_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        compose(["experiment=multitask/cu_inputs", *overrides])


@pytest.mark.parametrize("extra, match", [(["cu._target_=toy_learner.Bandit"], "no method 'values'"),
                                          (["envs.multitask._target_=test_what_if.Signalled"], "cannot tell")])
def test_a_learner_or_task_that_cannot_serve_what_ifs_is_refused_naming_the_key(extra, match):
    with pytest.raises(ConfigError, match=rf"cu\.what_if: .*{match}"):
        engine(["experiment=multitask/cu_inputs", "cu.what_if=1", *extra])


def test_a_fork_writes_only_itself_while_the_trace_logs_the_real_nodes_writes():
    e = engine(MULTITASK, "cu.what_if=1")
    log = WriteLog(e.nodes, e.envs, lane=0)  # wraps `write` on the real nodes' instance, as a traced iteration does
    real = e.nodes.state_dict()
    fork = e.nodes.fork()
    fork.write("n3", [0, 1, 2, 3], torch.ones(4, 1))
    assert state_equal(e.nodes.state_dict(), real) and log.entries == []
    assert torch.equal(fork.values["n3"], torch.ones(4, 1))
    log.close()
