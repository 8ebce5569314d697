"""The CU's n-step transitions: discounted rewards up to a task-instance end or n steps, then bootstrap."""
import pytest
import torch

from inet.config import CUConfig
from inet.cu.dqn import DQN


def cu(n_step: int, gamma: float = 0.5) -> DQN:
    cfg = CUConfig(n_step=n_step, gamma=gamma, buffer_size=16)
    return DQN(cfg, obs_dim=1, n_actions=2, total_iterations=100, device=torch.device("cpu"),
                       generator=torch.Generator().manual_seed(0))


def remember(unit: DQN, t: int, rewards, terminal) -> None:
    """One iteration for two lanes: obs = t, action = t % 2."""
    unit.remember(torch.full((2, 1), float(t)), torch.full((2,), t % 2), torch.tensor(rewards),
                  torch.full((2, 1), float(t + 1)), torch.tensor(terminal))


def stored(unit: DQN) -> list:
    r = unit.replay
    return [(r.obs[i].item(), r.actions[i].item(), r.rewards[i].item(), r.next_obs[i].item(), r.discount[i].item())
            for i in range(r.size)]


def test_one_step_transitions_are_the_plain_td_ones():
    unit = cu(1)
    remember(unit, 0, [1.0, 2.0], [0.0, 1.0])
    assert stored(unit) == [(0.0, 0, 1.0, 1.0, 0.5), (0.0, 0, 2.0, 1.0, 0.0)]


def test_three_step_returns_are_cut_at_the_first_task_instance_end():
    unit = cu(3)
    remember(unit, 0, [1.0, 1.0], [0.0, 0.0])
    remember(unit, 1, [2.0, 2.0], [0.0, 1.0])  # lane 1's instance ends here
    assert unit.replay.size == 0  # nothing stored before n iterations are held
    remember(unit, 2, [4.0, 4.0], [0.0, 0.0])
    # lane 0: 1 + 0.5*2 + 0.25*4, bootstrapped from obs 3 with 0.5^3; lane 1: 1 + 0.5*2, no bootstrap
    assert stored(unit) == [(0.0, 0, 3.0, 3.0, 0.125), (0.0, 0, 2.0, 3.0, 0.0)]
    remember(unit, 3, [8.0, 8.0], [1.0, 0.0])
    # the next transitions start at obs 1: lane 0 ends at iteration 3, lane 1's new instance runs on
    assert stored(unit)[2:] == [(1.0, 1, 2.0 + 2.0 + 2.0, 4.0, 0.0), (1.0, 1, 2.0, 4.0, 0.0)]


@pytest.mark.parametrize("n_step", [1, 4])
def test_the_pending_transitions_are_part_of_the_state(n_step):
    a, b = cu(n_step), cu(n_step)
    for t in range(3):
        remember(a, t, [1.0, 0.0], [0.0, 0.0])
    b.load_state_dict(a.state_dict())
    for unit in (a, b):
        remember(unit, 3, [1.0, 1.0], [1.0, 0.0])
    assert stored(a) == stored(b) and len(stored(a)) == (8 if n_step == 1 else 2)
