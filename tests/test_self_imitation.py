"""Self-imitation for the CU (paper 6.4 (b), Oh et al. 2018; inet/cu/self_imitation.py)."""
from __future__ import annotations

import pytest
import torch

from inet.compose import compose
from inet.config import ConfigError
from inet.cu.self_imitation import SelfImitation
from inet.engine import Engine


def test_finished_task_instances_are_stored_with_their_discounted_returns_per_lane():
    sil = SelfImitation(100, 1, gamma=0.5, device=torch.device("cpu"))
    rewards = [[0.0, 2.0], [0.0, 0.0], [1.0, 4.0]]
    ends = [[0, 1], [0, 0], [1, 1]]  # lane 1 ends after iterations 0 and 2, lane 0 after iteration 2
    for k, (r, e) in enumerate(zip(rewards, ends)):
        sil.observe(torch.tensor([[10.0 * k], [10.0 * k + 1]]), torch.tensor([k, k]), torch.tensor(r), torch.tensor(e, dtype=torch.float))
    n = sil.buffer.size
    stored = sorted(zip(sil.buffer.obs[:n, 0].tolist(), sil.buffer.actions[:n].tolist(), sil.buffer.rewards[:n].tolist()))
    # lane 1: [2] then [0, 4] -> 2; 0 + 0.5 * 4 = 2, 4. lane 0: [0, 0, 1] -> 0.25, 0.5, 1
    assert stored == [(0.0, 0, 0.25), (1.0, 0, 2.0), (10.0, 1, 0.5), (11.0, 1, 2.0), (20.0, 2, 1.0), (21.0, 2, 4.0)]
    assert sil.steps == []  # every lane's instance ended: nothing older is kept


def test_the_loss_pulls_values_up_to_returns_and_never_down():
    sil = SelfImitation(10, 1, gamma=0.9, device=torch.device("cpu"))
    sil.buffer.add(torch.zeros(10, 1), torch.tensor([0, 1] * 5), torch.tensor([1.0, -1.0] * 5), torch.zeros(10, 1),
                   torch.zeros(10))
    q = torch.zeros(1, 2, requires_grad=True)  # Q = 0 for both actions, whatever the obs
    loss = sil.loss(lambda obs: q.expand(obs.shape[0], 2), 8, torch.Generator().manual_seed(0))
    loss.backward()
    assert q.grad[0, 0] < 0 and q.grad[0, 1] == 0  # action 0 paid 1 > 0: pulled up; action 1 paid -1: left alone
    assert 0.0 < sil.metrics()["sil_share"] < 1.0
    assert SelfImitation(10, 1, 0.9, torch.device("cpu")).loss(lambda o: o, 4, torch.Generator()) is None


def test_a_cu_with_self_imitation_trains_on_it_and_resumes_it():
    overrides = ["experiment=multitask/cu_inputs", "lanes=2", "cu.self_imitation=0.5", "cu.learning_starts=50"]
    engine = Engine(compose(overrides))
    while engine.iteration < 600:
        engine.step()
    m = engine.metrics()
    assert m["sil_loss"] == m["sil_loss"] and 0.0 <= m["sil_share"] <= 1.0 and engine.cu.sil.buffer.size > 0
    fresh = Engine(compose(overrides))
    fresh.load_state_dict(engine.state_dict())
    assert fresh.cu.sil.buffer.size == engine.cu.sil.buffer.size and fresh.cu.sil.offset == engine.cu.sil.offset
    plain = Engine(compose(overrides[:2]))
    assert plain.cu.sil is None and plain.metrics()["sil_loss"] != plain.metrics()["sil_loss"]  # nan: off


@pytest.mark.parametrize("extra", [["cu.popart=true"], ["experiment=multi/multitask_reduce"]])
def test_self_imitation_with_value_heads_or_popart_is_refused_naming_the_key(extra):
    with pytest.raises(ConfigError, match="cu.self_imitation"):
        Engine(compose(["experiment=multitask/cu_inputs", *extra, "cu.self_imitation=0.5"]))
