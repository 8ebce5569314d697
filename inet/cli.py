"""The `inet` command. `inet run [overrides]` is a Hydra app; configs become plain dataclasses here.

This module is the only place that touches Hydra: it registers the schema,
composes YAML + overrides, converts the result to `RunConfig` and hands it to the
runner.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import ConfigError, RunConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
USAGE = """usage: inet <command> [args]

commands:
  run [-m] [key=value ...]   run an experiment, e.g. inet run experiment=multitask/base seed=1
                             (Hydra overrides; --help shows the config, --cfg job prints it)
"""


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=RunConfig)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Composed config -> validated RunConfig. Raises ConfigError naming the key."""
    from .config import validate

    try:
        run_cfg = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(explain(e)) from None
    validate(run_cfg)
    return run_cfg


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


def explain(e: BaseException) -> str:
    """Hydra's message plus its cause (which holds the key and the bad value), minus misleading hints."""
    lines = [ln for ln in str(e).splitlines() if not ln.startswith("To append to your config")]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) not in str(e):
        lines.append(str(cause).splitlines()[0])
    if any(ln.startswith("Could not override") for ln in lines):
        lines.append("The key is not in the schema: check its spelling; `inet run --cfg job` prints every key.")
    return "\n".join(lines)


def _hydra_run(argv: List[str]) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from .runner import run

    _register_schema()

    @hydra.main(version_base=None, config_path=str(CONFIG_DIR), config_name="config")
    def app(cfg: DictConfig) -> None:
        try:
            run_cfg = to_run_config(cfg)
        except ConfigError as e:
            print(f"inet: config error: {e}", file=sys.stderr)
            sys.exit(2)
        run(run_cfg, Path(HydraConfig.get().runtime.output_dir), OmegaConf.to_yaml(cfg))

    sys.argv = ["inet run", *argv]
    app()


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    cmd, rest = args[0], args[1:]
    if cmd == "run":
        _hydra_run(rest)
    else:
        print(f"inet: unknown command '{cmd}'\n\n{USAGE}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
