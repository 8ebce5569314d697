"""The learner protocol: what the engine, the evaluation, the trace and the checkpoint ask of a CU.

A learner is constructed as `cls(cfg: CUConfig, obs_dim, n_actions, total_iterations,
device, generator)` and provides:
- `act(obs, iteration, greedy, explore_scale)` -> (actions [B], ActInfo): greedy, or
  exploring on the learner's own schedule (`explore_scale` [B] divides the exploration
  rate per lane, paper 5.2.2.3);
- `observe(transition, before, after)` -> problems: store one iteration's transitions
  and train on the learner's own schedule (`before`/`after` are the lane-iteration
  counts around it); returns a description of each update skipped for a NaN or inf;
- `input_grad(transition, iteration)` -> d(loss)/d(obs) [B, obs_dim] of the current
  transitions, or None when the learner has none yet (the CU's gradient into nodes);
- `metrics()` -> {name: float} (diagnostics logged each interval);
- `state_dict()` / `load_state_dict(state)`: everything needed to resume exactly, as
  tensors and plain containers (checkpoints load with weights_only).
Two more methods are needed only by what-ifs (`cu.what_if`, inet/cu/what_if.py), and checked only then:
- `values(obs)` -> [n, n_actions] the action values the learner would act on, changing nothing;
- `store(transition)`: put transitions into replay as one-step ones (discount gamma where not terminal),
  without training or moving the learner's schedule on.
With several Environments the engine passes `heads=E` to a learner whose constructor
takes a `heads` keyword (one value head per Environment, trained from
`Transition.env_reward`/`env_terminal`); a learner without it learns from the
summed `reward` and the `terminal` of any Environment.
DQN (`inet/cu/dqn.py`) and QR-DQN (`inet/cu/qr_dqn.py`) implement it; `cu._target_`
names any class that does.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Tuple, runtime_checkable

import torch

from ..config import ConfigError, CUConfig
from ..pus import import_object

METHODS = ("act", "observe", "input_grad", "metrics", "state_dict", "load_state_dict")
WHAT_IF_METHODS = ("values", "store")  # what cu.what_if needs besides METHODS


@dataclass
class ActInfo:
    """What a learner reports about the actions it chose (read by the trace, the teacher and the viewer)."""

    values: Optional[torch.Tensor]  # [B, n_actions] the action values the choice was based on (Q-values)
    explored: torch.Tensor  # [B] bool: the action was an exploration draw
    greedy: torch.Tensor  # [B] long: the greedy action
    epsilon: float = 0.0  # the exploration rate used (before any per-lane scaling)
    quantiles: Optional[torch.Tensor] = None  # [B, n_actions, N] return quantiles (distributional learners)


@dataclass
class Transition:
    """One iteration of every lane: the TD target is reward + discount * V(next_obs), cut where terminal."""

    obs: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B] long
    reward: torch.Tensor  # [B]
    next_obs: torch.Tensor  # [B, obs_dim]
    terminal: torch.Tensor  # [B] float: 1 where a task instance ended
    # With several Environments (E > 1), each one's part of `reward` and its own task-instance ends, so a
    # learner can keep a value per Environment; None with one Environment (then `reward`/`terminal` are its own).
    env_reward: Optional[torch.Tensor] = None  # [B, E], in the order of `envs`
    env_terminal: Optional[torch.Tensor] = None  # [B, E] float


@runtime_checkable
class Learner(Protocol):
    """The CU as the engine sees it (see the module docstring)."""

    def act(self, obs: torch.Tensor, iteration: int, greedy: bool = False,
            explore_scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ActInfo]: ...

    def observe(self, transition: Transition, before: int, after: int) -> List[str]: ...

    def input_grad(self, transition: Transition, iteration: int) -> Optional[torch.Tensor]: ...

    def metrics(self) -> Dict[str, float]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def learner_class(cfg: CUConfig) -> type:
    """The class `cu._target_` names, checked to provide every protocol method (ConfigError names what lacks)."""
    cls = import_object(cfg._target_, "cu._target_")
    name = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"
    if not isinstance(cls, type):
        raise ConfigError(f"cu._target_: {cfg._target_} is not a class; name a learner class (inet/cu/protocol.py)")
    for method in METHODS:
        if not callable(getattr(cls, method, None)):
            raise ConfigError(f"cu._target_: {name} has no method '{method}', which the learner protocol needs "
                              f"(inet/cu/protocol.py: {', '.join(METHODS)})")
    return cls


def takes_heads(cls: type) -> bool:
    """Whether the learner class keeps a value per Environment (its constructor takes `heads`)."""
    try:
        return "heads" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def build_learner(cfg: CUConfig, obs_dim: int, n_actions: int, total_iterations: int, device: torch.device,
                  generator: torch.Generator, heads: int = 1) -> Learner:
    """Construct the configured learner; `heads` (the number of Environments) goes to one that takes it."""
    cls = learner_class(cfg)
    extra = {"heads": heads} if heads > 1 and takes_heads(cls) else {}
    return cls(cfg, obs_dim, n_actions, total_iterations, device, generator, **extra)
