"""The Interaction Network: nodes, PUs, Environments, the CU and the tape, stepped in lockstep lanes.

`Engine.step` is one iteration of the paper's Algorithm 1 for all B lanes:
  1. the CU (a learner behind the protocol of inet/cu/protocol.py) reads its input
     vector and picks an action per lane (exploring, or a script);
  2. each chosen action runs once on the lanes that chose it: a PU run (recorded
     on the tape), a node action (`cu.node_actions`: the rated best of the node's
     writers, inet/node_actions.py) or an Environment action (inet/rollout.py,
     shared with evaluation);
  3. Environments give feedback: rewards, `terminal` at task-instance ends, and
     node losses; new task instances start and write their inputs;
  4. node losses and the CU's loss gradient on the CU-visible nodes are swept
     through the tape in one pass; shortcut students (inet/shortcut.py) add their
     loss on the teachers' writes; the PUs take one optimizer step; the learner
     observes the transition (stores it and trains on its own schedule); with
     `cu.what_if`, other PUs are simulated from the iteration's start and the useful
     ones stored too (inet/cu/what_if.py);
  5. the tape drops records no live value can reach;
  6. every `evaluation.interval` iterations, a greedy evaluation (inet/evaluation.py)
     that reads the PUs and the CU and changes no training state.
Iteration counts are lane-iterations (environment interactions over all lanes).
All state lives in `state_dict()` so a run can be saved and restored exactly.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, RunConfig, quiet_pus, training_wheels, validate
from .cu import ActInfo, Learner, Transition, build_learner
from .cu.curiosity import KPIS as CURIOSITY_KPIS
from .cu.curiosity import Curiosity
from .cu.protocol import WHAT_IF_METHODS
from .cu.what_if import KPIS as WHAT_IF_KPIS
from .cu.what_if import WhatIf
from .evaluation import Evaluator
from .guards import NonFiniteError, finite
from .node_actions import KPIS as NODE_ACTION_KPIS
from .node_actions import NodeRaters, action_name, writers_by_node
from .node_kinds import Combine, Combiner as CombinerKind
from .nodes import ENV, Nodes, pu_view, reader
from .pretrain import pretrain
from .pu_loss import PULosses
from .pu_optim import PUOptimizer
from .protect import KPIS as PROTECT_KPIS
from .protect import UseScaler
from .pu_replay import KPIS as PU_REPLAY_KPIS
from .pu_replay import PUReplay
from .pus import build_pu, import_object
from .rng import global_state, seed_everything, set_global_state
from .rollout import Action, Rollout
from .shortcut import KPIS as SHORTCUT_KPIS
from .shortcut import Shortcut
from .tape import Tape
from .tasks.env import Environment, Step
from .tasks.kpi_registry import (DIAGNOSTICS, KPI, declared_kpis, learner_kpis, pu_kpis, qualified, qualified_name,
                                 summarise)
from .tasks.kpis import KPITracker


class Engine:
    """One Interaction Network with `cfg.lanes` lanes."""

    def __init__(self, cfg: RunConfig):
        validate(cfg)
        self.cfg = cfg
        self.lanes = b = cfg.lanes
        self.device = dev = torch.device(cfg.device)
        seed_everything(cfg.seed)
        # One generator per consumer, so adding an Environment never shifts another's draws.
        gens = {k: torch.Generator(dev).manual_seed(cfg.seed * 1000 + i)
                for i, k in enumerate(["cu", "pretrain", *(f"env:{e}" for e in cfg.envs)])}

        self.nodes = Nodes(cfg.nodes, b, dev)
        views = {n: pu_view(p, self.nodes) for n, p in cfg.pus.items()}
        self.pus = nn.ModuleDict({n: build_pu(n, *views[n]) for n, p in cfg.pus.items()}).to(dev)
        # combiner nodes' learned weights, and each PU as the tape and rollout run it (combiner inputs combined)
        self.node_modules = nn.ModuleDict({f"node:{n}": Combine(k.size) for n, k in self.nodes.kinds.items()
                                           if isinstance(k, CombinerKind)}).to(dev)
        self.runners = {n: reader(self.pus[n], p, self.nodes, self.node_modules) for n, p in cfg.pus.items()}
        self.pretrain_loss = {n: pretrain(n, self.pus[n], p.pretrain, gens["pretrain"], dev)
                              for n, p in cfg.pus.items() if p.pretrain.steps > 0}
        for n, p in cfg.pus.items():
            if p.freeze:  # after pre-training: freeze holds what was loaded or pre-trained
                self.pus[n].requires_grad_(False)

        self.envs: Dict[str, Environment] = {}
        for name, ecfg in cfg.envs.items():
            cls = import_object(ecfg._target_, f"envs.{name}._target_")
            self.envs[name] = cls(name, ecfg, self.nodes, b, dev, gens[f"env:{name}"])
        self.actions: List[Action] = [(env.name, a) for env in self.envs.values() for a in env.actions]
        writers = writers_by_node(cfg) if cfg.cu.node_actions else {}  # paper 6.7: one action per written node
        self.actions += [(None, action_name(n)) for n in writers] if writers else [(None, n) for n in cfg.pus]
        node_actions = {f"{a}_{n}": (n, a) for n, k in self.nodes.kinds.items() for a in k.actions}
        self.actions += [(None, a) for a in node_actions]
        self.action_names = [a for _, a in self.actions]
        names = self.action_names + (list(cfg.pus) if writers else [])
        dup = {a for a in names if names.count(a) > 1}
        if dup:
            raise ConfigError(f"pus: action names {sorted(dup)} are used twice; env actions and PU names "
                              "together must be unique, so rename the PU")
        self.action_index = {a: i for i, a in enumerate(self.action_names)}
        self.n_actions = len(self.actions)
        # what the Environments index (`Step.ran`): the actions, then with node actions each PU
        self.ran_index = {**self.action_index, **{p: self.n_actions + i for i, p in enumerate(cfg.pus) if writers}}
        self.ran_names = list(self.ran_index)
        for env in self.envs.values():
            env.bind(self.ran_index)

        self.wheels = training_wheels(cfg)  # env -> its training wheels (only those that are on)
        self.teachers = {e: import_object(tw.teacher, "training_wheels.teacher" if tw is cfg.training_wheels
                                          else f"envs.{e}.training_wheels.teacher") for e, tw in self.wheels.items()}
        self.script = self._callable(cfg.cu.script, "cu.script")
        self.first_env = next(iter(self.envs.values()))

        sizes = {"history": cfg.cu.history_length * self.n_actions,
                 "signals": sum(e.n_signals for e in self.envs.values()),
                 "nodes": self.nodes.cu_size, "meta": 2}
        if "nodes" in cfg.cu.inputs and sizes["nodes"] == 0:
            raise ConfigError("cu.inputs: includes 'nodes' but no node has cu_visible: true")
        offset = 0
        for part in cfg.cu.inputs:
            if part == "nodes":
                self.node_offset = offset
            offset += sizes[part]
        self.obs_dim = offset
        self.cu: Learner = build_learner(cfg.cu, self.obs_dim, self.n_actions, cfg.iterations, dev, gens["cu"],
                                         heads=len(self.envs))
        self.curiosity = None if cfg.curiosity.kind == "none" or self.script is not None else Curiosity(
            cfg.curiosity, self.obs_dim, self.n_actions, self.nodes.cu_size or self.obs_dim, self.cu,
            cfg.seed * 1000 + 999, dev)

        self.protect = UseScaler(cfg.pu_optim, dev)
        po = cfg.pu_optim
        self.pu_replay = PUReplay(po.replay, po.replay_size, po.replay_step, cfg.seed * 1000 + 998, dev) \
            if po.replay else None
        self.tape = Tape(cfg.tape.horizon, cfg.tape.depth_decay, cfg.tape.recompute, self.protect, self.pu_replay)
        self.shortcut = Shortcut(cfg.pus, self.nodes) if any(p.shortcut.weight > 0 for p in cfg.pus.values()) else None
        self._mark_random = cfg.pu_optim.random_use_scale != 1.0
        trained = self.pus if not len(self.node_modules) else nn.ModuleDict({**self.pus, **self.node_modules})
        self.pu_optimizer = PUOptimizer(trained, cfg.pu_optim, {n: p.lr for n, p in cfg.pus.items()})
        self.node_raters = NodeRaters(cfg.cu, writers, {n: p.inputs for n, p in cfg.pus.items()}, self.nodes,
                                      cfg.seed * 1000 + 997, dev) if writers else None
        self.rollout = Rollout(cfg.cu, self.runners, cfg.pus, self.actions, node_actions,
                               [n for n, p in cfg.pus.items() if set(p.inputs + p.outputs) & self.nodes.kinds.keys()],
                               self.node_raters, self.ran_index, self.shortcut)

        self.what_if = self._what_if() if cfg.cu.what_if else None

        self.iteration = 0
        self.world = self.rollout.new_world(self.nodes, self.envs)
        self.trackers = {name: KPITracker(b, cfg.kpi_window) for name in self.envs}  # each Environment's KPIs
        # each Environment with task lengths gets its own greedy evaluation (inet/evaluation.py)
        self.evaluators = {name: Evaluator(cfg.evaluation, name) for name, env in self.envs.items()
                           if env.max_trained_length() != float("inf")}
        self.stats = {"pu_loss": float("nan"), "tape_visited": 0, "nonfinite_skipped": 0}
        self.last_info: Optional[ActInfo] = None  # the learner's report on the last actions (read by the trace)
        self.action_counts = torch.zeros(len(self.ran_index), dtype=torch.long, device=dev)  # `Step.ran`, since `start_interval`
        self.pu_losses = PULosses(list(self.pus), cfg.tape.horizon)  # each PU's loss since `start_interval`
        self._ones = torch.ones(b, dtype=torch.long, device=dev)
        for env in self.envs.values():
            env.reset()
        self.obs, self.obs_writers = self._observe()

    @property
    def kpis(self) -> KPITracker:
        """The first Environment's KPI tracker (the only one, in a one-Environment IN)."""
        return self.trackers[self.first_env.name]

    @property
    def evaluator(self) -> Evaluator:
        """The only evaluated Environment's evaluator."""
        (evaluator,) = self.evaluators.values()
        return evaluator

    def _what_if(self) -> WhatIf:
        """The what-if tests (cu.what_if), once the learner and the Environment are known to support them."""
        lacks = [m for m in WHAT_IF_METHODS if not callable(getattr(self.cu, m, None))]
        if lacks:
            raise ConfigError(f"cu.what_if: the learner {type(self.cu).__name__} has no method '{lacks[0]}', which "
                              "what-ifs need (inet/cu/protocol.py); set cu.what_if=0")
        if self.first_env.quiet_step() is None:
            raise ConfigError(f"cu.what_if: Environment '{self.first_env.name}' ({type(self.first_env).__name__}) "
                              "cannot tell what a PU run would bring (Environment.quiet_signals); set cu.what_if=0")
        c = self.cfg
        return WhatIf(c.cu.what_if, c.cu.what_if_interval, c.cu.gamma, c.cu.learning_starts,
                      [(self.action_index[n], n) for n in quiet_pus(c)], c.seed * 1000 + 997, self.device)

    @staticmethod
    def _callable(path: Optional[str], key: str):
        return import_object(path, key) if path else None

    # -- observation and actions -------------------------------------------------------
    def _observe(self) -> tuple:
        """The CU input vector [B, obs_dim], and the writers of the CU-visible node values in it."""
        writers = {n: list(self.nodes.writers[n]) for n, _, _ in self.nodes.cu_views}
        return self.rollout.observe(self.world), writers

    def run_pu(self, name: str, lanes: List[int], written: Dict[str, List[int]]) -> None:
        """Run PU `name` on `lanes`, write its outputs and record the run on the tape."""
        self.rollout.run_pu(self.nodes, name, lanes, written, self.tape, self._nonfinite)

    def _choose(self) -> tuple:
        """Actions [B], and meta flags: random?, argmax?"""
        if self.script is not None:
            actions = self.script(self.first_env).to(self.device)
            false = torch.zeros(self.lanes, dtype=torch.bool, device=self.device)
            self.last_info = ActInfo(None, false, actions)
            return actions, false, ~false
        scale = None
        if self.cfg.cu.epsilon_by_task_length:  # paper 5.2.2.3: per-lane epsilon / expected task length
            scale = torch.as_tensor(self.first_env.expected_length(), device=self.device).clamp(min=1.0)
        actions, info = self.cu.act(self.obs, self.iteration, explore_scale=scale)
        if info.values is not None and not finite(info.values):
            raise NonFiniteError(f"iteration {self.current}: the CU's Q-values are not finite "
                                 "(its weights or inputs are broken; this cannot be skipped)")
        self.last_info = info
        return actions, info.explored, actions == info.greedy

    # -- one iteration --------------------------------------------------------------
    def step(self) -> Step:
        """One lockstep iteration of Algorithm 1 (see module docstring)."""
        b, dev, cfg = self.lanes, self.device, self.cfg
        self.current = self.iteration + b  # the iteration count once this step is done (as logged)
        self.nodes.set_iteration(self.iteration)
        obs = self.obs
        actions, explore, argmax = self._choose()
        taught = {e: self.teachers[e](self.envs[e]).to(dev) for e, tw in self.wheels.items()
                  if self.iteration < tw.iterations}
        leaders = [e for e in taught if self.wheels[e].mode == "lead"]
        if leaders:  # the teachers take the greedy action's place
            actions = torch.where(explore, actions, self._lead(leaders, taught))
            argmax = actions == self.last_info.greedy

        start = None
        if self.what_if is not None and self.what_if.due(self.iteration, self.iteration + b):
            start = self.what_if.start(self.world, self.first_env)
        step = self.rollout.apply(self.world, actions, self.tape, self._nonfinite,
                                  explore if self._mark_random else None)
        self.action_counts.index_add_(0, step.ran, self._ones)
        reward, env_reward = self._shaped(step.reward, step.env_reward, actions, taught)
        self.rollout.advance(self.world, actions, explore, argmax)
        next_obs, next_writers = self._observe()
        transition = Transition(obs, actions, reward, next_obs, step.terminal.float(), *self._env_streams(step, env_reward))
        if self.curiosity is not None:
            self._add_curiosity(transition)

        self._node_losses(step)
        g = self.cu.input_grad(transition, self.iteration) if self._cu_grad_active() else None
        if g is not None and finite(g):
            self._cu_node_grads(g * (cfg.cu.grad_to_nodes_scale * cfg.tape.cu_scale))
        elif g is not None:
            self._nonfinite("the CU's TD gradient into the nodes is not finite")
        self.stats["tape_visited"] = self.tape.sweep(self.runners)
        students = self.shortcut is not None and self.shortcut.backward(self.runners, b)
        if self.stats["tape_visited"] or students:
            if self.pu_replay is not None:
                self.pu_replay.backward(self.runners)
            self.tape.before_step(self.runners)
            problem = self.pu_optimizer.step()
            if problem:
                self._nonfinite(problem)

        before, self.iteration = self.iteration, self.iteration + b
        if self.script is None:
            for problem in self.cu.observe(transition, before, self.iteration):
                self._nonfinite(problem)
        if start is not None:
            real = Transition(obs, actions, reward, next_obs, transition.terminal)
            self.what_if.test(start, self.rollout, self.cu, real, self.last_info.greedy,
                              lambda a, r: self._shaped(r, {self.first_env.name: r}, a, taught, before)[0])
        self.tape.prune(self.nodes.live_writers())
        self.obs, self.obs_writers = next_obs, next_writers
        for name, tracker in self.trackers.items():
            tracker.update(self.iteration, step.env_reward[name], [e for e in step.ended if e.env == name])
        for evaluator in self.evaluators.values():
            if evaluator.due(before, self.iteration):
                evaluator.run(self)
        return step

    def _shaped(self, reward: torch.Tensor, env_reward: Dict[str, torch.Tensor], actions: torch.Tensor,
                taught: Dict[str, torch.Tensor], iteration: Optional[int] = None) -> tuple:
        """The CU's reward [B] and each Environment's part of it for `actions`, after the shaping teachers
        (training wheels replace, anneal) at lane-iteration `iteration` (default: the current one)."""
        shaping = [e for e in taught if self.wheels[e].mode != "lead"]
        if not shaping:
            return reward, env_reward
        it = self.iteration if iteration is None else iteration
        env_reward = dict(env_reward)
        for e in shaping:
            tw, follows = self.wheels[e], (actions == taught[e]).float()
            env_reward[e] = follows if tw.mode == "replace" else env_reward[e] + follows * (1.0 - it / tw.iterations)
        rewards = list(env_reward.values())
        return (rewards[0] if len(rewards) == 1 else torch.stack(rewards).sum(0)), env_reward

    def _lead(self, leaders: List[str], taught: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The leading teachers' actions [B]: with m of them, lane l at lockstep k follows the ((k + l) mod m)-th."""
        if len(leaders) == 1:
            return taught[leaders[0]]
        turn = (torch.arange(self.lanes, device=self.device) + self.iteration // self.lanes) % len(leaders)
        return torch.stack([taught[e] for e in leaders]).gather(0, turn[None]).squeeze(0)

    def _env_streams(self, step: Step, env_reward: Dict[str, torch.Tensor]) -> tuple:
        """Each Environment's reward (after its teacher's shaping) and task-instance ends, [B, E] in the order of
        `envs` (None with one)."""
        if len(self.envs) == 1:
            return None, None
        names = list(self.envs)
        terminal = torch.zeros(self.lanes, len(names), device=self.device)
        for end in step.ended:
            terminal[end.lanes, names.index(end.env)] = 1.0
        return torch.stack([env_reward[n] for n in names], 1), terminal

    def _add_curiosity(self, t: Transition) -> None:
        """Add the intrinsic reward to the transition's reward (split evenly over the Environments' streams); it
        models the CU-visible nodes after the action, or the next CU input where no node is CU-visible."""
        seen = self.nodes.cu_input() if self.nodes.cu_size else t.next_obs
        r = self.curiosity.reward(t, seen, self.last_info.quantiles, self.iteration)
        t.reward = t.reward + r
        if t.env_reward is not None:
            t.env_reward = t.env_reward + r.unsqueeze(1) / t.env_reward.shape[1]

    # -- learning -----------------------------------------------------------------
    def _node_losses(self, step: Step) -> None:
        """Environment losses -> gradients on node values, averaged over the lanes that got a loss."""
        if not step.losses:
            return
        n_lanes = len(set().union(*(lanes for _, lanes, _, _, _ in step.losses)))
        scale = self.cfg.tape.env_scale / n_lanes
        total = 0.0
        for node, lanes, value, writers, loss_fn in step.losses:
            v = value.detach().requires_grad_()
            with torch.enable_grad():
                raw = loss_fn(v)
                per_lane = raw if raw.dim() else None  # per-lane losses, or their sum
                raw = raw.sum() if raw.dim() else raw
                loss = raw * scale
                (g,) = torch.autograd.grad(loss, v)
            if not finite(loss):
                self._nonfinite(f"the loss on node '{node}' is {loss.item()}")
                continue
            total += loss.detach()
            if self.shortcut is not None:
                self.shortcut.judge(node, lanes, writers, raw if per_lane is None else per_lane)
            self.pu_losses.add(self.tape, writers, raw.detach())
            self.tape.add_grad(writers, node, lanes, g)
            if self.node_raters is not None:
                self.node_raters.observe(node, lanes, value, writers, loss_fn)
        self.stats["pu_loss"] = total
        if self.node_raters is not None:
            self.node_raters.learn()

    def _cu_grad_active(self) -> bool:
        if not self.cfg.cu.grad_to_nodes or self.script is not None or "nodes" not in self.cfg.cu.inputs:
            return False
        return any(ws.count(ENV) != len(ws) for ws in self.obs_writers.values())

    def _cu_node_grads(self, g: torch.Tensor) -> None:
        """Route d(TD loss)/d(obs) of the CU-visible node columns to the records that wrote them."""
        col = self.node_offset
        lanes = list(range(self.lanes))
        for node, start, stop in self.nodes.cu_views:
            gv = g[:, col:col + stop - start]
            col += stop - start
            shape = self.nodes.shapes[node]
            numel = self.nodes.values[node][0].numel()
            if (start, stop) != (0, numel):
                gv = F.pad(gv, (start, numel - stop))
            self.tape.add_grad(self.obs_writers[node], node, lanes, gv.reshape(self.lanes, *shape), cu=True)

    def _nonfinite(self, what: str) -> None:
        """A non-finite value was caught (and its update not applied): stop, or count it (nonfinite=skip)."""
        if self.cfg.nonfinite == "raise":
            raise NonFiniteError(f"iteration {self.current}: {what}")
        self.stats["nonfinite_skipped"] += 1

    # -- reporting and state --------------------------------------------------------
    def declared_kpis(self) -> List[KPI]:
        """The KPIs this run's Environments declare, named by `kpi_registry.qualified` (DESIGN.md section 11)."""
        n = len(self.envs)
        return [qualified(name, k, n) for name, env in self.envs.items() for k in declared_kpis(env, self.cfg)]

    def diagnostics(self) -> List[KPI]:
        """How training goes: the learner's metrics, then the engine's own (inet/tasks/kpi_registry.py)."""
        return [*learner_kpis(self.cu), *DIAGNOSTICS, *PROTECT_KPIS, *CURIOSITY_KPIS, *PU_REPLAY_KPIS, *NODE_ACTION_KPIS,
                *WHAT_IF_KPIS, *SHORTCUT_KPIS, *pu_kpis(list(self.pus), list(self.pu_optimizer.params))]

    def start_interval(self) -> None:
        """Start a new log interval: the PU usage shares and losses count from here."""
        self.action_counts.zero_()
        self.pu_losses.reset()
        if self.node_raters is not None:
            self.node_raters.start_interval()
        if self.what_if is not None:
            self.what_if.start_interval()
        if self.shortcut is not None:
            self.shortcut.start_interval()

    def _learning_metrics(self) -> Dict[str, float]:
        """Q-value stats of the last actions, learning rates, and per PU its usage share, loss and gradient norm."""
        nan = float("nan")
        values = self.last_info.values if self.last_info is not None else None
        q = (values.float().mean().item(), values.min().item(), values.max().item()) if values is not None else (nan,) * 3
        out = dict(zip(("q_mean", "q_min", "q_max"), q))
        groups = getattr(getattr(self.cu, "optimizer", None), "param_groups", None)
        out["learning_rate"] = float(groups[0]["lr"]) if groups else nan
        counts = self.action_counts.tolist()
        total = sum(counts)
        for n in self.pus:
            out[f"pu_usage/{n}"] = counts[self.ran_index[n]] / total if total else nan
        out.update(self.pu_losses.means())
        optim = self.pu_optimizer
        for n, lr in optim.learning_rates().items():
            out[f"pu_grad_norm/{n}"] = optim.last_norms.get(n, nan)
            out[f"pu_learning_rate/{n}"] = lr
        return out

    def _per_env(self, values: Callable[[str], Dict[str, object]]) -> Dict[str, object]:
        """`values(env_name)` of every Environment, named by the KPI naming rule (`<env>/<kpi>` with several)."""
        n = len(self.envs)
        return {qualified_name(e, k, n): v for e in self.envs for k, v in values(e).items()}

    def metrics(self) -> Dict[str, float]:
        """KPIs and training diagnostics at the current iteration (nan: a declared KPI or diagnostic not measured)."""
        out = self._per_env(lambda e: self.trackers[e].snapshot())
        out.update(self.cu.metrics())
        out.update({
            "pu_loss": float(self.stats["pu_loss"]),
            "tape_records": len(self.tape),
            "guarded_updates": self.pu_optimizer.guarded,
            "nonfinite_skipped": self.stats["nonfinite_skipped"],
            **self.protect.metrics(),
            **(self.pu_replay.metrics() if self.pu_replay else {}),
            **(self.curiosity.metrics() if self.curiosity else {}),
            **(self.node_raters.metrics() if self.node_raters else {}),
            **(self.what_if.metrics(int(self.action_counts.sum())) if self.what_if else {}),
            **(self.shortcut.metrics() if self.shortcut else {}),
            **self._learning_metrics(),
        })
        out.update(self._per_env(lambda e: self.envs[e].metrics()))
        if self.cfg.evaluation.interval:
            out.update(self._per_env(lambda e: self.evaluators[e].metrics(self.envs[e].max_trained_length())
                                     if e in self.evaluators else {}))
        for k in (*self.declared_kpis(), *self.diagnostics()):  # declared, not measured (e.g. a mechanism that is off)
            if k.curve and k.tag_group != "time":  # time/: the runner's wall-clock numbers
                out.setdefault(k.name, float("nan"))
        return out

    def task_summary(self) -> Dict[str, object]:
        """Every declared KPI's value for summary.json (`kpi_registry.summarise`; DESIGN.md section 7)."""
        end = self._per_env(lambda e: self.trackers[e].at_end())
        if self.cfg.evaluation.interval:
            end.update(self._per_env(lambda e: self.evaluators[e].summary(self.envs[e].max_trained_length())
                                     if e in self.evaluators else {}))
        return summarise(self.declared_kpis(), self.metrics(), end)

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "nodes": self.nodes.state_dict(),
            "pus": self.pus.state_dict(),
            **({"node_modules": self.node_modules.state_dict()} if len(self.node_modules) else {}),
            "pu_optimizer": self.pu_optimizer.state_dict(),
            "cu": self.cu.state_dict(),
            "tape": self.tape.state_dict(),
            "envs": {n: e.state_dict() for n, e in self.envs.items()},
            "history": self.world.history.clone(),
            "meta": self.world.meta.clone(),
            "obs": self.obs.clone(),
            "obs_writers": {n: list(w) for n, w in self.obs_writers.items()},
            "kpis": {name: tracker.state_dict() for name, tracker in self.trackers.items()},
            "stats": dict(self.stats),
            "action_counts": self.action_counts.clone(),
            "pu_losses": self.pu_losses.state_dict(),
            "evaluation": {name: ev.state_dict() for name, ev in self.evaluators.items()},
            "protect": self.protect.state_dict(),
            "pu_replay": self.pu_replay.state_dict() if self.pu_replay else None,
            **{key: part.state_dict() for key, part, _ in self._switched_parts() if part is not None},
            "rng": global_state(),
        }

    def _switched_parts(self) -> List[tuple]:
        """The mechanisms with state that a config switch turns on: (their key in the state, the part or None
        while off, the override that turns them off). A checkpoint must match: a resume cannot invent their state."""
        return [("curiosity", self.curiosity, "curiosity.kind=none"),
                ("node_actions", self.node_raters, "cu.node_actions=false"),
                ("what_if", self.what_if, "cu.what_if=0"),
                ("shortcut", self.shortcut, "pus.<name>.shortcut.weight=0 for every PU")]

    def load_state_dict(self, state: dict) -> None:
        self.iteration = state["iteration"]
        self.nodes.load_state_dict(state["nodes"])
        self.pus.load_state_dict(state["pus"])
        # a saved engine holds no gradients between steps; pre-training this one (pretrain) may have left some
        self.pus.zero_grad(set_to_none=True)
        if len(self.node_modules):
            self.node_modules.load_state_dict(state["node_modules"])
        self.pu_optimizer.load_state_dict(state["pu_optimizer"])
        self.cu.load_state_dict(state["cu"])
        self.tape.load_state_dict(state["tape"])
        for n, e in self.envs.items():
            e.load_state_dict(state["envs"][n])
        self.world.history = state["history"].clone()
        self.world.meta = state["meta"].clone()
        self.obs = state["obs"].clone()
        self.obs_writers = {n: list(w) for n, w in state["obs_writers"].items()}
        for name, tracker in self.trackers.items():
            tracker.load_state_dict(state["kpis"][name])
        self.stats = dict(state["stats"])
        if "action_counts" in state:  # checkpoints written before usage shares have none
            self.action_counts = state["action_counts"].to(self.device).clone()
        for key, part, off in self._switched_parts():
            if part is not None:
                if state.get(key) is None:
                    raise ConfigError(f"{off.split('=')[0]}: this checkpoint was written without it; resume it with {off}")
                part.load_state_dict(state[key])
        if self.pu_replay is not None and state.get("pu_replay") is not None:
            self.pu_replay.load_state_dict(state["pu_replay"])
        if "protect" in state:  # checkpoints written before per-use protection have none
            self.protect.load_state_dict(state["protect"])
        if "pu_losses" in state:  # checkpoints written before per-PU losses have none
            self.pu_losses.load_state_dict(state["pu_losses"])
        evaluation = state.get("evaluation", {})  # checkpoints written before evaluation existed have none
        if "results" in evaluation:  # written before evaluation was per Environment: the only one's
            evaluation = {name: evaluation for name in self.evaluators}
        for name, ev in self.evaluators.items():
            if name in evaluation:
                ev.load_state_dict(evaluation[name])
        set_global_state(state["rng"])
