"""Plain-torch reference loops: the work of one `multitask` iteration of inet, written by hand.

`scripts/bench.py` runs these interleaved with inet and prints inet's throughput as a
ratio to them (issue 16). `Reference(cfg)` reads every size and hyperparameter from
the composed inet config (`multitask/cu_inputs` or `multitask/base`), so both run
the same network sizes: 3 MLP PUs (pu0: n0, n1 -> n3; pu1: n0 -> n2; pu2: n1 -> n2;
hidden 32, ReLU), a 64-64 DQN CU over the same CU input (history, signals, the
CU-visible nodes, meta; 13 columns for `cu_inputs`) with the same 3 actions.

Per lockstep iteration of B lanes, as `Engine.step` does:
  1. CU act: Q(obs), epsilon-greedy (SB3's linear schedule over `iterations`);
  2. each chosen PU runs once on the lanes that chose it (as `lanes_by_action`;
     with B = 1 the one action is read with `.item()`); pu0 writes n3 (which the
     CU sees), pu1/pu2 write n2 (a submit);
  3. the multitask Environment: the submitted value's error, the exp-shaped reward,
     success within the tolerance, the timeout and its penalty, task ends
     (`terminal`), new a, b written into n0, n1 of the lanes that ended; the node
     loss (v - target)^2 summed over the submitting lanes, divided by their number;
  4. from `learning_starts` on, the CU's TD loss of the current transitions (mean
     over lanes) differentiated through the CU input's n3 column into the pu0 run
     that wrote the n3 value the CU saw (not into the Q-network);
  5. one backward pass for the node loss and the CU gradient, then one fused Adam
     step over the PUs that got gradients (per-PU clipping only when
     `pu_optim.clip_grad_norm` is set; inet's default config has none);
  6. the transition goes into a preallocated ring replay buffer; every `train_freq`
     lane-iterations `gradient_steps` DQN updates: a batch of `batch_size`, target
     network, Huber loss, gradient-norm clip, fused Adam; the target network is
     copied every `target_update_interval` lane-iterations;
  7. task success is counted on the device (inet's KPI trackers).

The tape, and what is simpler than inet (the same arithmetic, less bookkeeping):
  - Depth 1: in multitask every PU reads only Environment-written nodes, so a loss
    never travels past the PU run that wrote the node. The "tape" is, per lane, the
    inputs of the pu0 run that wrote the current n3 value.
  - pu0's gradient (from the CU, one or more iterations after the run, when Adam
    has changed the weights) is a recompute: pu0's forward on the stored inputs
    with the current weights, as inet's sweep does. The submit PUs' node loss
    arrives in the same iteration, so pu1/pu2 run with autograd on and their graph
    is used directly (recompute-free: one forward fewer than inet's sweep).
  - The node-loss gradient 2 (v - target) / n is written out, not taken by autograd.
  - The CU's gradient reuses the act forward (the Q weights do not change between
    act and this gradient), and the CU reads n3 as stored + (recompute - its value):
    the stored value forward, pu0's recomputed graph backward. So one backward pass
    (restricted to the PU weights) carries both the TD loss and the node loss into
    the PUs, where inet runs a second Q forward and backward for d(TD)/d(obs), then
    the tape. The PU weights come out bit-identical to doing it in two passes.
  - Adam is torch's fused kernel called through `torch.optim.adam.adam` (no Optimizer
    bookkeeping), the gradient-norm clip three foreach kernels; the same arithmetic.
  - No non-finite guards, no KPI windows in Python, no checkpointable state, no
    n-step returns (n_step = 1), no double/dueling DQN, no training wheels.
It does the work; it is not meant to reproduce inet's learning curves draw by draw.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam

from inet.config import RunConfig

# Column of each node in the reference's node tensor: the CU-visible ones (n0, n1, n3) are contiguous.
COLUMN = {"n0": 0, "n1": 1, "n3": 2, "n2": 3}
PU_WIRING = {"pu0": (["n0", "n1"], ["n3"]), "pu1": (["n0"], ["n2"]), "pu2": (["n1"], ["n2"])}


def _mlp_params(sizes: List[int], device: torch.device) -> List[torch.Tensor]:
    """Weights and biases [w1, b1, w2, b2, ...] of an MLP, initialised as nn.Linear does."""
    params: List[torch.Tensor] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layer = nn.Linear(a, b, device=device)
        params += [layer.weight.detach().requires_grad_(), layer.bias.detach().requires_grad_()]
    return params


def _mlp(x: torch.Tensor, params: List[torch.Tensor]) -> torch.Tensor:
    """ReLU MLP through F.linear (no module dispatch)."""
    n = len(params) // 2
    for i in range(n):
        x = F.linear(x, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            x = F.relu(x)
    return x


class FusedAdam:
    """Adam through torch's fused kernel (`torch.optim.adam.adam(fused=True)`), without `torch.optim.Adam`'s
    per-call bookkeeping (hooks, profiler ranges, state lookups). As there, only parameters that have a
    gradient step; `step` also clears the gradients (set to None)."""

    def __init__(self, groups: List[Tuple[List[torch.Tensor], float]]):
        self.groups = [(ps, lr, [torch.zeros_like(p) for p in ps], [torch.zeros_like(p) for p in ps],
                        [torch.zeros((), device=p.device) for p in ps]) for ps, lr in groups]

    def step(self) -> None:
        for ps, lr, m, v, steps in self.groups:
            have = [i for i, p in enumerate(ps) if p.grad is not None]
            if not have:
                continue
            if len(have) != len(ps):
                ps, m, v, steps = ([x[i] for i in have] for x in (ps, m, v, steps))
            adam(ps, [p.grad for p in ps], m, v, [], steps, fused=True, amsgrad=False, beta1=0.9, beta2=0.999,
                 lr=lr, weight_decay=0.0, eps=1e-8, maximize=False)
            for p in ps:
                p.grad = None


def clip_grad_norm(params: List[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients of `params` (all present) to a total 2-norm of at most `max_norm`, as
    `nn.utils.clip_grad_norm_` does, in three foreach kernels and no checks."""
    grads = [p.grad for p in params]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp_(max=1.0))


def _check(cfg: RunConfig) -> None:
    """The reference hard-codes multitask's wiring; refuse any other IN with a clear message."""
    wiring = {n: (list(p.inputs), list(p.outputs)) for n, p in cfg.pus.items()}
    if wiring != PU_WIRING or any(p.kind != "mlp" or len(p.hidden) != 1 or p.activation != "relu"
                                  for p in cfg.pus.values()):
        raise ValueError(f"the reference loop implements multitask's 3 one-hidden-layer ReLU MLP PUs {PU_WIRING}; "
                         f"this config has {wiring}")
    visible = [n for n, s in cfg.nodes.items() if s.cu_visible]
    if visible not in (["n0", "n1", "n3"], ["n3"]) or list(cfg.cu.inputs) != ["history", "signals", "nodes", "meta"]:
        raise ValueError(f"the reference loop supports CU-visible nodes [n0, n1, n3] or [n3] and the default "
                         f"cu.inputs; got {visible} and {list(cfg.cu.inputs)}")
    cu = cfg.cu
    if cu.n_step != 1 or cu.double or cu.dueling or cu.script or cfg.training_wheels.teacher:
        raise ValueError("the reference loop implements plain DQN with n_step 1, no script and no training wheels")


class Reference:
    """The hand-written loop for B lanes (`cfg.lanes`); `step()` is one lockstep iteration."""

    def __init__(self, cfg: RunConfig, seed: int = 0):
        _check(cfg)
        self.cfg = cfg
        self.b = b = cfg.lanes
        self.device = dev = torch.device(cfg.device)
        torch.manual_seed(seed)
        self.gen = torch.Generator(dev).manual_seed(seed)
        cu, env = cfg.cu, cfg.envs["multitask"]
        self.n_actions = n = len(cfg.pus)
        visible = [n_ for n_, s in cfg.nodes.items() if s.cu_visible]
        self.vis = slice(COLUMN[visible[0]], COLUMN[visible[-1]] + 1)
        # CU input columns: history (history_length * n), signals (2), visible nodes, meta (2).
        self.h = cu.history_length * n
        self.node_col = self.h + 2
        self.n3_col = self.node_col + len(visible) - 1
        self.obs_dim = self.node_col + len(visible) + 2

        self.pus = [_mlp_params([len(PU_WIRING[p][0]), *cfg.pus[p].hidden, 1], dev) for p in ("pu0", "pu1", "pu2")]
        self.pu_params = [p for ps in self.pus for p in ps]
        self.pu_adam = FusedAdam([(ps, cfg.pus[name].lr or cfg.pu_optim.lr) for name, ps in zip(PU_WIRING, self.pus)])
        self.clip = cfg.pu_optim.clip_grad_norm
        self.q = _mlp_params([self.obs_dim, *cu.hidden, n], dev)
        self.q_target = [p.detach().clone() for p in self.q]
        self.q_adam = FusedAdam([(self.q, cu.learning_rate)])

        # Preallocated state: two CU-input buffers (obs, next obs), nodes, the Environment.
        # separate tensors, not one [2, ...]: views of one tensor share autograd's version counter
        self.obs = [torch.zeros(b, self.obs_dim, device=dev) for _ in range(2)]
        self.cur = 0
        self.nodes = torch.zeros(b, 4, device=dev)
        # per lane, the inputs of the pu0 run that wrote n3, and 1 where a pu0 run wrote it (else the initial 0)
        self.src = [torch.zeros(b, 2, device=dev) for _ in range(2)]
        self.src_written = [torch.zeros(b, 1, device=dev) for _ in range(2)]
        self.src_cur = 0
        self.all_written = False
        self.target = torch.zeros(b, device=dev)
        self.age = torch.zeros(b, device=dev)
        self.reward = torch.zeros(b, device=dev)
        self.submitted = torch.zeros(b, dtype=torch.bool, device=dev)
        self.ok = torch.zeros(b, dtype=torch.bool, device=dev)
        self.successes = torch.zeros((), device=dev)
        self.tasks = torch.zeros((), device=dev)
        self.uniform = torch.empty(b, device=dev)
        self.random_actions = torch.empty(b, dtype=torch.long, device=dev)
        self.fresh = torch.empty(b, 2, device=dev)
        rw = env.reward
        self.width, self.success, self.bonus = rw.width, rw.success, rw.bonus
        self.timeout, self.timeout_penalty = float(rw.timeout), rw.timeout_penalty
        self.tolerance = float(env.params.get("tolerance", 0.05))
        if rw.shape != "exp" or rw.per_iteration != 0.0:
            raise ValueError("the reference loop implements the exp-shaped multitask reward with no per-iteration cost")

        cap = cu.buffer_size
        self.r_obs = torch.zeros(cap, self.obs_dim, device=dev)
        self.r_next = torch.zeros(cap, self.obs_dim, device=dev)
        self.r_act = torch.zeros(cap, dtype=torch.long, device=dev)
        self.r_rew = torch.zeros(cap, device=dev)
        self.r_disc = torch.zeros(cap, device=dev)
        self.cursor = self.size = 0
        self.batch_idx = torch.empty(cu.batch_size, dtype=torch.long, device=dev)
        self.lane_range = torch.arange(b, device=dev)

        self.iteration = 0
        self.total = cfg.iterations
        self.td_loss = torch.zeros((), device=dev)
        self.node_loss = torch.zeros((), device=dev)
        self.cu_grad_scale = torch.tensor(cu.grad_to_nodes_scale * cfg.tape.cu_scale, device=dev)
        self._start(torch.ones(b, dtype=torch.bool, device=dev))
        self._write_obs(self.obs[0], None, None, None)

    # -- the Environment -------------------------------------------------------------
    def _start(self, ended: torch.Tensor) -> None:
        """New task instances in the lanes where `ended`: fresh a, b in n0, n1, their target, age 0."""
        torch.rand(self.b, 2, generator=self.gen, out=self.fresh)
        e = ended.unsqueeze(1)
        self.nodes[:, 0:2] = torch.where(e, self.fresh, self.nodes[:, 0:2])
        a, bb = self.fresh[:, 0], self.fresh[:, 1]
        self.target.copy_(torch.where(ended, torch.where(a > bb, 2 * a, bb / 2), self.target))
        self.age.masked_fill_(ended, 0.0)

    def _write_obs(self, out: torch.Tensor, prev: Optional[torch.Tensor], actions: Optional[torch.Tensor],
                   meta: Optional[Tuple[torch.Tensor, torch.Tensor]]) -> None:
        """The CU input into `out`: history (newest first), signals, visible nodes, meta."""
        n, h = self.n_actions, self.h
        out[:, :n].zero_()
        if actions is not None:
            out[:, :n].scatter_(1, actions.unsqueeze(1), 1.0)
            out[:, n:h] = prev[:, :h - n]
            out[:, -2] = meta[0]
            out[:, -1] = meta[1]
        out[:, h] = self.age == 0
        torch.div(self.age, self.timeout, out=out[:, h + 1])
        out[:, self.node_col:self.n3_col + 1] = self.nodes[:, self.vis]

    def epsilon(self) -> float:
        c = self.cfg.cu
        span = c.exploration_fraction * self.total
        progress = 1.0 if span <= 0 else min(1.0, self.iteration / span)
        return c.exploration_initial_eps + progress * (c.exploration_final_eps - c.exploration_initial_eps)

    # -- one iteration ------------------------------------------------------------
    def step(self) -> None:
        """One lockstep iteration of B lanes (see the module docstring)."""
        b, cu = self.b, self.cfg.cu
        obs, nxt = self.obs[self.cur], self.obs[1 - self.cur]
        learning = self.iteration >= cu.learning_starts

        # 1. act. From learning_starts on, the forward keeps its graph for the CU's gradient into pu0: the CU
        # reads n3 as stored + (pu0's recompute on its stored inputs - its value), which is the stored value
        # forward and pu0's recomputed graph backward, so one backward pass takes the TD loss into pu0.
        src_obs, written_obs = self.src[self.src_cur], self.src_written[self.src_cur]
        if learning:
            c = self.n3_col
            y0 = _mlp(src_obs, self.pus[0])
            link = y0 - y0.detach()
            if not self.all_written:
                link = link * written_obs
            q = _mlp(torch.cat([obs[:, :c], obs[:, c:c + 1] + link, obs[:, c + 1:]], 1), self.q)
            greedy = q.detach().argmax(1)
        else:
            with torch.no_grad():
                greedy = _mlp(obs, self.q).argmax(1)
        torch.rand(b, generator=self.gen, out=self.uniform)
        explored = self.uniform < self.epsilon()
        torch.randint(self.n_actions, (b,), generator=self.gen, out=self.random_actions)
        actions = torch.where(explored, self.random_actions, greedy)

        # 2. each chosen PU once, on the lanes that chose it
        roots: List[torch.Tensor] = []
        grads: List[torch.Tensor] = []
        params: List[torch.Tensor] = []
        self.submitted.zero_()
        self.reward.zero_()
        self.ok.zero_()
        if b == 1:
            groups = [(int(actions.item()), None)]
        else:
            groups = [(a, lanes) for a in range(self.n_actions)
                      if (lanes := (actions == a).nonzero().squeeze(1)).numel()]
        n_submitted = 0
        for a, lanes in groups:
            if a == 0:
                self._run_pu0(lanes, src_obs, written_obs)
            else:
                n_submitted += b if lanes is None else lanes.numel()
                y, err = self._run_submit(a, lanes)
                roots.append(y)
                grads.append(err)
                params += self.pus[a]
        if n_submitted:  # the node loss sum (v - target)^2 / n over the submitting lanes, and d/dv of it
            scale = self.cfg.tape.env_scale / n_submitted
            self.node_loss = sum(e.square().sum() for e in grads) * scale
            grads = [e.mul_(2.0 * scale) for e in grads]

        # 3. the Environment: timeout, task ends, new instances, the next CU input
        self.age += 1
        timed_out = (self.age >= self.timeout) & ~self.submitted
        self.reward.add_(timed_out, alpha=self.timeout_penalty)
        ended = self.submitted | timed_out
        self.successes += self.ok.sum()
        self.tasks += ended.sum()
        if b > 1 or bool(ended):  # one lane: skip the restart when nothing ended (a free sync on a CPU)
            self._start(ended)
        self._write_obs(nxt, obs, actions, (explored, actions == greedy))
        discount = (~ended) * cu.gamma

        # 4. the CU's TD loss of the current transitions: through the act graph into pu0 (not into Q)
        if learning:
            with torch.no_grad():
                td_target = self.reward + discount * _mlp(nxt, self.q_target).max(1).values
            roots.append(F.smooth_l1_loss(q.gather(1, actions.unsqueeze(1)).squeeze(1), td_target))
            grads.append(self.cu_grad_scale)
            params += self.pus[0]

        # 5. one backward for the node loss and the CU gradient, into the PUs only; the PUs' Adam step
        if roots:
            torch.autograd.backward(roots, grads, inputs=params)
            if self.clip is not None:
                for ps in self.pus:
                    if ps[0].grad is not None:
                        clip_grad_norm(ps, self.clip)
            self.pu_adam.step()

        # 6. replay and the DQN update(s)
        self._remember(obs, actions, self.reward, nxt, discount)
        before, self.iteration = self.iteration, self.iteration + b
        if self.iteration >= cu.learning_starts and self.size >= cu.batch_size:
            due = self.iteration // cu.train_freq - before // cu.train_freq
            for _ in range(due * cu.gradient_steps):
                self._train()
            if self.iteration // cu.target_update_interval != before // cu.target_update_interval:
                torch._foreach_copy_(self.q_target, [p.detach() for p in self.q])
        self.cur = 1 - self.cur

    def _run_pu0(self, lanes: Optional[torch.Tensor], src_obs: torch.Tensor, written_obs: torch.Tensor) -> None:
        """pu0 (no autograd: its gradient comes later, by recompute) writes n3; remember its inputs."""
        src_next, written_next = self.src[1 - self.src_cur], self.src_written[1 - self.src_cur]
        with torch.no_grad():
            if lanes is None:
                x = self.nodes[:, 0:2]
                self.nodes[:, 2:3] = _mlp(x, self.pus[0])
                src_next.copy_(x)
                written_next.fill_(1.0)
                self.all_written = True
            else:
                x = self.nodes[lanes, 0:2]
                self.nodes[:, 2:3].index_copy_(0, lanes, _mlp(x, self.pus[0]))
                src_next.copy_(src_obs).index_copy_(0, lanes, x)
                written_next.copy_(written_obs).index_fill_(0, lanes, 1.0)
        self.src_cur = 1 - self.src_cur

    def _run_submit(self, a: int, lanes: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """pu1 or pu2 (autograd on: its node loss comes this iteration) writes n2 and is scored.

        Returns the PU's output (with its graph) and the error v - target [n, 1]."""
        col = COLUMN[PU_WIRING[f"pu{a}"][0][0]]
        if lanes is None:
            x, target = self.nodes[:, col:col + 1].clone(), self.target.clone()  # both change in place later
        else:
            x, target = self.nodes[lanes, col:col + 1], self.target[lanes]
        y = _mlp(x, self.pus[a])
        v = y.detach().squeeze(1)
        err = v - target
        ok = err.abs() < self.tolerance
        reward = self.success * torch.exp(-err.square() / self.width) + self.bonus * ok
        if lanes is None:
            self.nodes[:, 3] = v
            self.reward.copy_(reward)
            self.ok.copy_(ok)
            self.submitted.fill_(True)
        else:
            self.nodes[:, 3].index_copy_(0, lanes, v)
            self.reward.index_copy_(0, lanes, reward)
            self.ok.index_copy_(0, lanes, ok)
            self.submitted.index_fill_(0, lanes, True)
        return y, err.unsqueeze(1)

    def _remember(self, obs: torch.Tensor, actions: torch.Tensor, reward: torch.Tensor, nxt: torch.Tensor,
                  discount: torch.Tensor) -> None:
        """Store B transitions in the ring buffer."""
        b, cap = self.b, self.r_obs.shape[0]
        if self.cursor + b <= cap:
            idx = slice(self.cursor, self.cursor + b)
        else:
            idx = (self.lane_range + self.cursor) % cap
        self.r_obs[idx] = obs
        self.r_next[idx] = nxt
        self.r_act[idx] = actions
        self.r_rew[idx] = reward
        self.r_disc[idx] = discount
        self.cursor = (self.cursor + b) % cap
        self.size = min(self.size + b, cap)

    def _train(self) -> None:
        """One DQN update on a replay batch: Huber TD loss against the target network, clip, fused Adam."""
        idx = torch.randint(self.size, (self.batch_idx.shape[0],), generator=self.gen, out=self.batch_idx)
        obs, nxt = self.r_obs[idx], self.r_next[idx]
        with torch.no_grad():
            y = self.r_rew[idx] + self.r_disc[idx] * _mlp(nxt, self.q_target).max(1).values
        q = _mlp(obs, self.q).gather(1, self.r_act[idx].unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, y)
        loss.backward()
        clip_grad_norm(self.q, self.cfg.cu.max_grad_norm)
        self.q_adam.step()
        self.td_loss = loss.detach()
