"""The default Control Unit: a DQN that picks one action per lane per iteration (the learner protocol).

Vanilla DQN (replay, target network, Huber loss, Adam) with the `double`,
`dueling` and `n_step` options, an epsilon-greedy linear schedule, and
`input_grad`: the TD loss of the current transition differentiated with respect to
the CU's input, which the engine hands to the tape so that PUs writing CU-visible
nodes learn from the CU (DESIGN.md section 3). Subclasses change the network and
the loss (`inet/cu/qr_dqn.py`); the schedule, replay and n-step returns stay here.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..adam import LeanAdam, clip_
from ..config import ConfigError, CUConfig
from ..guards import finite
from ..tasks.kpi_registry import EXPLORATION, KPI, LOSSES
from .popart import PopArt
from .protocol import ActInfo, Transition
from .replay import ReplayBuffer
from .self_imitation import SelfImitation


class QNetwork(nn.Module):
    """An MLP from the CU input vector to one Q-value per action (optionally dueling): [B, n_actions],
    or with `heads` > 1 one Q-value per head and action, [B, heads, n_actions]."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: List[int], dueling: bool, heads: int = 1):
        super().__init__()
        layers: List[nn.Module] = []
        for a, b in zip([obs_dim, *hidden[:-1]], hidden):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.dueling = dueling
        self.heads, self.n_actions = heads, n_actions
        self.head = nn.Linear(hidden[-1], heads * n_actions)
        self.value = nn.Linear(hidden[-1], heads) if dueling else None
        self.hidden_layers = [m for m in self.trunk if isinstance(m, nn.Linear)]  # for a call-free forward

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = obs
        for layer in self.hidden_layers:  # the trunk's ops without a module call per layer (same numerics)
            h = torch.relu(F.linear(h, layer.weight, layer.bias))
        adv = F.linear(h, self.head.weight, self.head.bias)
        if self.heads > 1:
            adv = adv.view(-1, self.heads, self.n_actions)
        if self.value is None:
            return adv
        v = F.linear(h, self.value.weight, self.value.bias)
        return (v if self.heads == 1 else v.unsqueeze(2)) + adv - adv.mean(-1, keepdim=True)

    @torch.no_grad()
    def rescale(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Make each head's outputs scale[h] * output + shift[h] (PopArt's output-preserving update)."""
        rows = scale.repeat_interleave(self.n_actions)
        self.head.weight.mul_(rows.unsqueeze(1))
        self.head.bias.mul_(rows)
        if self.value is None:
            self.head.bias.add_(shift.repeat_interleave(self.n_actions))
        else:  # the advantages' mean is subtracted, so only the value layer takes the shift
            self.value.weight.mul_(scale.unsqueeze(1))
            self.value.bias.mul_(scale).add_(shift)


class DQN:
    """Q-network, target network, optimizer, replay and exploration schedule.

    With `heads` > 1 (one per Environment) the network has a Q-head per Environment and
    Q(s, a) = sum_e Q_e(s, a) (value decomposition): each head learns its Environment's
    reward, its n-step returns and bootstrapping cut only by that Environment's task-instance
    ends, and the replay stores [heads]-vectors of returns and discounts. With one head the
    network, replay and loss are those of a plain DQN. `cu.popart` normalises each head's
    targets (inet/cu/popart.py) and acts on the sum of the normalised values."""

    kpis = (KPI("td_loss", "the CU's last TD loss", summary=None, plot=LOSSES, tag_group="train"),
            KPI("epsilon", "the CU's exploration rate", rate=True, summary=None, plot=EXPLORATION, tag_group="rollout"),
            KPI("cu_updates", "CU gradient steps so far", integer=True, summary=None, tag_group="train"),
            KPI("replay_ratio", "CU updates per stored transition", summary=None, tag_group="train"),
            KPI("bonus_share", "share of the last actions the exploration bonus chose over the greedy one "
                "(cu.exploration counts / uncertainty)", rate=True, summary=None, plot=EXPLORATION,
                tag_group="rollout"),
            KPI("sil_loss", "the last self-imitation loss (cu.self_imitation; null: off)", summary=None, plot=LOSSES,
                tag_group="train"),
            KPI("sil_share", "share of the last self-imitation batch whose return exceeded Q (the part that teaches)",
                rate=True, summary=None, tag_group="train"))
    distributional = False  # whether `evaluate` returns return quantiles (cu.exploration=uncertainty needs them)

    def __init__(self, cfg: CUConfig, obs_dim: int, n_actions: int, total_iterations: int,
                 device: torch.device, generator: torch.Generator, heads: int = 1):
        self.cfg = cfg
        self.heads = heads
        self.n_actions = n_actions
        self.total_iterations = total_iterations
        self.gen = generator
        self.q = self.network(obs_dim, n_actions).to(device)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.params = list(self.q.parameters())
        self.optimizer = LeanAdam(self.params, lr=cfg.learning_rate)
        self.replay = ReplayBuffer(cfg.buffer_size, obs_dim, device, () if heads == 1 else (heads,))
        self.popart = PopArt(heads, cfg.popart_beta, device) if cfg.popart else None
        self.pending: Optional[dict] = None  # the last n_step iterations' transitions and partial returns
        self.steps = 0  # iterations remembered
        self.iteration = 0  # lane-iterations observed (for the epsilon in `metrics`)
        self.updates = 0
        self.last_loss = float("nan")
        if cfg.exploration == "uncertainty" and not self.distributional:
            raise ConfigError(f"cu.exploration: 'uncertainty' needs return quantiles, which {type(self).__name__} "
                              "does not learn; use cu=qr_dqn or cu.exploration=counts")
        self.counts = torch.zeros(n_actions, device=device)  # exploration=counts: times each action was taken
        self.sil: Optional[SelfImitation] = None
        if cfg.self_imitation > 0:
            if heads > 1 or cfg.popart:
                raise ConfigError("cu.self_imitation: self-imitation learns one value from summed returns; it does not "
                                  "combine with several Environments' heads or PopArt (set it to 0)")
            self.sil = SelfImitation(cfg.buffer_size, obs_dim, cfg.gamma, device)
        self.bonus_share = 0.0 if cfg.exploration != "epsilon" else float("nan")
        self._act_graph: Optional[tuple] = None  # (obs, its leaf, the online output): `act`'s for `input_grad`
        self._keeps_act_graph = cfg.grad_to_nodes and "nodes" in cfg.inputs  # whether the engine asks input_grad

    def epsilon(self, iteration: int) -> float:
        """Linear decay over `exploration_fraction` of the run (SB3's schedule); with an exploration bonus
        (counts, uncertainty) the final epsilon throughout."""
        c = self.cfg
        if c.exploration != "epsilon":
            return c.exploration_final_eps
        span = c.exploration_fraction * self.total_iterations
        progress = 1.0 if span <= 0 else min(1.0, iteration / span)
        return c.exploration_initial_eps + progress * (c.exploration_final_eps - c.exploration_initial_eps)

    def network(self, obs_dim: int, n_actions: int) -> nn.Module:
        """The online network; the target network is a copy of it."""
        return QNetwork(obs_dim, n_actions, self.cfg.hidden, self.cfg.dueling, self.heads)

    def evaluate(self, obs: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The online network's action values [B, n_actions] at `obs` (summed over heads; with PopArt the
        normalised ones), and return quantiles if it has them."""
        return self._values(self.q(obs))

    def _values(self, online: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """`evaluate` of the online network's output."""
        return self._total(online), None

    @torch.no_grad()
    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """The action values [n, n_actions] acting would use at `obs` (the learner protocol's, for what-ifs)."""
        return self.evaluate(obs)[0]

    def _total(self, q: torch.Tensor) -> torch.Tensor:
        """Per-head values [B, heads, n_actions] -> their sum [B, n_actions] (one head: as they are)."""
        return q if self.heads == 1 else q.sum(1)

    def _pick(self, q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Each head's value of `actions` [B]: [B] with one head, [B, heads] with several."""
        if self.heads == 1:
            return q.gather(1, actions.unsqueeze(1)).squeeze(1)
        return q.gather(2, actions.view(-1, 1, 1).expand(-1, self.heads, 1)).squeeze(2)

    def _streams(self, t: Transition) -> Tuple[torch.Tensor, torch.Tensor]:
        """The rewards and terminals the heads learn from: [B] with one head, each Environment's [B, heads]."""
        if self.heads == 1:
            return t.reward, t.terminal
        return t.env_reward, t.env_terminal

    @torch.no_grad()
    def act(self, obs: torch.Tensor, iteration: int, greedy: bool = False,
            explore_scale: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ActInfo]:
        """Epsilon-greedy actions [B] (the greedy ones with `greedy`); epsilon is divided by `explore_scale`.

        From `learning_starts` on, with `grad_to_nodes` and nodes in the CU's input, the forward keeps its
        graph from `obs` for the `input_grad` of the same iteration (the Q-network does not change in
        between), which so needs no forward of its own: the same values and gradients, one forward fewer
        per iteration."""
        if not greedy and self._keeps_act_graph and iteration >= self.cfg.learning_starts:
            x = obs.detach().requires_grad_()
            with torch.enable_grad():
                online = self.q(x)
            self._act_graph = (obs, x, online)
            q, quantiles = self._values(online.detach())
        else:
            q, quantiles = self.evaluate(obs)
        best = q.argmax(1)
        b = obs.shape[0]
        if greedy:
            return best, ActInfo(q, torch.zeros(b, dtype=torch.bool, device=obs.device), best, 0.0, quantiles)
        eps = self.epsilon(iteration)
        scaled = eps if explore_scale is None else eps / explore_scale
        explore = torch.rand(b, generator=self.gen, device=self.gen.device).to(obs.device) < scaled
        random_actions = torch.randint(self.n_actions, (b,), generator=self.gen, device=self.gen.device).to(obs.device)
        if self.cfg.exploration == "epsilon":
            return torch.where(explore, random_actions, best), ActInfo(q, explore, best, eps, quantiles)
        chosen = self._with_bonus(q, quantiles).argmax(1)
        actions = torch.where(explore, random_actions, chosen)
        self.counts += torch.bincount(actions, minlength=self.n_actions)
        bonus = ~explore & (chosen != best)
        self.bonus_share = bonus.float().mean()
        return actions, ActInfo(q, explore | bonus, best, eps, quantiles)

    def _with_bonus(self, q: torch.Tensor, quantiles: Optional[torch.Tensor]) -> torch.Tensor:
        """Q plus the exploration bonus (paper 6.2): rarely taken actions (counts) or actions whose return the
        CU is unsure of (uncertainty: the spread of their quantiles) look better than they are."""
        if self.cfg.exploration == "counts":
            return q + self.cfg.exploration_bonus / (1.0 + self.counts).sqrt()
        return q + self.cfg.exploration_bonus * quantiles.std(2)

    def observe(self, t: Transition, before: int, after: int) -> List[str]:
        """Remember the transitions; from `learning_starts` on, `gradient_steps` updates every `train_freq`
        lane-iterations and a target update every `target_update_interval`."""
        reward, terminal = self._streams(t)
        self.remember(t.obs, t.actions, reward, t.next_obs, terminal)
        if self.sil is not None:
            self.sil.observe(t.obs, t.actions, reward, terminal)
        self.iteration = after
        c = self.cfg
        if after < c.learning_starts or self.replay.size < c.batch_size:
            return []
        due = after // c.train_freq - before // c.train_freq
        problems = [p for p in (self.train_step() for _ in range(due * c.gradient_steps)) if p]
        if after // c.target_update_interval != before // c.target_update_interval:
            self.update_target()
        return problems

    def store(self, t: Transition) -> None:
        """Put one-step transitions into replay (what-ifs: discount gamma, 0 where terminal); no update, no step."""
        if t.obs.shape[0]:
            reward, terminal = self._streams(t)
            self.replay.add(t.obs, t.actions, reward, t.next_obs, self.cfg.gamma * (1.0 - terminal))

    def input_grad(self, t: Transition, iteration: int) -> Optional[torch.Tensor]:
        """d(TD loss of the current transitions, mean over lanes)/d(obs), from `learning_starts` on."""
        if iteration < self.cfg.learning_starts:
            return None
        graph, self._act_graph = self._act_graph, None
        if graph is not None and graph[0] is t.obs:  # `act`'s forward on these inputs (see there)
            _, x, online = graph
        else:
            x, online = t.obs.detach().requires_grad_(), None
        reward, terminal = self._streams(t)
        with torch.enable_grad():
            loss = self._td_loss(x, t.actions, reward, t.next_obs, self.cfg.gamma * (1.0 - terminal), online)
            (g,) = torch.autograd.grad(loss, x)
        return g

    def metrics(self) -> Dict[str, float]:
        return {"epsilon": self.epsilon(self.iteration), "td_loss": float(self.last_loss), "cu_updates": self.updates,
                "replay_ratio": self.cfg.gradient_steps / self.cfg.train_freq, "bonus_share": float(self.bonus_share),
                **(self.sil.metrics() if self.sil else {})}

    @torch.no_grad()
    def _td_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
        """Unnormalised TD targets [B] or [B, heads]; the next action is the greedy one on the summed values."""
        q_next = self.target(next_obs)
        if self.cfg.double:
            v = self._pick(q_next, self._total(self.q(next_obs)).argmax(1))
        elif self.heads == 1:
            v = q_next.max(1).values
        else:
            v = self._pick(q_next, q_next.sum(1).argmax(1))
        if self.popart is not None:
            v = self.popart.unnormalise(v)
        return rewards + discount * v

    def _td_loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                 discount: torch.Tensor, online: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Huber TD loss, summed over heads (each head's mean over the batch); PopArt: on normalised targets.
        `online` is the online network's output at `obs` where the caller has it."""
        q = self._pick(self.q(obs) if online is None else online, actions)
        target = self._td_target(rewards, next_obs, discount)
        if self.popart is not None:
            target = self.popart.normalise(target)
        loss = F.smooth_l1_loss(q, target)
        return loss if self.heads == 1 else loss * self.heads

    def remember(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                 next_obs: torch.Tensor, terminal: torch.Tensor) -> None:
        """Hold one iteration's transitions [B] in a ring of `n_step` slots; once the ring is full,
        store the oldest as an n-step transition: the discounted rewards up to the first task-instance
        end (which cuts bootstrapping) or n steps, then V(obs n steps on). n-step returns let the
        outcome of a long route reach its early choices through states the CU's inputs cannot tell
        apart. Each slot keeps its running return, so an iteration costs O(n * B), not a Python loop."""
        n = self.cfg.n_step
        if n == 1:  # the ring below with one slot stores exactly this, with a dozen fewer tensor operations
            self.steps += 1
            self.replay.add(obs, actions, rewards, next_obs, (1.0 - terminal) * self.cfg.gamma)
            return
        if self.pending is None:  # rewards and terminal are [B], or [B, heads]: each head's own stream
            self.pending = {"obs": obs.new_zeros((n, *obs.shape)), "actions": actions.new_zeros((n, *actions.shape)),
                            "ret": rewards.new_zeros((n, *rewards.shape)), "alive": rewards.new_zeros((n, *rewards.shape)),
                            "power": rewards.new_zeros((n, *[1] * rewards.dim()))}
        p, slot = self.pending, self.steps % n
        p["obs"][slot], p["actions"][slot] = obs, actions
        p["ret"][slot], p["alive"][slot], p["power"][slot] = 0.0, 1.0, 1.0
        p["ret"].addcmul_(p["alive"] * p["power"], rewards)
        p["alive"].mul_(1.0 - terminal)
        p["power"].mul_(self.cfg.gamma)
        self.steps += 1
        if self.steps >= n:
            old = self.steps % n  # the slot the next iteration overwrites holds the oldest transition
            self.replay.add(p["obs"][old], p["actions"][old], p["ret"][old], next_obs,
                            p["alive"][old] * p["power"][old])

    def train_step(self) -> Optional[str]:
        """One gradient step on a replay batch. A non-finite loss or gradient skips it and is described."""
        self._act_graph = None  # the Q-network changes
        obs, actions, rewards, next_obs, terminal = self.replay.sample(self.cfg.batch_size, self.gen)
        if self.popart is not None:
            self.popart_update(self._td_target(rewards, next_obs, terminal))
        loss = self._td_loss(obs, actions, rewards, next_obs, terminal)
        if self.sil is not None:
            imitation = self.sil.loss(lambda o: self.evaluate(o)[0], self.cfg.batch_size, self.gen)
            if imitation is not None:
                loss = loss + self.cfg.self_imitation * imitation
        self.optimizer.zero_grad()
        loss.backward()
        norm = clip_([p.grad for p in self.params], self.cfg.max_grad_norm)
        if not finite(loss.detach() + norm):  # one host sync for both checks
            self.optimizer.zero_grad()
            if not finite(loss):
                return f"the CU's TD loss is {loss.item()}"
            return "the CU's Q-network got a non-finite gradient"
        self.optimizer.step()
        self.updates += 1
        self.last_loss = loss.detach()
        return None

    def popart_update(self, targets: torch.Tensor) -> None:
        """Move PopArt's statistics towards a batch of targets and rescale both networks' heads so that
        their unnormalised values do not change."""
        scale, shift = self.popart.update(targets)
        for net in (self.q, self.target):
            net.rescale(scale, shift)

    def update_target(self) -> None:
        with torch.no_grad():
            tp = list(self.target.parameters())
            if self.cfg.tau >= 1.0:
                torch._foreach_copy_(tp, self.params)
            else:
                torch._foreach_lerp_(tp, self.params, self.cfg.tau)

    def state_dict(self) -> dict:
        state = {"q": self.q.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "replay": self.replay.state_dict(),
                "pending": None if self.pending is None else {k: v.clone() for k, v in self.pending.items()},
                "steps": self.steps, "iteration": self.iteration, "updates": self.updates, "last_loss": self.last_loss,
                "gen": self.gen.get_state(), "counts": self.counts.clone()}
        if self.sil is not None:
            state["sil"] = self.sil.state_dict()
        if self.popart is not None:
            state["popart"] = self.popart.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self._act_graph = None
        self.q.load_state_dict(state["q"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.replay.load_state_dict(state["replay"])
        self.pending = None if state["pending"] is None else {k: v.clone() for k, v in state["pending"].items()}
        self.steps, self.iteration = state["steps"], state["iteration"]
        self.updates = state["updates"]
        self.last_loss = state["last_loss"]
        self.gen.set_state(state["gen"])
        if self.sil is not None:
            self.sil.load_state_dict(state["sil"])
        if "counts" in state:  # checkpoints written before exploration=counts have none
            self.counts = state["counts"].clone()
        if self.popart is not None:
            self.popart.load_state_dict(state["popart"])
