"""The `inet` command. `inet run [overrides]` is a Hydra app; configs become plain dataclasses here.

This module is the only place that touches Hydra: it registers the schema,
composes YAML + overrides, converts the result to `RunConfig` and hands it to the
runner.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from .config import ConfigError, RunConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# config groups whose options belong to one Environment: `reward@envs.<env>.reward=<option>`
ENV_GROUPS = ("reward", "curriculum")
# the maps of named entries that overrides may add to: `+pus.pu3={kind: mlp, ...}`, `+pus.pu3.kind=mlp`
ENTRY_MAPS = ("nodes", "pus", "envs")
USAGE = """usage: inet <command> [args]

commands:
  run [-m] [key=value ...]   run an experiment, e.g. inet run experiment=multitask/base seed=1
                             (Hydra overrides; --help shows the config, --cfg job prints it;
                             -m runs a sweep through the joblib launcher)
  report DIR... [-o OUT]     aggregate the runs under DIR... into OUT/report.md, report.csv, plots/
                             (OUT defaults to the first DIR)
  viz RUN_DIR                write RUN_DIR/viewer.html, the run viewer (one offline page)
"""


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


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    schema = OmegaConf.structured(HydraRunConfig)
    for key in ENTRY_MAPS:  # not struct, so that `pus.pu1.freeze=true` needs no `+` where the YAML omits it
        OmegaConf.set_struct(schema[key], False)
    ConfigStore.instance().store(name="schema", node=schema)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Composed config -> validated RunConfig. Raises ConfigError naming the key."""
    from .config import validate

    try:
        typed = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.to_container(cfg, resolve=True))
        run_cfg = OmegaConf.to_object(typed)
    except OmegaConfBaseException as e:
        raise ConfigError(_schema_error(e)) from None
    validate(run_cfg)
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


def compose(overrides: Sequence[str] = ()) -> RunConfig:
    """Compose configs/ with overrides as `inet run` would, without Hydra's run directory."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    _register_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        try:
            cfg = hydra_compose("config", overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as e:
            raise ConfigError(explain(e)) from None
    return to_run_config(cfg)


def group_options(group: str) -> List[str]:
    """The options of a config group under configs/, sorted; nested ones as `family/variant`."""
    root = CONFIG_DIR / group
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def _unknown_option(e: BaseException) -> Optional[str]:
    """`group: no option 'x'; choose one of: a, b` for an option that does not exist, else None."""
    from hydra.errors import MissingConfigException

    if not isinstance(e, MissingConfigException) or not e.missing_cfg_file:
        return None
    named = re.search(r"Available options in '([^']+)'", str(e))
    group = named.group(1) if named else e.missing_cfg_file.split("/")[0]
    # Hydra lists only the group folder's own files; experiments sit one folder deeper
    options = sorted(set(e.options or []) | set(group_options(group)))
    if not options:
        return None
    option = e.missing_cfg_file[len(group) + 1:]
    return f"{group}: no option '{option}'; choose one of: {', '.join(options)}"


def explain(e: BaseException) -> str:
    """Hydra's message plus its cause (which holds the key and the bad value), minus misleading hints."""
    unknown = _unknown_option(e)
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
                     f"(options: {', '.join(group_options(key))})")
    elif any(ln.startswith("Could not override") for ln in lines) and not (key and (CONFIG_DIR / key).is_dir()):
        lines.append("The key is not in the schema: check its spelling; `inet run --cfg job` prints every key.")
    return "\n".join(lines)


def override_key(arg: str) -> str:
    """The key of a Hydra override: `+a.b=1` -> `a.b`."""
    return arg.split("=", 1)[0].lstrip("+~")


def _value(argv: Sequence[str], key: str) -> Optional[str]:
    vals = [a.split("=", 1)[1] for a in argv if "=" in a and override_key(a) == key]
    return vals[-1] if vals else None


def prepare(argv: List[str]) -> List[str]:
    """Check a single run's arguments before Hydra creates or touches any directory.

    - `resume=true` needs `hydra.run.dir`; the run's own overrides (its
      .hydra/overrides.yaml) are reapplied under the new ones, and Hydra is told not
      to rewrite that .hydra/; the checkpoint is checked against the config.
    - without `resume=true`, a `hydra.run.dir` that already holds a run is refused.
    - the composed config is validated (ranges, names, graph), so a bad value fails here.
    Raises ConfigError naming the key and the fix. Multirun and flags (--cfg, -m) pass through.
    """
    if any(a.startswith("-") for a in argv):
        return argv
    from .runner import require_new_run_dir

    run_dir = _value(argv, "hydra.run.dir")
    resume = (_value(argv, "resume") or "false").lower() in ("true", "yes", "on", "1")
    if resume:
        if run_dir is None:
            raise ConfigError("resume: resume=true continues the run in hydra.run.dir; add "
                              "hydra.run.dir=<that run's directory>")
        saved = Path(run_dir) / ".hydra" / "overrides.yaml"
        if saved.is_file():
            given = {override_key(a) for a in argv}
            argv = [a for a in OmegaConf.load(saved) if override_key(a) not in given] + argv
        argv = [*argv, "hydra.output_subdir=null"]
    elif run_dir is not None:
        require_new_run_dir(Path(run_dir))
    cfg = compose([a for a in argv if not override_key(a).startswith("hydra")])
    if resume:
        from . import checkpoint

        checkpoint.load(Path(run_dir) / checkpoint.FILENAME, cfg)
    return argv


def _hydra_run(argv: List[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .guards import NonFiniteError
    from .runner import RunInterrupted, RunWriteFailed, run

    try:
        argv = prepare(argv)
    except ConfigError as e:
        print(f"inet: config error: {e}", file=sys.stderr)
        sys.exit(2)
    _register_schema()

    @hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="config")
    def app(cfg: DictConfig) -> None:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            _sweep_job(cfg, hc)
            return
        try:
            run_cfg = to_run_config(cfg)
            run(run_cfg, Path(hc.runtime.output_dir), config_yaml(run_cfg))
        except ConfigError as e:
            print(f"inet: config error: {e}", file=sys.stderr)
            sys.exit(2)
        except RunInterrupted as e:
            print(f"inet: {e}", file=sys.stderr)
            sys.exit(e.exit_code)
        except NonFiniteError as e:
            print(f"inet: non-finite value: {e}", file=sys.stderr)
            sys.exit(3)
        except RunWriteFailed as e:
            print(f"inet: write failed: {e}", file=sys.stderr)
            sys.exit(e.exit_code)

    sys.argv = ["inet run", *argv]
    app()


def _sweep_job(cfg: DictConfig, hc: DictConfig) -> None:
    """One job of a sweep. A failure is recorded in the sweep directory and the job returns, so the
    launcher runs every other job; `SweepFailures` then makes `inet run -m` exit 1."""
    from .runner import run
    from .sweep import record_failure

    try:
        run_cfg = to_run_config(cfg)
        run(run_cfg, Path(hc.runtime.output_dir), config_yaml(run_cfg))
    except Exception as e:
        sweep_dir = Path(hc.sweep.dir)
        if not sweep_dir.is_absolute():
            sweep_dir = Path(hc.runtime.cwd) / sweep_dir
        path = record_failure(sweep_dir, hc.job.num, list(hc.overrides.task), Path(hc.runtime.output_dir), e)
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"inet: job {hc.job.num} ({hc.job.override_dirname}) failed: {type(e).__name__}: {first}\n"
              f"inet: recorded in {path}; the other jobs go on", file=sys.stderr)


def _sweep_failures_callback():
    """The Hydra callback (configs/config.yaml, hydra.callbacks) that ends a sweep with failed jobs with exit 1."""
    from hydra.experimental.callback import Callback

    class SweepFailures(Callback):
        def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
            from .sweep import FAILURES_MD, load_failures

            sweep_dir = Path(config.hydra.sweep.dir)
            records = load_failures(sweep_dir)
            if records:
                jobs = ", ".join(f"{r['job']} ({' '.join(r['overrides'])}): {r['error'].splitlines()[0]}"
                                 for r in records)
                print(f"inet: {len(records)} job(s) of the sweep failed: {jobs}\n"
                      f"inet: details in {sweep_dir / FAILURES_MD}", file=sys.stderr)
                sys.exit(1)

    return SweepFailures()


def _fail(message: str) -> None:
    print(f"inet: {message}", file=sys.stderr)
    sys.exit(2)


def _viz(args: List[str]) -> None:
    from .viz import NotARunError, write_viewer

    if len(args) != 1 or args[0].startswith("-"):
        _fail(f"viz takes one run directory, got {args}\n\n{USAGE}")
    try:
        path = write_viewer(Path(args[0]))
    except NotARunError as e:
        _fail(f"viz: {e}")
    print(f"viewer: {path}")


def _report(args: List[str]) -> None:
    from .report import ReportError, write_report

    out: Optional[str] = None
    dirs: List[str] = []
    it = iter(args)
    for a in it:
        if a in ("-o", "--out"):
            out = next(it, None)
            if out is None:
                _fail("report: -o needs a directory")
        elif a.startswith("-"):
            _fail(f"report: unknown option {a}\n\n{USAGE}")
        else:
            dirs.append(a)
    if not dirs:
        _fail(f"report needs at least one directory\n\n{USAGE}")
    try:
        path = write_report([Path(d) for d in dirs], Path(out) if out else Path(dirs[0]))
    except ReportError as e:
        _fail(f"report: {e}")
    print(path.read_text())
    print(f"report: {path}")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        _hydra_run(rest)
    elif cmd == "viz":
        _viz(rest)
    elif cmd == "report":
        _report(rest)
    else:
        print(f"inet: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
