"""The config schema (dataclasses) and the checks that run before iteration 0.

Hydra merges YAML onto these dataclasses, so an unknown key or a wrong type is
rejected by OmegaConf with the key's path. `validate` adds the checks a type
cannot express (ranges, node references) and names the offending key too.
Library code receives these dataclasses as plain objects, never Hydra globals.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .node_kinds import KINDS, check_node

CU_INPUT_PARTS = ("history", "signals", "nodes", "meta")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
REWARD_SHAPES = ("exp", "binary")
NONFINITE_POLICIES = ("raise", "skip")
CURRICULUM_MODES = ("add", "double")
CURIOSITY_KINDS = ("none", "forward", "rnd", "spread")
EXPLORATION_KINDS = ("epsilon", "counts", "uncertainty")


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the fix."""


@dataclass
class NodeConfig:
    """A named slot holding a tensor of fixed shape per lane."""

    shape: List[int] = field(default_factory=lambda: [1])  # the tensor shape per lane, e.g. [1] or [4, 2]
    cu_visible: bool = False  # the CU sees this node's value in its input
    # [start, stop) slice of the flattened value that the CU sees; null = all of it.
    cu_view: Optional[List[int]] = None
    # paper 5.2.2.5: snap every written value to the nearest of these (straight-through gradient); null = off
    round_to: Optional[List[float]] = None
    # lane-iteration at which rounding starts (straight-through rounding from scratch hides
    # the continuous signal a PU learns from; start it once the PUs are roughly right)
    round_from: int = 0
    # what the node stores (inet/node_kinds.py): vector (one value), accumulating, memory or combiner
    kind: str = "vector"
    capacity: Optional[int] = None  # accumulating: the most entries it holds
    slots: Optional[int] = None  # memory: the number K of addressable slots
    address: Optional[str] = None  # memory: the vector node of K values whose argmax is the slot read or written
    k: Optional[int] = None  # combiner: how many of the last values written it combines


@dataclass
class PretrainConfig:
    """A supervised phase for one PU before the IN starts (steps: 0 = off)."""

    data: str = ""  # import path of fn(batch_size, generator) -> (inputs, targets)
    steps: int = 0  # supervised steps before the IN starts (0 = off)
    batch_size: int = 64  # samples per supervised step
    lr: float = 1e-3  # Adam learning rate of the supervised phase


@dataclass
class ShortcutConfig:
    """Paper 6.7 (inet/shortcut.py): this PU (the student) learns to predict what the other PUs writing its
    output node (the teachers, the last steps of established chains) write there."""

    # weight of the loss 0.5 ||student(reads) - teacher's value||^2 on every teacher write of the node (0 = off)
    weight: float = 0.0
    # only teacher values whose Environment loss, per lane, is <= this become targets (null: every value)
    max_loss: Optional[float] = None


@dataclass
class PUConfig:
    """A Processing Unit: an nn.Module reading `inputs` nodes and writing `outputs` nodes."""

    kind: str = "mlp"  # a name in inet/pus.py PU_KINDS: mlp, gru, mover (copies a node), constant, conv or custom
    inputs: List[str] = field(default_factory=list)  # the nodes the PU reads
    outputs: List[str] = field(default_factory=list)  # the nodes the PU writes
    hidden: List[int] = field(default_factory=lambda: [32])  # hidden layer sizes (mlp; conv: its MLP head)
    activation: str = "relu"  # relu, tanh, sigmoid or gelu
    value: Optional[List[float]] = None  # `constant`: initial value (default zeros)
    trainable: bool = True  # False: the PU has no learnable parameters
    freeze: bool = False  # True: keep learnable parameters fixed (e.g. after `pretrained`)
    pretrained: Optional[str] = None  # path of a state_dict saved with torch.save
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # a supervised phase before the IN starts
    lr: Optional[float] = None  # overrides pu_optim.lr for this PU
    _target_: Optional[str] = None  # `custom`: import path of an nn.Module class
    # the kind's own options: `custom`: constructor kwargs; `conv`: channels, kernel, pool (inet/pu_conv.py)
    params: Dict[str, Any] = field(default_factory=dict)
    shortcut: ShortcutConfig = field(default_factory=ShortcutConfig)  # paper 6.7: learn the chain that writes its output


@dataclass
class RewardConfig:
    """Reward terms of one Environment (paper 5.2.2.1)."""

    success: float = 1.0  # reward for a correct submit (graded tasks: the scale of the graded part)
    bonus: float = 0.0  # graded tasks: added when the submit succeeds (|err| < tolerance)
    wrong_answer: float = 0.0  # reward for a wrong submit
    invalid_action: float = -1.0  # reward for an action that cannot run now
    timeout: int = 10  # iterations a task instance may take before it fails
    timeout_penalty: float = -1.0  # reward when the action budget runs out
    timeout_per_item: float = 0.0  # the budget grows by this per item of the instance (reduce: 2 per item)
    per_iteration: float = 0.0  # added every iteration (a cost when negative)
    shape: str = "exp"  # graded tasks: exp -> success*exp(-err^2/width); binary
    width: float = 0.01  # graded tasks, shape exp: the width of the reward bump


@dataclass
class CurriculumConfig:
    """The task length over training (paper 5.2.2.2); `enabled: false` keeps `start_length` fixed.

    After `promote_after` successes in a row the length grows (`mode` add: + `step`;
    double: x2) up to `max_length`; after `demote_after` failures in a row it shrinks
    the same way down to `min_length`. With `hysteresis: h`, the h task instances
    after any change count towards neither streak.
    """

    enabled: bool = False  # grow the task length with success (false: start_length throughout)
    start_length: int = 1  # the task length at iteration 0
    min_length: int = 1  # the shortest length a demotion reaches
    max_length: int = 64  # the longest length a promotion reaches
    promote_after: int = 10  # successes in a row that lengthen the task
    demote_after: int = 20  # failures in a row that shorten the task
    mode: str = "add"  # add (+ step) or double (x2) per change
    step: int = 1  # mode add: the length change
    hysteresis: int = 0  # task instances after a change that count towards neither streak
    # fraction of task instances whose length is drawn uniformly from [min_length, current length]
    # (rehearsal of shorter lengths, so that the greedy CU does not forget them)
    mix: float = 0.0


@dataclass
class TrainingWheelsConfig:
    """A scripted teacher's reward for the first `iterations` (paper 5.1.3).

    `mode: replace` (the paper's): the CU's reward is 1 for the teacher's action, else 0.
    `mode: anneal`: the task's own reward plus `1 - iteration/iterations` for the
    teacher's action, so the CU's values move to the task's scale gradually instead
    of being relearned when the wheels come off.
    `mode: lead`: the teacher's action replaces the CU's greedy one (its random
    exploration actions stay) and the reward is the task's own, so the PUs train on
    the teacher's route and the CU learns the task's values from it, off-policy.

    Each Environment has its own (`envs.<env>.training_wheels`); the top-level
    `training_wheels` is the only Environment's. With several Environments a
    teacher shapes its own Environment's reward (replace, anneal); leading teachers
    take turns: at lockstep k, lane l follows the ((k + l) mod m)-th of the m that lead.
    """

    teacher: Optional[str] = None  # import path of fn(env) -> LongTensor[B] of action indices (env.action_index)
    iterations: int = 0  # iterations with the teacher (0 = off)
    mode: str = "replace"  # replace, anneal or lead (see the class docstring)


@dataclass
class EnvConfig:
    """An Environment: `_target_` names its class; it writes `inputs` and reads `outputs`."""

    _target_: str = ""  # import path of the Environment class, e.g. inet.tasks.multitask.Multitask
    inputs: List[str] = field(default_factory=list)  # the nodes the Environment writes each new task instance into
    outputs: List[str] = field(default_factory=list)  # the nodes the Environment reads the submitted answer from
    reward: RewardConfig = field(default_factory=RewardConfig)  # its reward terms (the reward group: reward@envs.<env>.reward=<option>)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)  # its task length over training (the curriculum group)
    params: Dict[str, Any] = field(default_factory=dict)  # the Environment's own options
    # the signals the CU sees, by name (default: all: new_instance, age, then the task's own)
    signals: Optional[List[str]] = None
    training_wheels: TrainingWheelsConfig = field(default_factory=TrainingWheelsConfig)  # this Environment's teacher


@dataclass
class CUConfig:
    """The Control Unit: a learner, DQN by default. Hyperparameter names follow Stable-Baselines3; the
    DQN family (DQN, QR-DQN) uses all of them, a user's learner those it needs plus `params`.

    All counts (learning_starts, train_freq, target_update_interval, buffer) are in
    lane-iterations, i.e. environment interactions summed over lanes.
    """

    # the learner class (inet/cu/protocol.py): inet.cu.dqn.DQN, inet.cu.qr_dqn.QRDQN, or a user's own
    _target_: str = "inet.cu.dqn.DQN"
    params: Dict[str, Any] = field(default_factory=dict)  # the learner's own options (QR-DQN: n_quantiles, kappa)
    inputs: List[str] = field(default_factory=lambda: list(CU_INPUT_PARTS))  # the parts of the CU's input vector: history, signals, nodes, meta
    history_length: int = 2  # past actions in the CU's input
    hidden: List[int] = field(default_factory=lambda: [64, 64])  # hidden layer sizes of the Q-network
    double: bool = False  # Double DQN targets
    dueling: bool = False  # a dueling Q-network head
    learning_rate: float = 1e-3  # Adam learning rate of the Q-network
    buffer_size: int = 10_000  # replay buffer capacity
    learning_starts: int = 100  # iterations before the first update
    batch_size: int = 32  # transitions per update
    gamma: float = 0.9  # discount factor
    n_step: int = 1  # TD targets over n iterations of rewards (cut at task-instance ends)
    train_freq: int = 1  # iterations between updates
    gradient_steps: int = 1  # updates each time
    target_update_interval: int = 250  # iterations between target-network updates
    tau: float = 1.0  # target update rate (1 = hard copy)
    # Short: a long uniformly random phase trains every PU on the mixture of all targets,
    # which seeds the wrong-partition local optimum in multitask (see README).
    exploration_fraction: float = 0.02
    exploration_initial_eps: float = 1.0  # epsilon at iteration 0
    exploration_final_eps: float = 0.01  # epsilon after exploration_fraction of the run
    # paper 6.2: epsilon (the schedule above), counts (act on Q + bonus / sqrt(1 + times the action was taken)),
    # or uncertainty (act on Q + bonus x the spread of its return quantiles; cu=qr_dqn); the last two keep
    # epsilon at exploration_final_eps
    exploration: str = "epsilon"
    exploration_bonus: float = 1.0  # the bonus scale of exploration=counts / uncertainty
    # paper 6.4 (b): weight of the self-imitation loss (Oh et al. 2018) on finished task instances' returns (0 = off)
    self_imitation: float = 0.0
    # paper 6.4 (c) (inet/cu/what_if.py): PUs simulated per lane after a real iteration, from its starting state, to
    # test whether running them instead would have led somewhere the CU values more; those that would are stored in
    # its replay (0 = off)
    what_if: int = 0
    what_if_interval: int = 1  # lane-iterations between what-if tests
    max_grad_norm: float = 10.0  # gradient norm clip of the Q-network
    grad_to_nodes: bool = True  # backpropagate the TD loss into CU-visible nodes
    grad_to_nodes_scale: float = 1.0  # scale of the TD loss gradient into CU-visible nodes
    # import path of fn(env) -> LongTensor[B]: a scripted CU that replaces the DQN (no learning); with several
    # Environments it is given the first
    script: Optional[str] = None
    # paper 5.2.2.3: divide epsilon by the expected iterations of each lane's task instance
    epsilon_by_task_length: bool = False
    # PopArt (van Hasselt et al. 2016): each value head (one per Environment) learns targets normalised by
    # running statistics, and acting sums the normalised values, so no Environment's reward scale
    # dominates the policy or the gradients (inet/cu/popart.py; DQN only)
    popart: bool = False
    popart_beta: float = 1e-3  # step size of the running mean and second moment of each head's targets
    # paper 6.7 (inet/node_actions.py): one action per node some PU writes (`node:<n>`) instead of one per PU;
    # it runs all the node's writers and a learned rater picks the value written
    node_actions: bool = False
    node_rater_epsilon: float = 0.1  # the share of node actions whose value is a uniformly drawn writer's
    node_rater_lr: float = 1e-3  # Adam learning rate of the raters
    node_rater_hidden: List[int] = field(default_factory=lambda: [32])  # each rater's hidden layer sizes
    # the rater also sees the values the writers read (false: only the candidate value and which PU wrote it)
    node_rater_context: bool = True


@dataclass
class TapeConfig:
    """How node losses travel back through recorded PU runs (DESIGN.md section 5)."""

    horizon: int = 4  # how many records deep a loss reaches
    env_scale: float = 1.0  # scale of gradients from Environment losses
    cu_scale: float = 1.0  # scale of gradients from the CU's TD loss
    depth_decay: float = 1.0  # gradient factor per record of depth beyond the first
    # which parameters a record's recompute uses: the PU's current ones (cheap), or the ones it ran with
    # (`stored`: exact when the PU stepped between the run and a later loss; a copy per PU per step)
    recompute: str = "current"


@dataclass
class PUOptimConfig:
    """The optimizer of all PUs (Adam, one step per iteration that produced gradients)."""

    # Adam on single-sample losses has a noise floor of about lr per parameter; 3e-4 lets
    # multitask PUs reach the 0.05 tolerance (1e-3 plateaued near 90% task success).
    lr: float = 3e-4
    clip_grad_norm: Optional[float] = None  # per-PU gradient norm clip
    # paper 6.1: damp a PU's gradient to `guard` x its running average norm (null = off)
    guard: Optional[float] = None
    guard_beta: float = 0.99  # decay of the guard's running average norm (and use_guard's)
    # paper 6.1 per use (inet/protect.py): weight on the gradient through a PU run the CU took by exploration (1 = off)
    random_use_scale: float = 1.0
    use_guard: Optional[float] = None  # damp a use's gradient to `use_guard` x the PU's running norm per use (null = off)
    use_normalise: bool = False  # rescale every use's gradient from Environment losses to unit norm (3.1.2; inet/protect.py)
    # paper 6.4 (a) (inet/pu_replay.py): pairs (inputs, output - replay_step x gradient) replayed per PU step (0 = off)
    replay: int = 0
    replay_size: int = 1000  # pairs kept per PU
    replay_step: float = 0.5  # the target's step along the gradient (0.5: a squared error's minimum)


@dataclass
class EvaluationConfig:
    """Greedy evaluation every `interval` lane-iterations (0 = off): `instances` fresh task
    instances at each of `lengths`, no exploration, no learning (DESIGN.md section 7)."""

    interval: int = 0  # lane-iterations between greedy evaluations (0 = off)
    instances: int = 200  # task instances per length and evaluation
    lengths: List[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])  # the task lengths evaluated
    threshold: float = 0.95  # success that makes a length count towards max_length_reliable


@dataclass
class CuriosityConfig:
    """An intrinsic reward for the CU (paper 6.3; inet/cu/curiosity.py), added to every lane's reward.

    `kind: forward`: the error of a model predicting the CU-visible nodes after an action
    from the CU input and the action. `kind: rnd`: random network distillation (Burda et
    al. 2018) on the CU-visible nodes. Where no node is CU-visible, both model the next
    CU input instead. `kind: spread`: the drop of the return
    distribution's spread from one iteration to the next (a distributional CU, cu=qr_dqn).
    """

    kind: str = "none"  # none, forward, rnd or spread
    weight: float = 0.1  # the intrinsic reward's scale (after normalisation)
    decay_iterations: int = 0  # the weight falls linearly to 0 at this lane-iteration (0 = constant)
    hidden: List[int] = field(default_factory=lambda: [64])  # the forward / RND networks' hidden sizes
    lr: float = 1e-3  # Adam learning rate of the forward model / RND predictor
    normalise: bool = True  # divide the raw intrinsic reward by its running standard deviation


@dataclass
class TraceConfig:
    """Windows of iterations recorded into the run's trace/ for the viewer (`inet viz`).

    A window of `window` lane-iterations starts every `interval` lane-iterations
    (at 0, interval, 2*interval, ...); `lane` is the lane recorded. Action usage
    (all lanes) is counted over the whole run, one row per `log_interval`.
    """

    enabled: bool = True  # record windows for the viewer (inet viz)
    interval: int = 10_000  # lane-iterations between window starts
    window: int = 200  # lane-iterations recorded per window
    lane: int = 0  # the lane recorded


@dataclass
class AlarmsConfig:
    """Alarms the runner raises while a run trains (inet/run/alarms.py), checked once per `log_interval`.

    They go to alarms.json, TensorBoard (text `alarms`, scalars `alarms/<kind>`) and
    kpis.csv. Dead PU and usage collapse count the CU's own choices: lane-iterations
    whose action was an exploration draw are left out of both the shares and N.
    """

    dead_pu_iterations: int = 5000  # dead PU: raised for a PU the CU did not choose in this many of its choices (0 = off)
    collapse_share: float = 0.95  # usage collapse: the share of the CU's choices above which one action took over
    # usage collapse: raised once one action was above collapse_share in every log interval of this many of the
    # CU's choices in a row (0 = off)
    collapse_iterations: int = 5000
    # Q divergence: raised for |Q| above this multiple of max_reward / (1 - gamma), the most any return can be (null = off)
    q_margin: Optional[float] = 2.0
    max_reward: Optional[float] = None  # the largest |reward| of one iteration (null: from the Environments' reward terms)
    # PU drift: the relative change of a PU's outputs on fixed probe inputs between two log rows that is sharp (null = off)
    drift_change: Optional[float] = 0.5
    drift_usage_change: float = 0.2  # PU drift: the change of its usage share (absolute) that must come with a sharp change


@dataclass
class RunConfig:
    """Everything one run needs. The top-level keys users override most come first."""

    seed: int = 0  # seeds every random number generator of the run
    iterations: int = 20_000  # lane-iterations (environment interactions over all lanes)
    lanes: int = 1  # parallel copies of the environment stepped as one batch
    device: str = "cpu"  # cpu or cuda[:N]
    name: str = "default"  # the experiment's name, used in run directory names and reports
    threads: int = 1  # torch CPU threads (1 is fastest for inet's small nets)
    log_interval: int = 1000  # lane-iterations between rows of kpis.csv, TensorBoard points and progress lines
    kpi_window: int = 1000  # iterations for reward_per_iteration, tasks for task KPIs
    progress: bool = True  # show progress (a bar in a terminal, a line per log_interval otherwise)
    # write checkpoint.pt every this many lane-iterations (0: only at the end and on SIGTERM/SIGINT)
    checkpoint_interval: int = 10_000
    resume: bool = False  # continue the run in hydra.run.dir from its checkpoint.pt
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on GPU)
    nonfinite: str = "raise"  # a NaN/inf value, loss or gradient: raise (stop), or skip the update and count it
    nodes: Dict[str, NodeConfig] = field(default_factory=dict)  # the named tensor slots PUs and Environments read and write
    pus: Dict[str, PUConfig] = field(default_factory=dict)  # the Processing Units by name
    envs: Dict[str, EnvConfig] = field(default_factory=dict)  # the Environments (tasks) by name
    cu: CUConfig = field(default_factory=CUConfig)  # the Control Unit (the cu group: cu=dqn, cu=qr_dqn)
    tape: TapeConfig = field(default_factory=TapeConfig)  # how node losses reach the PUs that wrote them
    pu_optim: PUOptimConfig = field(default_factory=PUOptimConfig)  # the PUs' optimizer
    # the only Environment's teacher (paper 5.1.3); with several, set envs.<env>.training_wheels
    training_wheels: TrainingWheelsConfig = field(default_factory=TrainingWheelsConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)  # greedy evaluation during the run
    curiosity: CuriosityConfig = field(default_factory=CuriosityConfig)  # an intrinsic reward for the CU (paper 6.3)
    trace: TraceConfig = field(default_factory=TraceConfig)  # windows recorded for the viewer
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)  # dead PUs, usage collapse, Q divergence, PU drift


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_nodes_exist(cfg: RunConfig, key: str, names: List[str]) -> None:
    for name in names:
        _require(
            name in cfg.nodes,
            key,
            f"node '{name}' does not exist; declare it under `nodes:` or use one of {sorted(cfg.nodes)}",
        )


def validate(cfg: RunConfig) -> None:
    """Reject a config that cannot run, naming the key. Runs before any work."""
    _require(cfg.iterations >= 1, "iterations", f"must be >= 1, got {cfg.iterations}")
    _require(cfg.lanes >= 1, "lanes", f"must be >= 1, got {cfg.lanes}")
    _require(cfg.threads >= 1, "threads", f"must be >= 1, got {cfg.threads}")
    _require(cfg.log_interval >= 1, "log_interval", f"must be >= 1, got {cfg.log_interval}")
    _require(cfg.checkpoint_interval >= 0, "checkpoint_interval", f"must be >= 0 (0 = only at the end), got {cfg.checkpoint_interval}")
    _require(cfg.nonfinite in NONFINITE_POLICIES, "nonfinite", f"choose one of {list(NONFINITE_POLICIES)}, got '{cfg.nonfinite}'")
    _require(cfg.kpi_window >= 1, "kpi_window", f"must be >= 1, got {cfg.kpi_window}")
    _require(
        cfg.device == "cpu" or cfg.device.startswith("cuda"),
        "device",
        f"must be 'cpu' or 'cuda[:N]', got '{cfg.device}'",
    )
    _require(len(cfg.envs) >= 1, "envs", "declare at least one Environment")
    _require(len(cfg.pus) + len(cfg.envs) >= 1, "pus", "declare at least one PU")

    for name, node in cfg.nodes.items():
        key = f"nodes.{name}"
        _require(len(node.shape) >= 1, f"{key}.shape", "must have at least one dimension, e.g. [1]")
        _require(all(d >= 1 for d in node.shape), f"{key}.shape", f"sizes must be >= 1, got {node.shape}")
        if node.cu_view is not None:
            numel = 1
            for d in node.shape:
                numel *= d
            ok = len(node.cu_view) == 2 and 0 <= node.cu_view[0] < node.cu_view[1] <= numel
            _require(ok, f"{key}.cu_view", f"must be [start, stop) with 0 <= start < stop <= {numel}, got {node.cu_view}")
            _require(node.cu_visible, f"{key}.cu_view", "is set but cu_visible is false; set cu_visible: true")
        if node.round_to is not None:
            _require(len(node.round_to) >= 1, f"{key}.round_to", "list at least one value, e.g. [0, 1], or null for off")
        _require(node.round_from >= 0, f"{key}.round_from", f"must be >= 0, got {node.round_from}")
        problem = check_node(name, node, cfg.nodes)
        if problem:
            raise ConfigError(f"{key}.{problem[0]}: {problem[1]}")

    for name, pu in cfg.pus.items():
        key = f"pus.{name}"
        _require(len(pu.outputs) >= 1, f"{key}.outputs", "a PU must write at least one node")
        _check_nodes_exist(cfg, f"{key}.inputs", pu.inputs)
        _check_nodes_exist(cfg, f"{key}.outputs", pu.outputs)
        _require(pu.activation in ACTIVATIONS, f"{key}.activation", f"choose one of {list(ACTIVATIONS)}")
        _require(all(h >= 1 for h in pu.hidden), f"{key}.hidden", f"sizes must be >= 1, got {pu.hidden}")
        _require(pu.kind != "custom" or bool(pu._target_), f"{key}._target_", "kind custom needs `_target_: module.Class`")
        _require(pu.kind == "custom" or not pu._target_, f"{key}._target_", "is only used with kind: custom")
        _require(pu.kind == "constant" or len(pu.inputs) >= 1, f"{key}.inputs", "only a constant PU may read no nodes")
        if pu.lr is not None:
            _require(pu.lr > 0, f"{key}.lr", f"must be > 0, got {pu.lr}")
        if pu.pretrain.steps:
            _require(pu.pretrain.steps >= 0, f"{key}.pretrain.steps", "must be >= 0")
            _require(bool(pu.pretrain.data), f"{key}.pretrain.data", "name the data function, e.g. inet.tasks.multitask.double_data")
            _require(pu.pretrain.batch_size >= 1, f"{key}.pretrain.batch_size", "must be >= 1")

    _validate_batch_readers(cfg)
    _validate_shortcuts(cfg)
    for name, env in cfg.envs.items():
        key = f"envs.{name}"
        for part in ("inputs", "outputs"):
            for n in getattr(env, part):
                _require(n not in cfg.nodes or cfg.nodes[n].kind == "vector", f"{key}.{part}",
                         f"node '{n}' is {cfg.nodes[n].kind if n in cfg.nodes else ''}; Environments read and write vector nodes")
        _require(bool(env._target_), f"{key}._target_", "name the Environment class, e.g. inet.tasks.multitask.Multitask")
        _check_nodes_exist(cfg, f"{key}.inputs", env.inputs)
        _check_nodes_exist(cfg, f"{key}.outputs", env.outputs)
        _require(env.reward.timeout >= 1, f"{key}.reward.timeout", f"the action budget must be >= 1, got {env.reward.timeout}")
        _require(env.reward.shape in REWARD_SHAPES, f"{key}.reward.shape", f"choose one of {list(REWARD_SHAPES)}")
        _require(env.reward.width > 0, f"{key}.reward.width", f"must be > 0, got {env.reward.width}")
        _require(env.reward.timeout_per_item >= 0, f"{key}.reward.timeout_per_item",
                 f"must be >= 0, got {env.reward.timeout_per_item}")
        _validate_curriculum(env.curriculum, f"{key}.curriculum")

    ev = cfg.evaluation
    _require(ev.interval >= 0, "evaluation.interval", f"must be >= 0 (0 = off), got {ev.interval}")
    _require(ev.instances >= 1, "evaluation.instances", f"must be >= 1, got {ev.instances}")
    _require(len(ev.lengths) >= 1 and all(n >= 1 for n in ev.lengths), "evaluation.lengths",
             f"list lengths >= 1, got {ev.lengths}")
    _require(0.0 < ev.threshold <= 1.0, "evaluation.threshold", f"must be in (0, 1], got {ev.threshold}")

    cu = cfg.cu
    for part in cu.inputs:
        _require(part in CU_INPUT_PARTS, "cu.inputs", f"unknown part '{part}'; choose from {list(CU_INPUT_PARTS)}")
    _require(len(cu.inputs) >= 1, "cu.inputs", "the CU needs at least one input part")
    _require(cu.n_step >= 1, "cu.n_step", f"must be >= 1, got {cu.n_step}")
    _require(cu.history_length >= 1, "cu.history_length", f"must be >= 1, got {cu.history_length}")
    _require(all(h >= 1 for h in cu.hidden), "cu.hidden", f"sizes must be >= 1, got {cu.hidden}")
    _require(cu.learning_rate > 0, "cu.learning_rate", f"must be > 0, got {cu.learning_rate}")
    _require(cu.buffer_size >= 1, "cu.buffer_size", f"must be >= 1, got {cu.buffer_size}")
    _require(cu.batch_size >= 1, "cu.batch_size", f"must be >= 1, got {cu.batch_size}")
    _require(cu.batch_size <= cu.buffer_size, "cu.batch_size", f"{cu.batch_size} exceeds cu.buffer_size {cu.buffer_size}")
    _require(cu.learning_starts >= 0, "cu.learning_starts", "must be >= 0")
    _require(0.0 <= cu.gamma <= 1.0, "cu.gamma", f"must be in [0, 1], got {cu.gamma}")
    _require(cu.train_freq >= 1, "cu.train_freq", f"must be >= 1, got {cu.train_freq}")
    _require(cu.gradient_steps >= 1, "cu.gradient_steps", f"must be >= 1, got {cu.gradient_steps}")
    _require(cu.target_update_interval >= 1, "cu.target_update_interval", "must be >= 1")
    _require(0.0 < cu.tau <= 1.0, "cu.tau", f"must be in (0, 1], got {cu.tau}")
    _require(0.0 <= cu.exploration_fraction <= 1.0, "cu.exploration_fraction", f"must be in [0, 1], got {cu.exploration_fraction}")
    for k in ("exploration_initial_eps", "exploration_final_eps"):
        v = getattr(cu, k)
        _require(0.0 <= v <= 1.0, f"cu.{k}", f"epsilon must be in [0, 1], got {v}")
    _require(cu.exploration in EXPLORATION_KINDS, "cu.exploration",
             f"choose one of {list(EXPLORATION_KINDS)}, got '{cu.exploration}'")
    _require(cu.exploration_bonus >= 0, "cu.exploration_bonus", f"must be >= 0, got {cu.exploration_bonus}")
    _require(cu.self_imitation >= 0, "cu.self_imitation", f"must be >= 0 (0 = off), got {cu.self_imitation}")
    _validate_what_if(cfg)
    _require(cu.max_grad_norm > 0, "cu.max_grad_norm", f"must be > 0, got {cu.max_grad_norm}")
    _require(0.0 < cu.popart_beta <= 1.0, "cu.popart_beta", f"must be in (0, 1], got {cu.popart_beta}")
    _validate_node_actions(cfg)

    _require(cfg.tape.horizon >= 1, "tape.horizon", f"must be >= 1 (1 = only the PU that wrote the node), got {cfg.tape.horizon}")
    _require(0.0 < cfg.tape.depth_decay <= 1.0, "tape.depth_decay", f"must be in (0, 1], got {cfg.tape.depth_decay}")
    _require(cfg.tape.recompute in ("current", "stored"), "tape.recompute",
             f"must be 'current' or 'stored', got '{cfg.tape.recompute}'")
    _require(cfg.pu_optim.lr > 0, "pu_optim.lr", f"must be > 0, got {cfg.pu_optim.lr}")
    if cfg.pu_optim.clip_grad_norm is not None:
        _require(cfg.pu_optim.clip_grad_norm > 0, "pu_optim.clip_grad_norm", "must be > 0 or null")
    if cfg.pu_optim.guard is not None:
        _require(cfg.pu_optim.guard >= 1.0, "pu_optim.guard", f"must be >= 1 (a multiple of the running norm) or null, got {cfg.pu_optim.guard}")
    _require(0.0 <= cfg.pu_optim.random_use_scale <= 1.0, "pu_optim.random_use_scale",
             f"must be in [0, 1] (1 = off), got {cfg.pu_optim.random_use_scale}")
    if cfg.pu_optim.use_guard is not None:
        _require(cfg.pu_optim.use_guard >= 1.0, "pu_optim.use_guard",
                 f"must be >= 1 (a multiple of the running norm per use) or null, got {cfg.pu_optim.use_guard}")
        _require(not cfg.pu_optim.use_normalise, "pu_optim.use_guard",
                 "use_normalise rescales every use already; set one of use_guard and use_normalise")
    _require(cfg.pu_optim.replay >= 0, "pu_optim.replay", f"must be >= 0 (0 = off), got {cfg.pu_optim.replay}")
    _require(cfg.pu_optim.replay_size >= 1, "pu_optim.replay_size", f"must be >= 1, got {cfg.pu_optim.replay_size}")
    _require(cfg.pu_optim.replay_step > 0, "pu_optim.replay_step", f"must be > 0, got {cfg.pu_optim.replay_step}")
    _require(0.0 < cfg.pu_optim.guard_beta < 1.0, "pu_optim.guard_beta", f"must be in (0, 1), got {cfg.pu_optim.guard_beta}")
    cur = cfg.curiosity
    _require(cur.kind in CURIOSITY_KINDS, "curiosity.kind", f"choose one of {list(CURIOSITY_KINDS)}, got '{cur.kind}'")
    _require(cur.weight >= 0, "curiosity.weight", f"must be >= 0, got {cur.weight}")
    _require(cur.decay_iterations >= 0, "curiosity.decay_iterations", f"must be >= 0 (0 = constant), got {cur.decay_iterations}")
    _require(cur.lr > 0, "curiosity.lr", f"must be > 0, got {cur.lr}")
    _require(all(h >= 1 for h in cur.hidden), "curiosity.hidden", f"sizes must be >= 1, got {cur.hidden}")
    tr = cfg.trace
    _require(tr.interval >= 1, "trace.interval", f"must be >= 1, got {tr.interval}")
    _require(tr.window >= 1, "trace.window", f"must be >= 1, got {tr.window}")
    _require(tr.window <= tr.interval, "trace.window", f"{tr.window} exceeds trace.interval {tr.interval}")
    _require(0 <= tr.lane < cfg.lanes, "trace.lane", f"must be in [0, lanes={cfg.lanes}), got {tr.lane}")
    _validate_alarms(cfg.alarms)
    _validate_wheels(cfg.training_wheels, "training_wheels")
    for name, env in cfg.envs.items():
        _validate_wheels(env.training_wheels, f"envs.{name}.training_wheels")
    if len(cfg.envs) == 1:
        only = next(iter(cfg.envs))
        _require(cfg.training_wheels.teacher is None or cfg.envs[only].training_wheels.teacher is None,
                 "training_wheels", f"both training_wheels and envs.{only}.training_wheels name a teacher; keep one")
    else:
        _require(cfg.training_wheels.teacher is None, "training_wheels.teacher",
                 f"with {len(cfg.envs)} Environments ({', '.join(cfg.envs)}) give each its own teacher as "
                 "envs.<env>.training_wheels.teacher and set this one to null")


def _validate_node_actions(cfg: RunConfig) -> None:
    """Node actions (paper 6.7) replace the PU actions: refuse what names PU actions or what they do not support."""
    cu = cfg.cu
    _require(0.0 <= cu.node_rater_epsilon <= 1.0, "cu.node_rater_epsilon", f"must be in [0, 1], got {cu.node_rater_epsilon}")
    _require(cu.node_rater_lr > 0, "cu.node_rater_lr", f"must be > 0, got {cu.node_rater_lr}")
    _require(all(h >= 1 for h in cu.node_rater_hidden), "cu.node_rater_hidden", f"sizes must be >= 1, got {cu.node_rater_hidden}")
    if not cu.node_actions:
        return
    off = "or set cu.node_actions=false"
    _require(cu.script is None, "cu.node_actions", f"cu.script names PU actions, which node actions replace; "
             f"set cu.script=null {off}")
    wheels = [("training_wheels", cfg.training_wheels),
              *((f"envs.{e}.training_wheels", env.training_wheels) for e, env in cfg.envs.items())]
    for key, tw in wheels:
        _require(tw.iterations == 0, "cu.node_actions", f"{key} has a teacher, and teachers name PU actions, which "
                 f"node actions replace; set {key}.iterations=0 {off}")
    for name, node in cfg.nodes.items():
        _require(node.kind == "vector", "cu.node_actions", f"node '{name}' is {node.kind}; node actions support "
                 f"vector nodes only {off}")
    for name, pu in cfg.pus.items():
        _require(len(pu.outputs) == 1, "cu.node_actions", f"PU '{name}' writes {len(pu.outputs)} nodes {pu.outputs}; "
                 f"with node actions every PU writes exactly one node: split it into one PU per node {off}")


def quiet_pus(cfg: RunConfig) -> List[str]:
    """The PUs that write no node an Environment reads its answer from (`outputs`): running one ends no task
    instance and, for the tasks that support what-ifs, changes only the node values the CU sees."""
    read = {n for env in cfg.envs.values() for n in env.outputs}
    return [name for name, pu in cfg.pus.items() if not set(pu.outputs) & read]


def _validate_what_if(cfg: RunConfig) -> None:
    cu = cfg.cu
    _require(cu.what_if >= 0, "cu.what_if", f"must be >= 0 (0 = off), got {cu.what_if}")
    _require(cu.what_if_interval >= 1, "cu.what_if_interval", f"must be >= 1, got {cu.what_if_interval}")
    if not cu.what_if:
        return
    _require(len(cfg.envs) == 1, "cu.what_if", f"what-ifs predict one Environment's feedback, and this IN has "
             f"{len(cfg.envs)} ({', '.join(cfg.envs)}); set cu.what_if=0")
    kinded = [n for n, node in cfg.nodes.items() if node.kind != "vector"]
    _require(not kinded, "cu.what_if", f"what-ifs copy vector nodes only, and node '{kinded[0] if kinded else ''}' "
             "is not one; set cu.what_if=0")
    _require(cu.script is None, "cu.what_if", "a scripted CU (cu.script) does not learn; set cu.what_if=0")
    _require(not cu.node_actions, "cu.what_if", "node actions replace the PU actions what-ifs try; set "
             "cu.node_actions=false or cu.what_if=0")
    _require(not cu.popart, "cu.what_if", "what-ifs compare rewards with the CU's values, which PopArt normalises; "
             "set cu.popart=false or cu.what_if=0")
    _require(bool(quiet_pus(cfg)), "cu.what_if", "what-ifs try PUs that write none of an Environment's outputs, "
             "and every PU of this IN writes one; set cu.what_if=0")


def _validate_wheels(tw: TrainingWheelsConfig, key: str) -> None:
    _require(tw.iterations >= 0, f"{key}.iterations", "must be >= 0")
    _require(tw.mode in ("replace", "anneal", "lead"), f"{key}.mode", f"must be replace, anneal or lead, got {tw.mode!r}")
    _require(tw.iterations == 0 or bool(tw.teacher), f"{key}.teacher", f"name the teacher function when {key}.iterations > 0")


def training_wheels(cfg: RunConfig) -> Dict[str, TrainingWheelsConfig]:
    """Each Environment's training wheels that are on (iterations > 0); the top-level ones are the only Environment's."""
    out = {name: env.training_wheels for name, env in cfg.envs.items() if env.training_wheels.iterations > 0}
    if cfg.training_wheels.iterations > 0:
        out[next(iter(cfg.envs))] = cfg.training_wheels
    return out


def _validate_shortcuts(cfg: RunConfig) -> None:
    """A shortcut student (paper 6.7) writes one vector node that some PU other than a student also writes."""
    students = {n for n, p in cfg.pus.items() if p.shortcut.weight > 0}
    for name, pu in cfg.pus.items():
        key, sc = f"pus.{name}.shortcut", pu.shortcut
        _require(sc.weight >= 0, f"{key}.weight", f"must be >= 0 (0 = off), got {sc.weight}")
        if sc.max_loss is not None:
            _require(sc.max_loss >= 0, f"{key}.max_loss", f"must be >= 0, or null to learn from every teacher value, "
                     f"got {sc.max_loss}")
            _require(sc.weight > 0, f"{key}.max_loss", "is set but the shortcut is off (weight 0); set "
                     f"{key}.weight > 0 or max_loss: null")
        if name not in students:
            continue
        _require(len(pu.outputs) == 1, f"{key}.weight", f"a student writes exactly one node (the chain's output), "
                 f"'{name}' writes {pu.outputs}")
        for n in (*pu.inputs, *pu.outputs):
            _require(cfg.nodes[n].kind == "vector", f"{key}.weight", f"node '{n}' is {cfg.nodes[n].kind}; a student "
                     "reads and writes vector nodes only")
        _require(pu.trainable and not pu.freeze, f"{key}.weight", f"'{name}' has nothing to train (trainable: false "
                 "or freeze: true); make it trainable or set the weight to 0")
        out = pu.outputs[0]
        teachers = [t for t, p in cfg.pus.items() if t not in students and out in p.outputs]
        _require(bool(teachers), f"{key}.weight", f"no other PU writes node '{out}', so there is no chain whose output "
                 f"it could learn; declare the chain whose last PU writes '{out}' (a PU that is not a student "
                 "itself), or set the weight to 0")


def _validate_batch_readers(cfg: RunConfig) -> None:
    """A node read as a batch (accumulating) needs a PU class that declares `accepts_batch = True`."""
    for name, pu in cfg.pus.items():
        for n in pu.inputs:
            node = cfg.nodes.get(n)
            if node is None or not KINDS[node.kind].batch:
                continue
            cls = None
            if pu.kind == "custom" and pu._target_:
                module, _, attr = pu._target_.rpartition(".")
                try:
                    cls = getattr(importlib.import_module(module), attr)
                except (ImportError, AttributeError, ValueError):
                    continue  # building the PU names the bad _target_
            _require(bool(getattr(cls, "accepts_batch", False)), f"pus.{name}.inputs",
                     f"node '{n}' is {node.kind}: a reader gets its entries and a mask as a batch, and PU "
                     f"{'kind ' + pu.kind if cls is None else pu._target_} does not accept a batch; read it with "
                     "a PU class that sets accepts_batch = True (e.g. inet.pu_attention.AttentionDecoder)")


def _validate_curriculum(c: "CurriculumConfig", key: str) -> None:
    _require(c.min_length >= 1, f"{key}.min_length", f"must be >= 1, got {c.min_length}")
    _require(c.max_length >= c.min_length, f"{key}.max_length",
             f"must be >= min_length ({c.min_length}), got {c.max_length}")
    _require(c.min_length <= c.start_length <= c.max_length, f"{key}.start_length",
             f"must lie in [min_length, max_length] = [{c.min_length}, {c.max_length}], got {c.start_length}")
    _require(c.promote_after >= 1, f"{key}.promote_after", f"must be >= 1, got {c.promote_after}")
    _require(c.demote_after >= 1, f"{key}.demote_after", f"must be >= 1, got {c.demote_after}")
    _require(c.mode in CURRICULUM_MODES, f"{key}.mode", f"choose one of {list(CURRICULUM_MODES)}, got '{c.mode}'")
    _require(c.step >= 1, f"{key}.step", f"must be >= 1, got {c.step}")
    _require(c.hysteresis >= 0, f"{key}.hysteresis", f"must be >= 0, got {c.hysteresis}")
    _require(0.0 <= c.mix <= 1.0, f"{key}.mix", f"must be in [0, 1], got {c.mix}")


def _validate_alarms(a: "AlarmsConfig") -> None:
    _require(a.dead_pu_iterations >= 0, "alarms.dead_pu_iterations", f"must be >= 0 (0 = off), got {a.dead_pu_iterations}")
    _require(0.0 < a.collapse_share < 1.0, "alarms.collapse_share", f"must be in (0, 1), got {a.collapse_share}")
    _require(a.collapse_iterations >= 0, "alarms.collapse_iterations", f"must be >= 0 (0 = off), got {a.collapse_iterations}")
    if a.q_margin is not None:
        _require(a.q_margin >= 1.0, "alarms.q_margin", f"must be >= 1 (a multiple of the largest return) or null (off), "
                 f"got {a.q_margin}")
    if a.max_reward is not None:
        _require(a.max_reward > 0, "alarms.max_reward", f"must be > 0, or null to take it from the reward terms, "
                 f"got {a.max_reward}")
    if a.drift_change is not None:
        _require(a.drift_change > 0, "alarms.drift_change", f"must be > 0 (a relative change) or null (off), got {a.drift_change}")
    _require(0.0 <= a.drift_usage_change < 1.0, "alarms.drift_usage_change", f"must be in [0, 1), got {a.drift_usage_change}")
