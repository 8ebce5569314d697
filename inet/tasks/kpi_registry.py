"""The KPI registry: every KPI is declared once, by the task that measures it (DESIGN.md sections 7, 11).

A task declares its KPIs as `KPI` objects: the base `Environment` those every task
has, a subclass its own in a class attribute `kpis` (added to its bases'), and
`Environment.config_kpis(run)` those that depend on the configuration (reduce's
per-length evaluation). `declared_kpis` collects them; `Engine.declared_kpis()`
names them for the run with `qualified`. Everything that shows KPIs reads these
declarations: kpis.csv and TensorBoard (inet/run/logger.py), summary.json
(`summarise`), the run's plots (inet/run/plots.py) and, through the run's kpis.json,
`inet report` and the viewer. The engine's and runner's own metrics
(`DIAGNOSTICS`: TD loss, epsilon, tape size...) are declared the same way, here.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    from ..config import RunConfig
    from .env import Environment

FILENAME = "kpis.json"  # the run's declared KPIs, beside kpis.csv
MAIN_TABLE = "KPIs"  # the report's first table: mean ± std [95% interval] per variant
# TensorBoard tag prefixes, Stable-Baselines3's convention: rollout/ what acting produces (task KPIs,
# exploration, action usage), train/ learning (losses, Q-values, gradient norms, learning rates, tape),
# eval/ the greedy evaluation, time/ wall clock (TensorBoard only, never in kpis.csv); alarms/ the runner's
# alarms (inet/run/alarms.py)
TAG_GROUPS = ("rollout", "train", "eval", "time", "alarms")


@dataclass(frozen=True)
class Panel:
    """Where a KPI is drawn: a panel of plots/<figure>.png (and a chart of TensorBoard's custom scalars)."""

    figure: str
    title: str  # the panel's y label (heatmap: its title) and the TensorBoard chart's title
    kind: str = "line"  # line: one line per KPI; heatmap: one row per KPI over iterations
    log2: bool = False  # a symlog y axis, base 2 (lengths)

    def __post_init__(self) -> None:
        if self.kind not in ("line", "heatmap"):
            raise ValueError(f"Panel {self.title!r}: kind must be 'line' or 'heatmap', got {self.kind!r}")


@dataclass(frozen=True)
class KPI:
    """One KPI (or diagnostic) and how each output shows it."""

    name: str
    description: str
    better: Optional[str] = None  # "higher", "lower" or None (neither: a state, a count)
    rate: bool = False  # a fraction in [0, 1]
    integer: bool = False  # counts something (iterations, tasks, a length): no decimals
    # summary.json: "last" (the last logged value), "end" (a value only the end of the run has: never
    # logged per interval, not a kpis.csv column), None (not in summary.json). Never measured: null.
    summary: Optional[str] = "last"
    plot: Optional[Panel] = None  # None: not plotted
    tag_group: Optional[str] = "rollout"  # TensorBoard tag prefix (TAG_GROUPS); None: not in TensorBoard
    table: Optional[str] = None  # the report table that lists it (MAIN_TABLE or a section of its own)

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower", None):
            raise ValueError(f"KPI {self.name!r}: better must be 'higher', 'lower' or None, got {self.better!r}")
        if self.summary not in ("last", "end", None):
            raise ValueError(f"KPI {self.name!r}: summary must be 'last', 'end' or None, got {self.summary!r}")
        if self.tag_group is not None and self.tag_group not in TAG_GROUPS:
            raise ValueError(f"KPI {self.name!r}: tag_group must be one of {TAG_GROUPS} or None, got {self.tag_group!r}")

    @property
    def curve(self) -> bool:
        """Measured every log interval (a kpis.csv column, a TensorBoard scalar), not only at the end."""
        return self.summary != "end"

    @property
    def tag(self) -> Optional[str]:
        """The TensorBoard tag: `eval_success_L8` in group eval -> `eval/success_L8`; `env/x` -> `rollout/env/x`."""
        if self.tag_group is None:
            return None
        env, _, base = self.name.rpartition("/")
        base = base[len(self.tag_group) + 1:] if base.startswith(f"{self.tag_group}_") else base
        return "/".join(p for p in (self.tag_group, env, base) if p)

    @property
    def arrow(self) -> str:
        """'↑' (higher is better), '↓' (lower is better) or ''."""
        return {"higher": "↑", "lower": "↓"}.get(self.better or "", "")


def qualified_name(env_name: str, name: str, n_envs: int) -> str:
    """The naming rule: with one Environment a KPI keeps its name; with several it is `<env_name>/<name>`."""
    return name if n_envs == 1 else f"{env_name}/{name}"


def qualified(env_name: str, kpi: KPI, n_envs: int) -> KPI:
    """`kpi` as the run names it (`qualified_name`)."""
    return replace(kpi, name=qualified_name(env_name, kpi.name, n_envs))


def declared_kpis(env: Union["Environment", type], run: Optional["RunConfig"] = None) -> Tuple[KPI, ...]:
    """The KPIs an Environment class declares (its bases' first), and with an instance and `run`, its
    `config_kpis(run)`. Raises ValueError for a name declared twice."""
    cls = env if isinstance(env, type) else type(env)
    out: List[KPI] = [k for c in reversed(cls.__mro__) for k in vars(c).get("kpis", ())]
    if run is not None and not isinstance(env, type):
        out += env.config_kpis(run)
    check_unique(out, cls.__name__)
    return tuple(out)


def check_unique(kpis: Iterable[KPI], owner: str) -> None:
    seen = set()
    for k in kpis:
        if k.name in seen:
            raise ValueError(f"{owner}: KPI {k.name!r} is declared twice")
        seen.add(k.name)


def _finite(v: object) -> object:
    """A JSON-safe value: non-finite floats (never measured) become None, also inside maps."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return v


def summarise(kpis: Sequence[KPI], last: Mapping[str, object], end: Mapping[str, object]) -> Dict[str, object]:
    """summary.json's value of every KPI with a summary: from `last` (the final metrics) or `end` (values
    only the end has); None where never measured; integer KPIs as ints."""
    out: Dict[str, object] = {}
    for k in kpis:
        if k.summary is None:
            continue
        v = _finite((last if k.summary == "last" else end).get(k.name))
        out[k.name] = int(v) if k.integer and isinstance(v, float) and v.is_integer() else v
    return out


def dumps(kpis: Sequence[KPI]) -> str:
    """kpis.json: the declarations as JSON, one KPI a line."""
    lines = ",\n".join(f"  {json.dumps(asdict(k), ensure_ascii=False)}" for k in kpis)
    return '{"kpis": [\n' + lines + "\n]}\n"


def loads(text: str) -> List[KPI]:
    return [KPI(**{**d, "plot": Panel(**d["plot"]) if d.get("plot") else None}) for d in json.loads(text)["kpis"]]


def load(run_dir: Path) -> List[KPI]:
    """The KPIs a run declared (its kpis.json); [] for a run without one."""
    path = Path(run_dir) / FILENAME
    return loads(path.read_text()) if path.is_file() else []


def panels(kpis: Iterable[KPI]) -> Dict[str, Dict[Panel, List[KPI]]]:
    """figure -> panel -> its KPIs, in declaration order (KPIs without a plot left out)."""
    out: Dict[str, Dict[Panel, List[KPI]]] = {}
    for k in kpis:
        if k.plot is not None:
            out.setdefault(k.plot.figure, {}).setdefault(k.plot, []).append(k)
    return out


LEARNING = "learning"  # the diagnostics' panels: TensorBoard charts only (the run's plots show task KPIs)
PUS = "pus"  # the per-PU diagnostics' panels (TensorBoard's PUs category)
LOSSES, EXPLORATION, TAPE, Q_VALUES, LEARNING_RATES = (
    Panel(LEARNING, t) for t in ("losses", "exploration", "tape and guards", "Q-values", "learning rates"))
PU_USAGE, PU_LOSS, PU_GRAD_NORM = Panel(PUS, "PU usage share"), Panel(PUS, "PU loss"), Panel(PUS, "PU gradient norm")

# The engine's and runner's own metrics: how training goes, not how the task does. A learner declares its
# own the same way (its class's `kpis`, e.g. inet/cu/dqn.py); `learner_kpis` collects them, `pu_kpis` the
# per-PU ones.
DIAGNOSTICS: Tuple[KPI, ...] = (
    KPI("pu_loss", "this iteration's node losses (Environment losses on nodes)", summary=None, plot=LOSSES,
        tag_group="train"),
    KPI("q_mean", "mean of the CU's last Q-values (all lanes and actions)", summary=None, plot=Q_VALUES,
        tag_group="train"),
    KPI("q_min", "smallest of the CU's last Q-values", summary=None, plot=Q_VALUES, tag_group="train"),
    KPI("q_max", "largest of the CU's last Q-values", summary=None, plot=Q_VALUES, tag_group="train"),
    KPI("learning_rate", "the CU optimizer's learning rate", summary=None, plot=LEARNING_RATES, tag_group="train"),
    KPI("tape_records", "live records on the tape", integer=True, summary=None, plot=TAPE, tag_group="train"),
    KPI("guarded_updates", "PU updates damped by the gradient guard", integer=True, summary=None, plot=TAPE,
        tag_group="train"),
    KPI("nonfinite_skipped", "non-finite updates skipped (nonfinite=skip)", integer=True, plot=TAPE,
        tag_group="train"),
    KPI("iterations_per_second", "lane-iterations per wall-clock second", summary=None, tag_group="time"),
)


def pu_kpis(pus: Sequence[str], trained: Sequence[str]) -> Tuple[KPI, ...]:
    """Per PU: its usage share (`pu_usage/<pu>`) and loss (`pu_loss/<pu>`, inet/pu_loss.py); per trained PU
    also its gradient norm and learning rate."""
    usage = [KPI(f"pu_usage/{n}", f"share of the actions since the last log that ran PU {n}", rate=True,
                 summary=None, plot=PU_USAGE) for n in pus]
    losses = [KPI(f"pu_loss/{n}", f"mean per-lane Environment loss, since the last log, of the losses whose gradient "
                  f"reached a run of PU {n} through the tape", better="lower", summary=None, plot=PU_LOSS,
                  tag_group="train") for n in pus]
    norms = [KPI(f"pu_grad_norm/{n}", f"PU {n}'s gradient norm at its last update (before clip and guard)",
                 summary=None, plot=PU_GRAD_NORM, tag_group="train") for n in trained]
    lrs = [KPI(f"pu_learning_rate/{n}", f"PU {n}'s learning rate", summary=None, plot=LEARNING_RATES,
               tag_group="train") for n in trained]
    return (*usage, *losses, *norms, *lrs)


def learner_kpis(learner: object) -> Tuple[KPI, ...]:
    """The metrics a learner reports: those its class declares in `kpis`, then any other name its
    `metrics()` returns, as a diagnostic under TensorBoard's `train/` (a user's learner need declare nothing)."""
    declared = declared_kpis(learner)
    names = {k.name for k in declared}
    extra = [KPI(n, "reported by the learner", summary=None, tag_group="train") for n in learner.metrics() if n not in names]
    return (*declared, *extra)
