"""The `inet` command. `inet run [overrides]` is a Hydra app; configs become plain dataclasses here.

Composition (schema, YAML + overrides -> validated RunConfig) lives in inet/compose.py;
this module handles the arguments, runs, reports and viewers, and sweep jobs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

from .compose import CONFIG_DIR, compose, config_yaml, override_key, register_schema, to_run_config
from .config import ConfigError

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
"""


CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


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
    Raises ConfigError naming the key and the fix. Multirun and other flags (--cfg, -m) pass through.
    """
    config_dirs, flags, argv = split_config_dirs(argv)
    if any(a.startswith("-") for a in argv):
        return [*flags, *argv]
    from .run.runner import require_new_run_dir

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

    sys.argv = ["inet run", *argv]
    app()


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


def _viz(args: List[str]) -> None:
    from .analysis.viz import NotARunError, write_viewer

    if len(args) != 1 or args[0].startswith("-"):
        _fail(f"viz takes one run directory, got {args}\n\n{USAGE}")
    try:
        path = write_viewer(Path(args[0]))
    except NotARunError as e:
        _fail(f"viz: {e}")
    print(f"viewer: {path}")


def _report(args: List[str]) -> None:
    from .analysis.report import ReportError, write_report

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
    else:
        print(f"inet: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
