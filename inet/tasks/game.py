"""A small game in torch and the Environment that lets a PU play it: the DQN emulation of paper 3.5 (emulate/dqn).

`Catch` is vectorised over lanes: a ball falls one row per step from a random
column of the top row; the paddle in the bottom row moves left, stays or moves
right; when the ball reaches the bottom row the episode ends with +1 if the
paddle is under it, else -1. The observation is the grid with the ball and the
paddle set to 1, flattened.

`CatchEnv` (Fig. 7's main Environment) writes the observation into its input
node n0 at each task instance (one game decision). A PU that is itself a DQN
writes Q-values, which a mover submits into the output node n1; the Environment
acts epsilon-greedily on them (its own schedule and generator), steps the game,
and publishes the transition (s, a, r, s', done, count) into the transition node
(its second input), where the replay Environment (inet/tasks/replay_env.py)
collects it: the two Environments share experience only through a node.

The CU's reward for a live step is `reward.success` when the submitted Q-values
were computed from the current observation through `params.route` (mover in, the
DQN PU, mover out), else `reward.wrong_answer`; the game's own reward trains only
the PU (through replay). KPIs: `episode_return` (mean game return over the last
kpi_window episodes, exploration included) and `route_rate` (share of live
submits made through the route).
"""
from __future__ import annotations

from collections import deque
from typing import Dict, Sequence

import torch

from ..config import ConfigError
from .env import TASK_SUCCESS_PANEL, Environment, Step
from .kpi_registry import KPI, MAIN_TABLE, Panel

ROUTE = ("mv_live_in", "dqn", "mv_live_out")
GAME_PANEL = Panel("kpis", "game return per episode")


class Catch:
    """B independent games of catch on a rows x cols grid; 3 actions (left, stay, right)."""

    n_actions = 3

    def __init__(self, lanes: int, rows: int, cols: int, device: torch.device):
        self.rows, self.cols = rows, cols
        self.ball_row = torch.zeros(lanes, dtype=torch.long, device=device)
        self.ball_col = torch.zeros(lanes, dtype=torch.long, device=device)
        self.paddle = torch.full((lanes,), cols // 2, dtype=torch.long, device=device)

    @property
    def obs_size(self) -> int:
        return self.rows * self.cols

    def reset(self, lanes: torch.Tensor, generator: torch.Generator) -> None:
        """New episodes in `lanes`: the ball in a random column of the top row, the paddle centred."""
        u = torch.rand(len(lanes), generator=generator, device=generator.device).to(self.ball_col.device)
        self.ball_row[lanes] = 0
        self.ball_col[lanes] = (u * self.cols).long()
        self.paddle[lanes] = self.cols // 2

    def observe(self, lanes: torch.Tensor) -> torch.Tensor:
        """[n, rows * cols]: the grid with the ball and the paddle set to 1."""
        n = len(lanes)
        grid = torch.zeros(n, self.rows, self.cols, device=self.ball_col.device)
        ar = torch.arange(n, device=grid.device)
        grid[ar, self.ball_row[lanes], self.ball_col[lanes]] = 1.0
        grid[ar, self.rows - 1, self.paddle[lanes]] = 1.0
        return grid.flatten(1)

    def step(self, lanes: torch.Tensor, action: torch.Tensor) -> tuple:
        """Move the paddle by action - 1 and the ball one row down: (reward [n], done [n] bool)."""
        self.paddle[lanes] = (self.paddle[lanes] + action - 1).clamp(0, self.cols - 1)
        self.ball_row[lanes] += 1
        done = self.ball_row[lanes] == self.rows - 1
        caught = self.ball_col[lanes] == self.paddle[lanes]
        reward = torch.where(done, torch.where(caught, 1.0, -1.0), 0.0)
        return reward, done


def epsilon(steps: torch.Tensor, start: float, end: float, decay_steps: int) -> torch.Tensor:
    """Linear exploration schedule per lane, from `start` to `end` over `decay_steps` game steps."""
    frac = (steps.float() / max(decay_steps, 1)).clamp(max=1.0)
    return start + (end - start) * frac


def epsilon_greedy(q: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """argmax of q [n, A], or with probability eps a uniform action (two draws per lane, always)."""
    n, a = q.shape
    u = torch.rand(n, 2, generator=generator, device=generator.device).to(q.device)
    return torch.where(u[:, 0] < eps, (u[:, 1] * a).long().clamp(max=a - 1), q.argmax(1))


def route_progress(progress: torch.Tensor, actions: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
    """Per lane, how many actions of the 3-action `route` were just taken in a row (3: the route is complete);
    any other action starts it over (at 1 if it is the route's first)."""
    follows = actions == route[progress.clamp(max=2)]
    return torch.where(follows, progress + 1, (actions == route[0]).long())


def transition_size(obs_size: int) -> int:
    """Entries of a transition record: s, a, r, s', done, count."""
    return 2 * obs_size + 4


class CatchEnv(Environment):
    """Live play: the observation in inputs[0], transitions published into inputs[1], Q-values read from outputs[0]."""

    kpis = (
        KPI("episode_return", "mean game return of the last params.return_window episodes (exploration included)",
            better="higher", plot=GAME_PANEL, table=MAIN_TABLE),
        KPI("route_rate", "share of the last kpi_window live steps whose Q-values came through the route "
            "mover in, DQN PU, mover out from the current observation", better="higher", rate=True,
            plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
        KPI("game_steps", "game steps per lane so far", integer=True),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != 2 or len(self.cfg.outputs) != 1:
            raise ConfigError(f"{key}: catch needs inputs: [obs_node, transition_node] and outputs: [q_node]")
        p = self.params
        self.game = Catch(self.lanes, int(p.get("rows", 5)), int(p.get("cols", 5)), self.device)
        self.obs_node, self.transition_node = self.cfg.inputs
        self.q_node = self.cfg.outputs[0]
        for node, shape in ((self.obs_node, (self.game.obs_size,)), (self.q_node, (Catch.n_actions,)),
                            (self.transition_node, (transition_size(self.game.obs_size),))):
            if self.nodes.shapes[node] != shape:
                raise ConfigError(f"{key}: node '{node}' must have shape {list(shape)} for a {self.game.rows}x"
                                  f"{self.game.cols} game, has {list(self.nodes.shapes[node])}")
        self.eps = (float(p.get("eps_start", 1.0)), float(p.get("eps_end", 0.05)), int(p.get("eps_steps", 500)))
        self.route: Sequence[str] = list(p.get("route", ROUTE))
        self.cycle: Sequence[str] = list(p.get("cycle", []))
        b, dev = self.lanes, self.device
        self.steps = torch.zeros(b, dtype=torch.long, device=dev)  # game steps per lane
        self.episode_reward = torch.zeros(b, device=dev)
        self.returns: deque = deque(maxlen=int(p.get("return_window", 200)))  # the last episodes' returns
        self.progress = torch.zeros(b, dtype=torch.long, device=dev)  # route steps done on the current obs
        self.clock = 0  # iterations seen (the scripted CU's cycle position)
        self.game.reset(self.all_lanes, self.gen)

    def bind(self, action_index: Dict[str, int]) -> None:
        super().bind(action_index)
        for key, names in (("route", self.route), ("cycle", self.cycle)):
            for i, a in enumerate(names):
                if a not in action_index:
                    raise ConfigError(f"envs.{self.name}.params.{key}[{i}]: '{a}' is not an action; "
                                      f"choose from {list(action_index)}")
        if len(self.route) != 3:
            raise ConfigError(f"envs.{self.name}.params.route: name 3 actions (mover in, DQN PU, mover out)")
        self.route_ids = torch.tensor([action_index[a] for a in self.route], device=self.device)
        self.cycle_ids = torch.tensor([action_index[a] for a in self.cycle], dtype=torch.long, device=self.device)

    def start(self, lanes: torch.Tensor) -> None:
        self.progress[lanes] = 0
        self.nodes.write(self.obs_node, lanes.tolist(), self.game.observe(lanes))

    def respond(self, step: Step) -> None:
        self.clock += 1
        lanes = step.written.get(self.q_node)
        self.progress = route_progress(self.progress, step.ran, self.route_ids)
        if not lanes:
            return
        idx = torch.tensor(lanes, device=self.device)
        q = self.nodes.values[self.q_node][idx]
        action = epsilon_greedy(q, epsilon(self.steps[idx], *self.eps), self.gen)
        s = self.game.observe(idx)
        reward, done = self.game.step(idx, action)
        s_next = self.game.observe(idx)
        self.steps[idx] += 1
        record = torch.cat([s, action.unsqueeze(1).float(), reward.unsqueeze(1), s_next, done.unsqueeze(1).float(),
                            self.steps[idx].unsqueeze(1).float()], 1)
        self.nodes.write(self.transition_node, lanes, record)
        self.episode_reward[idx] += reward
        ended = idx[done]
        if len(ended):
            self.returns.extend(self.episode_reward[ended].tolist())
            self.episode_reward[ended] = 0.0
            self.game.reset(ended, self.gen)
        routed = self.progress[idx] == 3
        self.finish(idx, routed, torch.where(routed, self.reward.success, self.reward.wrong_answer),
                    {"route_rate": routed})

    def metrics(self) -> Dict[str, float]:
        r = self.returns
        return {"episode_return": sum(r) / len(r) if r else float("nan"),
                "game_steps": float(self.steps.float().mean())}

    def task_state(self) -> dict:
        g = self.game
        return {"ball_row": g.ball_row.clone(), "ball_col": g.ball_col.clone(), "paddle": g.paddle.clone(),
                "steps": self.steps.clone(), "episode_reward": self.episode_reward.clone(),
                "progress": self.progress.clone(), "clock": self.clock, "returns": list(self.returns)}

    def load_task_state(self, state: dict) -> None:
        g = self.game
        g.ball_row, g.ball_col, g.paddle = (state[k].clone() for k in ("ball_row", "ball_col", "paddle"))
        self.steps, self.episode_reward, self.progress = (state[k].clone()
                                                          for k in ("steps", "episode_reward", "progress"))
        self.clock = state["clock"]
        self.returns = deque(state["returns"], maxlen=self.returns.maxlen)


def script(env: CatchEnv) -> torch.Tensor:
    """The scripted CU: the actions of `params.cycle` in turn, the same in every lane (e.g. live play, then replay)."""
    if not len(env.cycle_ids):
        raise ConfigError(f"envs.{env.name}.params.cycle: the scripted CU needs the cycle of actions it repeats")
    return env.cycle_ids[env.clock % len(env.cycle_ids)].expand(env.lanes).clone()
