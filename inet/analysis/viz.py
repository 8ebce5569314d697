"""The run viewer: `inet viz RUN_DIR` writes RUN_DIR/viewer.html, one self-contained page.

The page (plotly.js inlined, so it opens offline; docs/viewer.md) shows a banner
with the run's alarms (`alarms.json`, when any); the network as in the paper's
Fig. 1 (viz_layout.py); a scrubber over the recorded iterations of `trace/`, with
window and task-instance boundaries marked and a play button, that highlights the
executed action on the graph and shows the CU's Q-value per action, whether the
action was random, the reward and the losses, each node write with its writer,
each Environment's task instance (inputs, target, submitted value, error) and the
CU's input vector by part; what each small PU computes at the scrubbed window,
beside the task's target function; an action-usage heat map (actions x training
time, which makes a local optimum such as "always pu1" obvious); and the KPI
curves of `kpis.csv`, one panel per line panel its tasks declared (the run's
kpis.json, inet/tasks/kpi_registry.py). In Jupyter, `show(run_dir)` displays it inline.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Dict, List

import pandas as pd
from omegaconf import OmegaConf

from ..run import trace
from ..run.files import json_safe
from ..tasks import kpi_registry
from .viz_layout import network
from .viz_page import APP_JS, PAGE

VIEWER = "viewer.html"
ALARMS = "alarms.json"  # written into the run directory by inet/run/alarms.py
ALARM_KINDS = {"dead_pu": "dead PU", "usage_collapse": "usage collapse", "q_divergence": "Q divergence",
               "pu_drift": "PU drift"}

__all__ = ["NotARunError", "collect", "network", "render", "show", "write_viewer"]


class NotARunError(ValueError):
    """The directory is not a run directory with a trace (the message says what is missing)."""


def kpi_panels(df: pd.DataFrame, kpis: List[kpi_registry.KPI]) -> List[dict]:
    """The declared line panels with data: title, and each KPI's values by name."""
    out = []
    for by_panel in kpi_registry.panels(k for k in kpis if k.curve).values():
        for panel, ks in by_panel.items():
            series = {k.name: df[k.name].tolist() for k in ks if k.name in df}
            if panel.kind == "line" and series:
                out.append({"title": panel.title, "series": series})
    return out


def alarms(run_dir: Path) -> List[dict]:
    """The alarms of `alarms.json` ({"alarms": [{kind, subject, first_iteration, last_iteration, message}]});
    none when the file is absent. A file that cannot be read is itself reported, as one alarm."""
    path = Path(run_dir) / ALARMS
    if not path.is_file():
        return []
    try:
        listed = json.loads(path.read_text())["alarms"]
        return [{"kind": str(a["kind"]), "label": ALARM_KINDS.get(str(a["kind"]), str(a["kind"])),
                 "subject": str(a["subject"]), "first_iteration": a["first_iteration"],
                 "last_iteration": a["last_iteration"], "message": str(a["message"])} for a in listed]
    except (ValueError, KeyError, TypeError) as e:
        return [{"kind": "unreadable", "label": "unreadable alarms", "subject": ALARMS, "first_iteration": None,
                 "last_iteration": None, "message": f"{ALARMS} could not be read ({type(e).__name__}: {e})"}]


def alarm_banner(listed: List[dict]) -> str:
    """The banner at the top of the page: one line per alarm (empty without alarms)."""
    if not listed:
        return ""
    def span(a: dict) -> str:
        first, last = a["first_iteration"], a["last_iteration"]
        return "" if first is None else f"iterations {first}&ndash;{last}" if first != last else f"iteration {first}"
    items = "".join(f'<li class="alarm" data-kind="{html.escape(a["kind"])}"><b>{html.escape(a["label"])}</b> '
                    f'<span class="subject">{html.escape(a["subject"])}</span> <span class="span">{span(a)}</span>: '
                    f'{html.escape(a["message"])}</li>' for a in listed)
    n = len(listed)
    return (f'<div id="alarms" role="alert"><b>{n} alarm{"s" if n > 1 else ""}</b> (alarms.json): '
            f'<ul>{items}</ul></div>')


def collect(run_dir: Path) -> dict:
    """Everything the page shows, as plain data. Raises NotARunError for a directory that is not a run."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise NotARunError(f"{run_dir}: no such directory")
    if not cfg_path.is_file():
        raise NotARunError(f"{run_dir}: not a run directory (no .hydra/config.yaml); pass the directory "
                           "`inet run` printed, e.g. outputs/runs/<experiment>/seed0_<time>")
    try:
        tr = trace.load(run_dir)
    except FileNotFoundError as e:
        raise NotARunError(str(e)) from None
    if not tr["steps"]:
        raise NotARunError(f"{run_dir}: trace/ holds no recorded iterations (the run stopped before its first "
                           "window; see trace.interval and trace.window)")
    config = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=False)
    kpis: Dict[str, list] = {"iteration": [], "panels": []}
    if (run_dir / "kpis.csv").is_file():
        df = pd.read_csv(run_dir / "kpis.csv")
        kpis = {"iteration": df["iteration"].tolist(), "panels": kpi_panels(df, kpi_registry.load(run_dir))}
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    meta = tr["meta"]
    return json_safe({
        "title": f"{config.get('name', run_dir.name)}  seed {config.get('seed', '?')}",
        "run_dir": str(run_dir),
        "actions": [a["name"] for a in meta["actions"]],
        "meta": meta,
        "network": network(config, meta["actions"]),
        "steps": tr["steps"],
        "functions": tr["functions"],
        "alarms": alarms(run_dir),
        "usage": tr["usage"],
        "kpis": kpis,
        "summary": {k: v for k, v in summary.items() if not isinstance(v, dict)},
    })


def render(data: dict) -> str:
    """The self-contained HTML page for `data` (from `collect`)."""
    from plotly.offline import get_plotlyjs

    blob = json.dumps(data, allow_nan=False).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", html.escape(data["title"]))
            .replace("__ALARMS__", alarm_banner(data.get("alarms", [])))
            .replace("__PLOTLYJS__", get_plotlyjs().replace("</script", "<\\/script"))
            .replace("__DATA__", blob)
            .replace("__APP__", APP_JS))


def write_viewer(run_dir: Path) -> Path:
    """Write RUN_DIR/viewer.html and return its path."""
    path = Path(run_dir) / VIEWER
    path.write_text(render(collect(Path(run_dir))), encoding="utf-8")
    return path


class InlineViewer:
    """A viewer page that Jupyter displays inline (through `_repr_html_`, so IPython is not needed to build it)."""

    def __init__(self, page: str, height: int):
        self.page = page
        self.height = height

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.page, quote=True)}" '
                f'style="width:100%;height:{self.height}px;border:0"></iframe>')


def show(run_dir: Path, height: int = 1100) -> InlineViewer:
    """In Jupyter, `inet.analysis.viz.show(run_dir)` as a cell's last line displays the viewer (writing viewer.html too)."""
    return InlineViewer(write_viewer(Path(run_dir)).read_text(encoding="utf-8"), height)
