"""The `inet` command. `inet run [overrides]` is a Hydra app; configs become plain dataclasses here.

Composition (schema, YAML + overrides -> validated RunConfig) lives in inet/compose.py;
this module handles the arguments, runs, reports and viewers, and sweep jobs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from .compose import CONFIG_DIR, compose, config_yaml, override_key, register_schema, schema_keys, to_run_config
from .analysis.sweep import DIRNAME_NEUTRAL, job_dirname
from .config import ConfigError

# the sweep job directory name (configs/config.yaml, hydra.sweep.subdir); registered on import, so that
# launcher workers, which import this module to run a job, resolve it too
OmegaConf.register_new_resolver("inet_job_dir", lambda overrides: job_dirname(list(overrides)), replace=True)

USAGE = """usage: inet <command> [args]   (inet --version prints the version)

commands:
  run [-m] [key=value ...]   run an experiment, e.g. inet run experiment=multitask/base seed=1
                             (Hydra overrides; --help shows the config, --cfg job prints it;
                             -m runs a sweep through the joblib launcher;
                             --config-dir DIR adds your configs: experiment=mine is DIR/experiment/mine.yaml)
  report DIR... [-o OUT]     aggregate the runs under DIR... into OUT/report.md, report.csv, plots/
                             (OUT defaults to the first DIR)
  viz RUN_DIR                write RUN_DIR/viewer.html, the run viewer (one offline page)
  reproduce [--help]         the paper's experiment set as sweeps, then outputs/reproduce/report.md
  ablations [--help]         the section 6 mechanisms alone and combined, then outputs/ablations/report.md
"""


CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
# Hydra's own flags of `inet run` (inet run --hydra-help); any other `-x` is refused before argparse sees it,
# which would otherwise prefix-match `--experiment=...` to `--experimental-rerun`
HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve", "--package", "-p", "--run",
               "-r", "--multirun", "-m", "--shell-completion", "-sc", "--config-path", "-cp", "--config-name", "-cn",
               "--info", "-i", "--experimental-rerun")
MULTIRUN_FLAGS = ("--multirun", "-m")
DEFAULT_RUN_DIR, DEFAULT_SWEEP_DIR = "outputs/runs/${name}", "outputs/multiruns/${now}"  # as in configs/config.yaml


def split_config_dirs(argv: Sequence[str]) -> Tuple[List[str], List[str], List[str]]:
    """(the directories of `--config-dir DIR` / `--config-dir=DIR` / `-cd DIR`, those flags' arguments, the rest)."""
    dirs: List[str] = []
    flags: List[str] = []
    rest: List[str] = []
    it = iter(argv)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in CONFIG_DIR_FLAGS:
            value = value if eq else next(it, "")
            if not value:
                raise ConfigError(f"{flag}: needs a directory, e.g. {flag} my_configs")
            dirs.append(value)
            flags += [flag, value]
        else:
            rest.append(a)
    return dirs, flags, rest


def check_flags(argv: Sequence[str]) -> None:
    """Refuse a flag Hydra does not have; `--key=value` is an override written with dashes, and the message says so."""
    for a in argv:
        flag = a.split("=", 1)[0]
        if not a.startswith("-") or flag in HYDRA_FLAGS:
            continue
        bare = a.lstrip("-")
        if "=" in bare or override_key(bare) in schema_keys():
            raise ConfigError(f"{a}: overrides take no dashes; write {bare}")
        raise ConfigError(f"{a}: unknown option; inet run takes key=value overrides and the flags -m, --cfg job, "
                          "--config-dir DIR, --help (see inet run --help)")


def sweep_jobs(overrides: Sequence[str]) -> List[List[str]]:
    """The jobs of a sweep (`seed=0,1 lr=1e-3,1e-4` -> four override lists), as Hydra's basic sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # Hydra's OverrideParseException names the override and the position
        raise ConfigError(str(e).splitlines()[0]) from None
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_sweep(argv: Sequence[str], config_dirs: Sequence[str]) -> None:
    """Compose every job of a sweep before the launcher starts, so a typo or a bad value gets inet's message."""
    keys = [a for a in argv if not override_key(a).startswith("hydra") or override_key(a) == "hydra.searchpath"]
    from .run.runner import check_device, check_writable

    check_writable(Path((_value(argv, "hydra.sweep.dir") or DEFAULT_SWEEP_DIR).split("$")[0]), "hydra.sweep.dir")
    jobs = sweep_jobs(keys)
    names = [job_dirname(job) for job in jobs]
    for n, name in enumerate(names):
        if names.index(name) != n:
            raise ConfigError(f"jobs {names.index(name)} and {n} of the sweep would share the directory {name}: "
                              f"they differ only in keys left out of job names ({', '.join(DIRNAME_NEUTRAL)}); "
                              "sweep such a key in a sweep of its own")
    for n, job in enumerate(jobs):
        try:
            check_device(compose(job, config_dirs).device)
        except ConfigError as e:
            raise ConfigError(f"{e} (sweep job {n}: {' '.join(job)})" if n else str(e)) from None


def _value(argv: Sequence[str], key: str) -> Optional[str]:
    vals = [a.split("=", 1)[1] for a in argv if "=" in a and override_key(a) == key]
    return vals[-1] if vals else None


def prepare(argv: List[str]) -> List[str]:
    """Check a single run's arguments before Hydra creates or touches any directory.

    - `resume=true` needs `hydra.run.dir`; the run's own overrides (its
      .hydra/overrides.yaml) are reapplied under the new ones, and Hydra is told not
      to rewrite that .hydra/; the checkpoint is checked against the config.
    - without `resume=true`, a `hydra.run.dir` that already holds a run is refused.
    - the composed config is validated (ranges, names, graph), so a bad value fails here,
      with the user's `--config-dir` and `hydra.searchpath` directories searched as Hydra will.
    - a flag Hydra does not have is refused (`--experiment=x` names the override `experiment=x`).
    - every job of a sweep (`-m`) is composed, so a typo gets inet's message before any job starts.
    Raises ConfigError naming the key and the fix. Other flags (--cfg, -sc) pass through.
    """
    config_dirs, flags, argv = split_config_dirs(argv)
    check_flags(argv)
    if any(a in MULTIRUN_FLAGS for a in argv) and not any(a.split("=", 1)[0] in ("--cfg", "-c", "--help", "-h")
                                                          for a in argv):
        check_sweep([a for a in argv if not a.startswith("-")], config_dirs)
    if any(a.startswith("-") for a in argv):
        return [*flags, *argv]
    from .run.runner import check_device, check_writable, require_new_run_dir

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
    keys = [a for a in argv if not override_key(a).startswith("hydra") or override_key(a) == "hydra.searchpath"]
    cfg = compose(keys, config_dirs)
    check_device(cfg.device)
    check_writable(Path(run_dir or DEFAULT_RUN_DIR.split("$")[0]), "hydra.run.dir")
    if resume:
        from .run import checkpoint

        checkpoint.load(Path(run_dir) / checkpoint.FILENAME, cfg)
    return [*flags, *argv]


def _hydra_run(argv: List[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .guards import NonFiniteError
    from .run.runner import RunInterrupted, RunWriteFailed, run

    try:
        if any(a in ("--help", "-h") for a in argv):
            print(_run_help(argv))
            return
        argv = prepare(argv)
    except ConfigError as e:
        print(f"inet: config error: {e}", file=sys.stderr)
        sys.exit(2)
    register_schema()

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

    # the program name Hydra prints in its help and, for `-sc install=bash`, registers for completion
    sys.argv = ["inet" if any(a in ("-sc", "--shell-completion") for a in argv) else "inet run", *argv]
    app()


def _run_help(argv: List[str]) -> str:
    """`inet run [overrides] --help`: the groups and keys, valued as these overrides compose them."""
    from .compose import group_options, search_dirs
    from .run_help import GROUPS, run_help

    config_dirs, _, argv = split_config_dirs(argv)
    overrides = [a for a in argv if not a.startswith("-") and (not override_key(a).startswith("hydra")
                                                               or override_key(a) == "hydra.searchpath")]
    cfg = compose(overrides, config_dirs)
    dirs = [*search_dirs(overrides), *(Path(d) for d in config_dirs)]
    return run_help(cfg, {g: group_options(g, dirs) for g in GROUPS})


def _complete(args: List[str]) -> None:
    """TAB in bash (`inet run -sc install=bash` set it up): the shell runs `inet -sc query=bash` with the
    line in COMP_LINE. `inet <TAB>` offers the commands; `inet run ...<TAB>` Hydra's keys and groups."""
    import os

    import contextlib
    import io

    from .compose import group_options

    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    word = "" if line.endswith(" ") or not words else words[-1]
    if len(words) >= 2 and words[1] == "run" and (len(words) > 2 or line.endswith(" ")):
        if word and (word.startswith("experiment=") or "experiment=".startswith(word)):
            # experiments sit in sub-folders, which Hydra would offer as groups of their own (experiment/multitask=)
            print(" ".join(o for o in (f"experiment={x}" for x in group_options("experiment")) if o.startswith(word)))
            return
        os.environ["COMP_LINE"] = " ".join([words[0], *words[2:]]) + (" " if line.endswith(" ") else "")
        with contextlib.redirect_stdout(io.StringIO()) as hydra_out:
            _hydra_run(args)
        print(" ".join("experiment=" if c == "experiment/" else c for c in hydra_out.getvalue().split()))
    elif len(words) == 1 or (len(words) == 2 and not line.endswith(" ")):
        print(" ".join(COMMANDS))


def _sweep_job(cfg: DictConfig, hc: DictConfig) -> None:
    """One job of a sweep. A failure is recorded in the sweep directory and the job returns, so the
    launcher runs every other job; `SweepFailures` then makes `inet run -m` exit 1."""
    from .analysis.sweep import record_failure
    from .run.runner import run

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
    """The Hydra callback (inet/configs/config.yaml, hydra.callbacks) that ends a sweep with failed jobs with exit 1."""
    from hydra.experimental.callback import Callback

    class SweepFailures(Callback):
        def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
            from .analysis.sweep import FAILURES_MD, load_failures

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


COMMANDS = ("run", "report", "viz", "reproduce", "ablations")
VIZ_USAGE = """usage: inet viz RUN_DIR

Write RUN_DIR/viewer.html: the run viewer, one offline page (trace windows, node values, actions)."""
REPORT_USAGE = """usage: inet report DIR... [-o OUT]

Aggregate every run under DIR... (sweeps included) into OUT/report.md, report.csv and plots/:
per experiment variant, mean, std and 95% interval of each KPI over seeds; failed and
incomplete runs are listed with their reason. OUT defaults to the first DIR."""


def _viz(args: List[str]) -> None:
    from .analysis.viz import NotARunError, write_viewer

    if args and args[0] in ("-h", "--help"):
        print(VIZ_USAGE)
        return
    if len(args) != 1 or args[0].startswith("-"):
        _fail(f"viz takes one run directory, got {args}\n\n{USAGE}")
    try:
        path = write_viewer(Path(args[0]))
    except NotARunError as e:
        _fail(f"viz: {e}")
    print(f"viewer: {path}")


def _report(args: List[str]) -> None:
    from .analysis.report import ReportError, write_report

    if args and args[0] in ("-h", "--help"):
        print(REPORT_USAGE)
        return
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
    if args[0] in ("-V", "--version"):
        from .version import __version__

        print(f"inet {__version__}")
        return
    if args[0] in ("-sc", "--shell-completion"):
        _complete(args)
        return
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        _hydra_run(rest)
    elif cmd == "viz":
        _viz(rest)
    elif cmd == "report":
        _report(rest)
    elif cmd == "reproduce":
        from .reproduce import main as reproduce

        sys.exit(reproduce(rest))
    elif cmd == "ablations":
        from .ablations import main as ablations

        sys.exit(ablations(rest))
    else:
        print(f"inet: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
