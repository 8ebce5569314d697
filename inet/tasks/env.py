"""Environments: tasks that write input nodes, read output nodes, reward the CU and give nodes losses.

A subclass implements `start(lanes)` (begin new task instances: draw a problem,
write its inputs) and `respond(step)` (look at what happened this iteration:
call `finish` for lanes that submitted, `add_loss` for nodes with a target). The
base class handles what every task shares: per-lane task-instance age, the
timeout and its penalty, the per-iteration cost, the `terminal` flag that cuts TD
bootstrapping, the signals `new_instance` and `age` (age / budget), and task-end records
for the KPIs. A task instance ends only through `finish`, `fail` or the timeout;
the next one starts at once in that lane (the IN never stops).

KPIs (inet/tasks/kpi_registry.py): the base class declares those every task has in
`kpis`; a subclass adds its own in its own `kpis` (values from `metrics()`, or
per task instance through `finish(..., extras)`), and those that depend on the
configuration in `config_kpis(run)`.

For the run viewer (inet/run/trace.py, `inet viz`), a task may describe its task
instance (`describe`), declare the functions its route's PUs should compute
(`target_functions`) and the ranges its nodes' values lie in (`value_ranges`);
the defaults work for any task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import torch

from ..config import ConfigError, EnvConfig
from ..nodes import Nodes, every_lane, positions_by_value
from .kpi_registry import KPI, MAIN_TABLE, Panel

if TYPE_CHECKING:
    from ..config import RunConfig

KPI_FIGURE = "kpis"  # plots/kpis.png: the KPIs every task has, and a task's own beside them
TASK_SUCCESS_PANEL = Panel(KPI_FIGURE, "task success")
ITERATIONS_TO_CONVERGE = KPI(
    "iterations_to_converge", "first iteration after which task_success >= 0.95 over a full window and stays "
    "there to the end (null: never)", better="lower", integer=True, summary="end", table=MAIN_TABLE)


@dataclass
class TaskEnd:
    """Outcomes of the task instances that ended in one iteration (one entry per lane)."""

    success: torch.Tensor  # bool
    submitted: torch.Tensor  # bool: ended by a submit (not a timeout or invalid action)
    reward: torch.Tensor  # total reward of the instance
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)  # per-task KPIs (bool)
    lanes: torch.Tensor | None = None  # the lanes these instances ran in
    env: str = ""  # the Environment that posed them


@dataclass
class Step:
    """One lockstep iteration: the actions taken and what Environments report back."""

    nodes: Nodes
    actions: torch.Tensor  # [B] action index per lane
    written: Dict[str, List[int]]  # node -> lanes a PU wrote this iteration
    reward: torch.Tensor  # [B]
    terminal: torch.Tensor  # [B] bool
    losses: List[Tuple[str, List[int], torch.Tensor, List[int], Callable]] = field(default_factory=list)
    ended: List[TaskEnd] = field(default_factory=list)
    env_reward: Dict[str, torch.Tensor] = field(default_factory=dict)  # each Environment's part of `reward`
    # [B] what each lane ran, by its index in the Environments' `action_index`: `actions`, except where a node
    # action (cu.node_actions, inet/node_actions.py) ran the writer its rater picked: that PU's index
    ran: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.ran is None:
            self.ran = self.actions

    def add_loss(self, node: str, lanes: List[int], loss: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Put a loss on `node` in `lanes`: `loss(value[len(lanes), *shape])` -> the per-lane losses
        [len(lanes)], or their sum. A function of the value alone (its targets fixed when the loss is put), so
        node actions can ask it what a candidate the rater passed over would have got; a sum over several lanes
        cannot be split, and teaches the rater nothing (nor can a shortcut's `max_loss` judge it, inet/shortcut.py).

        The node's current value and writers are taken now, so later writes this
        iteration (a restarted task instance) do not change what the loss sees.
        """
        value = self.nodes.values[node]
        if not every_lane(lanes, value.shape[0]):
            value = value[torch.tensor(lanes, device=value.device)]
        writers = self.nodes.writers[node]
        self.losses.append((node, lanes, value, list(map(writers.__getitem__, lanes)), loss))


@dataclass(frozen=True)
class TargetFunction:
    """A function a task knows one of its PUs should compute, drawn beside the PU's in the viewer.

    `inputs` are the nodes the PU reads, in order (None: any node, e.g. a memory the
    task does not name); `fn` maps one tensor [n, 1] per input to the target [n, 1].
    """

    pu: str
    inputs: Tuple[Optional[str], ...]
    fn: Callable[..., torch.Tensor]
    label: str


def lanes_by_action(actions: torch.Tensor) -> Dict[int, List[int]]:
    """The lanes that chose each action, by action index in ascending order (the order actions run in)."""
    return positions_by_value(actions)


class Environment:
    """Base class of all tasks. `actions` are the env actions the CU may pick."""

    actions: Tuple[str, ...] = ()
    task_signals: Tuple[str, ...] = ()  # names of the signals a subclass appends (extra_signals)
    # The KPIs of every task (values: inet/tasks/kpis.py); a subclass's `kpis` adds its own to these.
    kpis: Tuple[KPI, ...] = (
        KPI("task_success", "fraction of the last kpi_window task instances solved", better="higher", rate=True,
            plot=TASK_SUCCESS_PANEL, table=MAIN_TABLE),
        KPI("reward_per_iteration", "mean CU reward over the last kpi_window iterations", better="higher",
            plot=Panel(KPI_FIGURE, "reward per iteration"), table=MAIN_TABLE),
        KPI("reward_per_task", "mean total reward of the submitted task instances among the last kpi_window",
            better="higher", plot=Panel(KPI_FIGURE, "reward per task instance"), table=MAIN_TABLE),
        ITERATIONS_TO_CONVERGE,
        KPI("tasks", "task instances ended so far", integer=True, tag_group="rollout"),
    )

    def __init__(self, name: str, cfg: EnvConfig, nodes: Nodes, lanes: int, device: torch.device,
                 generator: torch.Generator):
        self.name = name
        self.cfg = cfg
        self.reward = cfg.reward
        self.params = dict(cfg.params)
        self.nodes = nodes
        self.lanes = lanes
        self.device = device
        self.gen = generator
        self.age = torch.zeros(lanes, dtype=torch.long, device=device)
        self.task_reward = torch.zeros(lanes, device=device)
        self.all_lanes = torch.arange(lanes, device=device)
        self._rejected = torch.zeros(lanes, dtype=torch.bool, device=device)  # this iteration's invalid env actions
        self._any_rejected = False  # `reject` was called this iteration (no host sync when it was not)
        names = ("new_instance", "age", *self.task_signals)
        chosen = names if cfg.signals is None else cfg.signals
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ConfigError(f"envs.{name}.signals: unknown signal '{unknown[0]}'; choose from {list(names)}")
        self.signal_names = tuple(chosen)
        self._signal_columns = [names.index(n) for n in chosen]
        self.starting = False  # True while `feedback` starts new task instances (the trace attributes writes by it)

    @property
    def n_signals(self) -> int:
        return len(self.signal_names)

    # -- to implement -------------------------------------------------------------
    def start(self, lanes: torch.Tensor) -> None:
        """Begin a new task instance in each of `lanes` (write its inputs into nodes)."""
        raise NotImplementedError

    def respond(self, step: Step) -> None:
        """React to this iteration's actions and node writes: `finish`, `fail`, `add_loss`."""
        raise NotImplementedError

    def act(self, action: str, lanes: torch.Tensor, step: Step) -> None:
        """Perform env action `action` in `lanes` (only for tasks that declare `actions`)."""
        raise NotImplementedError(f"{type(self).__name__} declares no action '{action}'")

    def extra_signals(self) -> torch.Tensor:
        """[B, len(task_signals)] the task's own signals."""
        return torch.zeros(self.lanes, 0, device=self.device)

    def budget(self) -> torch.Tensor | float:
        """Iterations each lane's task instance may take before it times out ([B] or a scalar)."""
        return self.reward.timeout

    def expected_length(self) -> torch.Tensor | float:
        """Iterations the current task instance of each lane needs when solved well ([B] or a scalar)."""
        return 1.0

    def task_ended(self, lanes: torch.Tensor, success: torch.Tensor) -> None:
        """Called with the lanes whose task instance just ended (in lane order), before new ones start."""

    def metrics(self) -> Dict[str, float]:
        """Values of the task's own KPIs (those it declares in `kpis`), e.g. a curriculum's state."""
        return {}

    def config_kpis(self, run: "RunConfig") -> Tuple[KPI, ...]:
        """KPIs that exist only in some configurations (declared beside the class's `kpis`)."""
        return ()

    def max_trained_length(self) -> float:
        """The longest task length trained on so far (inf: the task has no lengths); evaluation
        counts longer evaluated lengths as extrapolation."""
        return float("inf")

    # -- for the run viewer (inet/run/trace.py) --------------------------------------
    def describe(self, lane: int) -> Dict[str, object]:
        """The task instance in `lane`: `inputs` (name -> value) and the `target` to submit (None: unknown).

        The default shows the values of the nodes the Environment writes (`inputs`),
        which is what a new task instance is made of; a task overrides it to name them.
        """
        return {"inputs": {n: self.nodes.values[n][lane].flatten().tolist() for n in self.cfg.inputs},
                "target": None}

    def target_functions(self) -> List[TargetFunction]:
        """The functions this task's PUs should compute, where the task knows them (default: none)."""
        return []

    def value_ranges(self) -> Dict[str, Tuple[float, float]]:
        """The range of values each node the task knows takes (the viewer draws PU functions over it;
        a node not listed is drawn over [0, 1])."""
        return {}

    # -- shared machinery ---------------------------------------------------------
    def require_scalar_io(self, inputs: int, outputs: int, usage: str) -> None:
        """Check that the config names `inputs` input and `outputs` output nodes, each of shape [1]."""
        key = f"envs.{self.name}"
        if len(self.cfg.inputs) != inputs or len(self.cfg.outputs) != outputs:
            raise ConfigError(f"{key}: {usage}")
        for n in (*self.cfg.inputs, *self.cfg.outputs):
            if self.nodes.shapes[n] != (1,):
                raise ConfigError(f"{key}: node '{n}' must have shape [1], has {list(self.nodes.shapes[n])}")

    def bind(self, action_index: Dict[str, int]) -> None:
        """Learn every action's index (env actions and PUs; with node actions, the PUs' indices follow the CU's
        actions and appear only in `Step.ran`); a subclass may check names here."""
        self.action_index = dict(action_index)

    def require_route(self, route: Dict[str, str]) -> None:
        """Check that every PU a task's `params.route` names (role -> action) is an action; call after `bind`."""
        for role, pu in route.items():
            if pu not in self.action_index:
                raise ConfigError(f"envs.{self.name}.params.route.{role}: '{pu}' is not an action; "
                                  f"choose from {list(self.action_index)}")

    def reset(self) -> None:
        self.age.zero_()
        self.task_reward.zero_()
        self.start(self.all_lanes)

    def random(self, *shape: int) -> torch.Tensor:
        """U(0, 1) from this Environment's own generator."""
        return torch.rand(*shape, generator=self.gen, device=self.gen.device).to(self.device)

    def signals(self) -> torch.Tensor:
        """[B, n_signals]: the configured `signals` (by default new_instance, age / budget, then the task's own)."""
        return self._signals(self.age, self.extra_signals)

    def _signals(self, age: torch.Tensor, extra: Callable[[], torch.Tensor]) -> torch.Tensor:
        base = torch.stack([(age == 0).float(), age.float() / self.budget()], 1)
        every = base if not self.task_signals else torch.cat([base, extra()], 1)
        return every if self.cfg.signals is None else every[:, self._signal_columns]

    def quiet_signals(self) -> Optional[torch.Tensor]:
        """[B, len(task_signals)] the task's own signals after an iteration in which only a PU that writes none of
        `outputs` ran, from the state now; None where the task cannot tell (then what-ifs are refused). A task with
        signals of its own overrides it."""
        return None if self.task_signals else torch.zeros(self.lanes, 0, device=self.device)

    def quiet_step(self) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """What the next iteration would bring if the CU ran a PU that writes none of `outputs` (a what-if,
        inet/cu/what_if.py), from the state now, changing nothing: the reward [B], whether the task instance would
        end (its timeout) [B] bool, and the signals the CU would see [B, n_signals]. None where the task cannot
        tell. It holds for a task whose `respond` rewards and ends task instances only on writes to its outputs;
        one that rewards some PU runs (route shaping) must return None."""
        extra = self.quiet_signals()
        if extra is None:
            return None
        age = self.age + 1
        ended = age >= self.budget()
        reward = torch.full((self.lanes,), float(self.reward.per_iteration), device=self.device)
        reward = torch.where(ended, reward + self.reward.timeout_penalty, reward)
        return reward, ended, self._signals(age, lambda: extra)

    def finish(self, lanes: torch.Tensor, success: torch.Tensor, reward: torch.Tensor,
               extras: Dict[str, torch.Tensor] | None = None) -> None:
        """End the task instances in `lanes` by a submit with the given success and reward."""
        self._ended[lanes] = True
        self._submitted[lanes] = True
        self._success[lanes] = success
        self._r[lanes] += reward
        for k, v in (extras or {}).items():
            self._extras.setdefault(k, torch.zeros(self.lanes, dtype=torch.bool, device=self.device))[lanes] = v

    def reject(self, lanes: torch.Tensor) -> None:
        """An env action that is invalid in `lanes` (e.g. `next` past the end): those task instances fail with
        `reward.invalid_action` once this iteration's rewards are collected, before `respond`."""
        self._rejected[lanes] = True
        self._any_rejected = True

    def fail(self, lanes: torch.Tensor, penalty: float) -> None:
        """End the task instances in `lanes` as failures (invalid action, timeout)."""
        self._ended[lanes] = True
        self._r[lanes] += penalty

    def feedback(self, step: Step) -> None:
        """Collect this iteration's rewards, task ends and losses into `step`; restart ended lanes."""
        b, dev = self.lanes, self.device
        self._r = torch.full((b,), float(self.reward.per_iteration), device=dev)
        self._ended = torch.zeros(b, dtype=torch.bool, device=dev)
        self._submitted = torch.zeros(b, dtype=torch.bool, device=dev)
        self._success = torch.zeros(b, dtype=torch.bool, device=dev)
        self._extras: Dict[str, torch.Tensor] = {}
        if self._any_rejected:
            if self._rejected.any():
                self.fail(self._rejected.nonzero().squeeze(1), self.reward.invalid_action)
                self._rejected.zero_()
            self._any_rejected = False
        self.respond(step)
        self.age += 1
        timed_out = (self.age >= self.budget()) & ~self._ended
        if timed_out.any():
            self.fail(timed_out.nonzero().squeeze(1), self.reward.timeout_penalty)
        self.task_reward += self._r
        step.reward += self._r
        step.env_reward[self.name] = self._r
        if self._ended.any():
            lanes = self._ended.nonzero().squeeze(1)
            step.terminal |= self._ended
            step.ended.append(TaskEnd(self._success[lanes], self._submitted[lanes], self.task_reward[lanes],
                                      {k: v[lanes] for k, v in self._extras.items()}, lanes, self.name))
            self.task_ended(lanes, self._success[lanes])
            self.task_reward[lanes] = 0.0
            self.age[lanes] = 0
            self.starting = True
            self.start(lanes)
            self.starting = False

    def state_dict(self) -> dict:
        return {"age": self.age.clone(), "task_reward": self.task_reward.clone(), "gen": self.gen.get_state(),
                "task": self.task_state()}

    def load_state_dict(self, state: dict) -> None:
        self.age = state["age"].clone()
        self.task_reward = state["task_reward"].clone()
        self.gen.set_state(state["gen"])
        self.load_task_state(state["task"])

    def task_state(self) -> dict:
        """The subclass's own per-lane task-instance state (targets, positions...)."""
        return {}

    def load_task_state(self, state: dict) -> None:
        pass
