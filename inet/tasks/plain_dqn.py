"""The same DQN trained plainly, without an IN: the reference of emulate/dqn (paper 3.5).

Each step, in every lane: act epsilon-greedily on the Q-network's values, step
the game, store the transition in the lane's replay memory; then replay one
transition per lane and take one Adam step on the mean Huber TD loss, the target
computed with the current network. It uses the game, schedule, memory and loss
of inet/tasks/game.py and inet/tasks/replay_env.py, and draws from two
generators seeded as the Engine seeds its Environments', so with the same initial
network it makes exactly the updates the scripted IN makes (one live step, then
one replay) — the equivalence that tests/test_emulate_cnn_dqn.py checks.
`greedy_return` scores a Q-network on fresh games, without exploration.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..config import RunConfig
from .game import Catch, epsilon, epsilon_greedy, transition_size
from .replay_env import ReplayMemory, split, td_loss, td_target


def env_generator(cfg: RunConfig, env: str) -> torch.Generator:
    """The generator the Engine gives Environment `env` (seed * 1000 + its place after `cu` and `pretrain`)."""
    return torch.Generator(torch.device(cfg.device)).manual_seed(cfg.seed * 1000 + 2 + list(cfg.envs).index(env))


class PlainDQN:
    """A DQN on `lanes` games of catch, configured like the game and replay Environments of `cfg`."""

    def __init__(self, qnet: nn.Module, cfg: RunConfig, game: str = "game", replay: str = "replay"):
        gp, rp = cfg.envs[game].params, cfg.envs[replay].params
        self.qnet, self.lanes, self.device = qnet, cfg.lanes, torch.device(cfg.device)
        self.game_gen, self.replay_gen = env_generator(cfg, game), env_generator(cfg, replay)
        self.game = Catch(cfg.lanes, int(gp.get("rows", 5)), int(gp.get("cols", 5)), self.device)
        self.eps = (float(gp.get("eps_start", 1.0)), float(gp.get("eps_end", 0.05)), int(gp.get("eps_steps", 500)))
        self.gamma = float(rp.get("gamma", 0.9))
        self.memory = ReplayMemory(cfg.lanes, int(rp.get("capacity", 1000)), transition_size(self.game.obs_size),
                                   self.device)
        self.optimizer = torch.optim.Adam(qnet.parameters(), lr=cfg.pus["dqn"].lr or cfg.pu_optim.lr, fused=True)
        self.all = torch.arange(cfg.lanes, device=self.device)
        self.steps = torch.zeros(cfg.lanes, dtype=torch.long, device=self.device)
        self.episode_reward = torch.zeros(cfg.lanes, device=self.device)
        self.returns: List[float] = []
        self.game.reset(self.all, self.game_gen)

    def q(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.qnet(obs)
        return out[0] if isinstance(out, tuple) else out

    def step(self) -> None:
        """One game step and one replayed update in every lane."""
        s = self.game.observe(self.all)
        with torch.no_grad():
            action = epsilon_greedy(self.q(s), epsilon(self.steps, *self.eps), self.game_gen)
        reward, done = self.game.step(self.all, action)
        self.steps += 1
        record = torch.cat([s, action.unsqueeze(1).float(), reward.unsqueeze(1), self.game.observe(self.all),
                            done.unsqueeze(1).float(), self.steps.unsqueeze(1).float()], 1)
        self.memory.add(self.all, record)
        self.episode_reward += reward
        ended = self.all[done]
        if len(ended):
            self.returns.extend(self.episode_reward[ended].tolist())
            self.episode_reward[ended] = 0.0
            self.game.reset(ended, self.game_gen)
        s_r, a_r, r_r, next_r, done_r = split(self.memory.sample(self.all, self.replay_gen), self.game.obs_size)
        with torch.no_grad():
            y = td_target(r_r, done_r, self.q(next_r), self.gamma)
        loss = td_loss(self.q(s_r), a_r, y) / self.lanes
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


def greedy_return(qnet: nn.Module, rows: int, cols: int, episodes: int = 500, seed: int = 12345) -> float:
    """Mean return of the greedy policy of `qnet` over `episodes` fresh games (one lane each, fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    dev = next(qnet.parameters()).device
    game = Catch(episodes, rows, cols, dev)
    lanes = torch.arange(episodes, device=dev)
    game.reset(lanes, gen)
    total = torch.zeros(episodes, device=dev)
    with torch.no_grad():
        for _ in range(rows - 1):
            out = qnet(game.observe(lanes))
            reward, _ = game.step(lanes, (out[0] if isinstance(out, tuple) else out).argmax(1))
            total += reward
    return float(total.mean())
