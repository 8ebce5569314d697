"""YAML + overrides -> validated RunConfig: the one place that touches Hydra's composition.

It registers the schema, composes inet/configs/ with Hydra overrides and converts the
result to a validated `RunConfig`, for the `inet` command (inet/cli.py), tests,
scripts and notebooks alike.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from difflib import get_close_matches
from typing import Any, Dict, List, Optional, Sequence, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .config import ConfigError, RunConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: shipped in the wheel
# config groups whose options belong to one Environment: `reward@envs.<env>.reward=<option>`
ENV_GROUPS = ("reward", "curriculum")
# the maps of named entries that overrides may add to: `+pus.pu3={kind: mlp, ...}`, `+pus.pu3.kind=mlp`
ENTRY_MAPS = ("nodes", "pus", "envs")


@dataclass
class HydraRunConfig(RunConfig):
    """RunConfig as Hydra composes it: `nodes`, `pus` and `envs` are plain maps.

    OmegaConf refuses to assign a dict to a new entry of a typed map ("dict is not a
    subclass of PUConfig"), which is what Hydra does for `+pus.pu3=...`. Plain maps take
    any entry; `to_run_config` builds each through its dataclass (so its defaults apply)
    and refuses an unknown key there, naming it (`pus.pu3.kindd`).
    """

    nodes: Dict[str, Any] = field(default_factory=dict)
    pus: Dict[str, Any] = field(default_factory=dict)
    envs: Dict[str, Any] = field(default_factory=dict)


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    schema = OmegaConf.structured(HydraRunConfig)
    for key in ENTRY_MAPS:  # not struct, so that `pus.pu1.freeze=true` needs no `+` where the YAML omits it
        OmegaConf.set_struct(schema[key], False)
    ConfigStore.instance().store(name="schema", node=schema)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Composed config -> validated RunConfig (PUs built once to check kinds and shapes). Raises ConfigError
    naming the key."""
    from .config import validate
    from .pus import check_pus

    try:
        typed = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.to_container(cfg, resolve=True))
        run_cfg = OmegaConf.to_object(typed)
    except OmegaConfBaseException as e:
        raise ConfigError(_schema_error(e)) from None
    validate(run_cfg)
    check_pus(run_cfg)
    return run_cfg


def config_yaml(cfg: RunConfig) -> str:
    """The run's full config (every key, defaults included) as YAML."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def _schema_error(e: OmegaConfBaseException) -> str:
    """`key: what is wrong`; an unknown key lists the keys its place has."""
    key = getattr(e, "full_key", None)
    if not key:
        return explain(e)
    message = str(e).splitlines()[0]
    if isinstance(e, ConfigKeyError) and is_dataclass(getattr(e, "object_type", None)):
        known = sorted(f.name for f in fields(e.object_type))
        message = f"unknown key; {e.object_type.__name__} has {', '.join(known)}"
    return f"{key}: {message}"


def compose(overrides: Sequence[str] = (), config_dirs: Sequence[Path | str] = ()) -> RunConfig:
    """Compose inet/configs/ with overrides as `inet run` would, without Hydra's run directory.

    `config_dirs` are the user's config directories (`inet run --config-dir DIR`), searched
    after inet/configs/ like those named by a `hydra.searchpath=[file://DIR]` override,
    which is honoured too: `experiment=mine` finds DIR/experiment/mine.yaml.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    register_schema()
    overrides = [a for a in overrides if override_key(a) != "hydra.searchpath"] + _searchpath(overrides, config_dirs)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        try:
            cfg = hydra_compose("config", overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(explain(e, search_dirs(overrides))) from None
        except Exception as e:
            malformed = yaml_error(e)
            if malformed is None:
                raise
            raise ConfigError(malformed) from None
    return to_run_config(cfg)


def _searchpath(overrides: Sequence[str], config_dirs: Sequence[Path | str]) -> List[str]:
    """One `hydra.searchpath` override: the config dirs (as absolute file:// paths), then those the overrides name."""
    for d in config_dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"--config-dir: {d} is not a directory; pass the directory that holds your "
                              "experiment/<name>.yaml")
    paths = [f"file://{Path(d).resolve()}" for d in config_dirs] + _searchpath_entries(overrides)
    return [f"hydra.searchpath=[{','.join(paths)}]"] if paths else []


def _searchpath_entries(overrides: Sequence[str]) -> List[str]:
    """The entries of the last `hydra.searchpath=[...]` override; ConfigError for one that is not a list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [a for a in overrides if override_key(a) == "hydra.searchpath"]
    if not given:
        return []
    value = OverridesParser.create().parse_overrides([given[-1]])[0].value()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"hydra.searchpath: must be a list of directories, e.g. hydra.searchpath=[file://DIR]; "
                          f"got {given[-1].split('=', 1)[1]}")
    return value


def search_dirs(overrides: Sequence[str] = ()) -> List[Path]:
    """inet/configs/ and the file:// directories of the overrides' `hydra.searchpath`, in search order."""
    extra = [Path(v[len("file://"):]) for v in _searchpath_entries(overrides) if v.startswith("file://")]
    return [CONFIG_DIR, *extra]


def group_options(group: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> List[str]:
    """The options of a config group in `dirs`, sorted; nested ones as `family/variant`."""
    return sorted({p.relative_to(d / group).with_suffix("").as_posix()
                   for d in dirs if (d / group).is_dir() for p in (d / group).rglob("*.yaml")})


def _unknown_option(e: BaseException, dirs: Sequence[Path]) -> Optional[str]:
    """`group: no option 'x'; choose one of: a, b` for an option that does not exist, else None."""
    from hydra.errors import MissingConfigException

    if not isinstance(e, MissingConfigException) or not e.missing_cfg_file:
        return None
    named = re.search(r"Available options in '([^']+)'", str(e))
    group = named.group(1) if named else e.missing_cfg_file.split("/")[0]
    # Hydra lists only the group folder's own files; experiments sit one folder deeper
    options = sorted(set(e.options or []) | set(group_options(group, dirs)))
    if not options:
        return None
    option = e.missing_cfg_file[len(group) + 1:]
    return f"{group}: no option '{option}'; choose one of: {', '.join(options)}"


def explain(e: BaseException, dirs: Sequence[Path] = (CONFIG_DIR,)) -> str:
    """Hydra's message plus its cause (which holds the key and the bad value), minus misleading hints.

    `dirs`: the config directories searched, whose options an unknown-option message lists.
    """
    unknown = _unknown_option(e, dirs)
    if unknown is not None:
        return unknown
    lines = [ln for ln in str(e).splitlines() if not ln.startswith("To append to your config")]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) not in str(e):
        lines.append(str(cause).splitlines()[0])
    found = re.search(r"Could not override '([^']+)'|full_key: (\S+)$", "\n".join(lines), re.M)
    key = (found.group(1) or found.group(2)) if found else ""
    if key in ENV_GROUPS:  # `reward=harsh` or `+reward=harsh`: the option has no environment to go to
        lines = [ln for ln in lines if not ln.startswith("To append to your default list")]
        lines.append(f"`{key}` options are placed per environment: {key}@envs.<env>.{key}=<option> "
                     f"(options: {', '.join(group_options(key, dirs))})")
    elif any(ln.startswith("Could not override") for ln in lines) and not any((d / key).is_dir() for d in dirs if key):
        return unknown_key(key, dirs)
    return "\n".join(lines)


def unknown_key(key: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> str:
    """`key: no such key; did you mean <close match>?` in one line."""
    close = get_close_matches(key, [*schema_keys(), *(p.name for d in dirs if d.is_dir() for p in d.iterdir()
                                                      if p.is_dir())], n=1, cutoff=0.7)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{key}: no such key; {hint}`inet run --help` lists every key and group"


def schema_keys(cls: type = RunConfig, prefix: str = "") -> List[str]:
    """The dotted keys of the schema's fields, nested dataclasses included (`cu.learning_rate`)."""
    out = []
    hints = get_type_hints(cls)
    for f in fields(cls):
        out.append(prefix + f.name)
        if is_dataclass(hints[f.name]):
            out += schema_keys(hints[f.name], f"{prefix}{f.name}.")
    return out


def yaml_error(e: BaseException) -> Optional[str]:
    """`file:line:column: problem` for malformed YAML in a config file, else None."""
    import yaml

    while e is not None and not isinstance(e, yaml.MarkedYAMLError):
        e = e.__cause__ or e.__context__
    if e is None:
        return None
    mark = e.problem_mark or e.context_mark
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else "a config file"
    what = " ".join(str(x) for x in (e.problem, e.context) if x)
    return f"{where}: malformed YAML: {what}"


def override_key(arg: str) -> str:
    """The key of a Hydra override: `+a.b=1` -> `a.b`."""
    return arg.split("=", 1)[0].lstrip("+~")
