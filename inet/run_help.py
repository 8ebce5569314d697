"""`inet run --help`: the config groups and every key with its value and one-line description.

The descriptions come from the schema itself (inet/config.py): a field's trailing
comment, else the comment lines just above it, else its dataclass's docstring, so
the help cannot drift from the code.
"""
from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, get_type_hints

from . import config as schema

GROUPS = ("experiment", "cu", "task", "reward", "curriculum", "stabilisers", "shortcut", "distractors", "tuning")
ENTRY_MAPS = {"nodes": schema.NodeConfig, "pus": schema.PUConfig, "envs": schema.EnvConfig}


def _comments(source: str) -> Dict[int, str]:
    """Line number -> the text of the comment on that line."""
    out: Dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def field_docs() -> Dict[str, Dict[str, str]]:
    """Dataclass name -> field name -> its one-line description ('' where the source has none)."""
    source = Path(schema.__file__).read_text()
    comments = _comments(source)
    lines = source.splitlines()
    docs: Dict[str, Dict[str, str]] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = docs.setdefault(node.name, {})
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            text = comments.get(item.lineno, "")
            if not text:
                above, n = [], item.lineno - 1
                while n >= 1 and lines[n - 1].strip().startswith("#"):
                    above.insert(0, comments.get(n, ""))
                    n -= 1
                text = " ".join(above)
            fields[item.target.id] = text
    return docs


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ").split(". ")[0].rstrip(".")


def _keys(cls: type, prefix: str, docs: Dict[str, Dict[str, str]]) -> List[tuple]:
    """(dotted key, dataclass field, description) of every leaf field of `cls`, depth first."""
    out = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _keys(kind, f"{key}.", docs)
        else:
            out.append((key, docs.get(cls.__name__, {}).get(f.name, "")))
    return out


def _value(cfg: Any, key: str) -> str:
    for part in key.split("."):
        if part.startswith("<"):
            return ""
        cfg = getattr(cfg, part)
    if isinstance(cfg, dict):
        return f"{{{', '.join(cfg)}}}" if cfg else "{}"
    return "null" if cfg is None else str(cfg).lower() if isinstance(cfg, bool) else str(cfg)


def keys_help(cfg: schema.RunConfig) -> List[str]:
    """One line per key: `key=value  description`, entries of nodes/pus/envs as `pus.<name>.key`."""
    docs = field_docs()
    rows = []
    for key, doc in _keys(schema.RunConfig, "", docs):
        rows.append((f"{key}={_value(cfg, key)}", doc))
        if key in ENTRY_MAPS:
            cls = ENTRY_MAPS[key]
            rows += [(k, d or _first_line(cls.__doc__)) for k, d in _keys(cls, f"{key}.<name>.", docs)]
    width = min(max(len(k) for k, _ in rows), 44)
    return [f"  {k.ljust(width)}  {d}".rstrip() for k, d in rows]


def run_help(cfg: schema.RunConfig, options: Mapping[str, Sequence[str]]) -> str:
    """The whole `inet run --help` text for the composed config `cfg`; `options`: config group -> its options."""
    from .version import __version__

    groups = [f"  {g}: {', '.join(options[g])}" for g in GROUPS if options.get(g)]
    return "\n".join([
        f"inet run (inet {__version__}): train one Interaction Network, or a sweep of them with -m",
        "",
        "usage: inet run [-m] [--config-dir DIR] [group=option ...] [key=value ...]",
        "  e.g. inet run experiment=multitask/base seed=1 iterations=5000",
        "  -m / --multirun   a sweep: key=a,b runs one job per value (docs/sweeps.md)",
        "  --cfg job         print the composed config and exit",
        "  --config-dir DIR  your own configs: experiment=mine is DIR/experiment/mine.yaml",
        "  --hydra-help      Hydra's own flags",
        "",
        "config groups (group=option; reward and curriculum per environment: reward@envs.<env>.reward=<option>):",
        *groups,
        "",
        f"keys (key=value; values of this config, experiment {cfg.name}):",
        *keys_help(cfg),
    ])
