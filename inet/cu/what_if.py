"""What-if tests (paper 6.4 (c)): PUs the CU could have run instead, simulated, and learned from when useful.

After a real iteration, each lane tries `cu.what_if` PUs other than the action it took,
drawn from the *quiet* PUs (those writing none of the Environment's `outputs`, so that
running one ends no task instance). Each is simulated in a sandbox cut off from the
world: a fork of the node values from before the iteration, the PU run under no_grad
with no tape, and no Environment touched. The Environment only says, from its state
before the iteration, what a quiet iteration would bring (`Environment.quiet_step`:
the reward, its timeout, the signals). The CU input that would have followed is built
by the rollout's own `advance` and `observe`, with the meta flags of an exploration
draw (random: yes; argmax: whether it was the greedy action).

A what-if is useful when the CU's own one-step look-ahead prefers it to what happened:
r_w + gamma max_a Q(s'_w, a) > r + gamma (1 - terminal) max_a Q(s', a). When the real
action was a quiet PU too, r_w = r and both are non-terminal, so this is
max Q(s'_w) > max Q(s'). Useful what-ifs go into the learner's replay as one-step
transitions (s, a_w, r_w, s'_w, not terminal), through its `store`; the others leave
no trace. Lanes whose task instance would time out on a quiet iteration are not tested.
Tests run from `cu.learning_starts` on (the CU's values mean nothing before) every
`cu.what_if_interval` lane-iterations. Draws come from a generator of their own, so
turning what-ifs on shifts no other random draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from ..nodes import Nodes
from ..rollout import Rollout, World
from ..tasks.env import Environment, lanes_by_action
from ..tasks.kpi_registry import KPI, Panel
from .protocol import Transition

WHAT_IFS = Panel("learning", "what-ifs")
KPIS = (
    KPI("whatif_tested", "what-ifs simulated per lane-iteration over the log interval (cu.what_if; null: off)",
        summary=None, plot=WHAT_IFS, tag_group="train"),
    KPI("whatif_kept_share", "share of the what-ifs simulated over the log interval that were useful and stored in "
        "the CU's replay", rate=True, summary=None, plot=WHAT_IFS, tag_group="train"),
)


@dataclass
class Start:
    """What every what-if of one iteration starts from: the state before the real actions ran."""

    nodes: Nodes  # a fork of the node values
    history: torch.Tensor  # [B, history] the CU's action history
    meta: torch.Tensor  # [B, 2]
    reward: torch.Tensor  # [B] the Environment's reward for a quiet iteration
    ended: torch.Tensor  # [B] bool: a quiet iteration would end the task instance (timeout)
    signals: torch.Tensor  # [B, n_signals] the Environment's signals after a quiet iteration


class WhatIf:
    """Draws, simulates and judges the what-ifs; counts them per log interval."""

    def __init__(self, count: int, interval: int, gamma: float, start_at: int, quiet: Sequence[Tuple[int, str]],
                 seed: int, device: torch.device):
        """`quiet`: (action index, PU name) of each quiet PU; `start_at`: the first lane-iteration tested."""
        self.count, self.interval, self.gamma, self.start_at = count, interval, gamma, start_at
        self.quiet = torch.tensor([a for a, _ in quiet], dtype=torch.long, device=device)
        self.names = dict(quiet)
        self.gen = torch.Generator(device).manual_seed(seed)
        self.tested = 0  # what-ifs simulated since `start_interval`
        self.kept = 0  # of them, stored

    def due(self, before: int, after: int) -> bool:
        """Whether the iteration from lane-iteration `before` to `after` is tested."""
        return before >= self.start_at and after // self.interval != before // self.interval

    def start(self, world: World, env: Environment) -> Start:
        """Take what the what-ifs need before the real actions run."""
        reward, ended, signals = env.quiet_step()
        return Start(world.nodes.fork(), world.history, world.meta, reward, ended, signals)

    def simulate(self, start: Start, rollout: Rollout, actions: torch.Tensor, lanes: List[int],
                 greedy: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """The CU input [B, obs_dim] that would have followed `actions` [B] (quiet PUs) in `lanes`, and the lanes
        whose PU wrote finite values (rows of other lanes are meaningless)."""
        nodes, failed = start.nodes.fork(), []
        rows = actions[torch.tensor(lanes, device=actions.device)]
        bad: set = set()
        for a, at in lanes_by_action(rows).items():
            ran = [lanes[i] for i in at]
            rollout.run_pu(nodes, self.names[a], ran, {}, nonfinite=failed.append)
            if failed:
                bad.update(ran)
                failed.clear()
        world = World(nodes, {}, start.history, start.meta)
        rollout.advance(world, actions, torch.ones_like(actions, dtype=torch.bool), actions == greedy)
        return rollout.observe(world, start.signals), [lane for lane in lanes if lane not in bad]

    def test(self, start: Start, rollout: Rollout, learner, t: Transition, greedy: torch.Tensor,
             reward_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        """Simulate up to `count` what-ifs per lane of the real transitions `t` (its reward without intrinsic
        reward) and store the useful ones with `learner.store`; `reward_of(actions, env_reward)` is the CU's
        reward for `actions` given the Environment's (training wheels shape it)."""
        b, dev = t.obs.shape[0], t.obs.device
        scores = torch.rand(b, len(self.quiet), generator=self.gen, device=self.gen.device).to(dev)
        allowed = (self.quiet != t.actions.unsqueeze(1)) & ~start.ended.unsqueeze(1)
        order = torch.where(allowed, scores, 2.0).argsort(1)[:, :self.count]  # allowed PUs first, in random order
        picks, ok = self.quiet[order], allowed.gather(1, order)
        obs, acts, rewards, nexts, real = [], [], [], [], []
        for j in range(picks.shape[1]):
            lanes = ok[:, j].nonzero().flatten().tolist()
            if not lanes:  # allowed PUs come first in every row, so no later column has any
                break
            a = picks[:, j]
            next_obs, lanes = self.simulate(start, rollout, a, lanes, greedy)
            idx = torch.tensor(lanes, dtype=torch.long, device=dev)
            obs.append(t.obs[idx])
            acts.append(a[idx])
            rewards.append(reward_of(a, start.reward)[idx])
            nexts.append(next_obs[idx])
            real.append(idx)
        n = sum(len(i) for i in real)
        if not n:
            return
        obs, acts, rewards, nexts, real = (torch.cat(x) for x in (obs, acts, rewards, nexts, real))
        v = learner.values(torch.cat([nexts, t.next_obs])).max(1).values
        ahead = t.reward[real] + self.gamma * (1.0 - t.terminal[real]) * v[n:][real]
        useful = (rewards + self.gamma * v[:n] > ahead) & torch.isfinite(nexts).all(1)
        keep = useful.nonzero().flatten()
        self.tested += n
        self.kept += len(keep)
        if len(keep):
            learner.store(Transition(obs[keep], acts[keep], rewards[keep], nexts[keep],
                                     torch.zeros(len(keep), device=dev)))

    def start_interval(self) -> None:
        self.tested = self.kept = 0

    def metrics(self, iterations: int) -> Dict[str, float]:
        """`iterations`: lane-iterations since `start_interval`."""
        nan = float("nan")
        return {"whatif_tested": self.tested / iterations if iterations else nan,
                "whatif_kept_share": self.kept / self.tested if self.tested else nan}

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "tested": self.tested, "kept": self.kept}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.tested, self.kept = state["tested"], state["kept"]
