"""inet as a package: `inet --version`, the user's own config directory, and a wheel installed elsewhere.

The wheel test builds the wheel offline from a copy of the sources, installs it with
--no-deps into a fresh virtual environment that sees this environment's packages
(torch, Hydra, ...) but not this checkout, and runs `inet` from a directory outside the
checkout: run, --config-dir, report, viz (the viewer's inlined plotly.js) and
`inet reproduce --dry-run` (the paper's set, found in the package's own configs).
"""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from inet.version import __version__

ROOT = Path(__file__).resolve().parent.parent
TINY = ["iterations=200", "log_interval=100", "progress=false", "trace.interval=100", "trace.window=10"]
MINE = """# @package _global_
defaults:
  - multitask/base
  - _self_
name: mine/v1
pus:
  pu1: {hidden: [8]}
"""


def inet(*args: str, cwd: Path, exe: tuple = (sys.executable, "-m", "inet.cli"),
         env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def user_configs(tmp_path: Path) -> Path:
    """A user's config directory with one experiment, experiment/mine.yaml (multitask/base, a smaller pu1)."""
    (tmp_path / "my_configs" / "experiment").mkdir(parents=True)
    (tmp_path / "my_configs" / "experiment" / "mine.yaml").write_text(MINE)
    return tmp_path / "my_configs"


def test_version(tmp_path):
    proc = inet("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"inet {__version__}"


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_user_experiment_directory(tmp_path, how):
    configs = user_configs(tmp_path)
    where = ["--config-dir", str(configs)] if how == "--config-dir" else [f"hydra.searchpath=[file://{configs}]"]
    proc = inet("run", *where, "experiment=mine", *TINY, "hydra.run.dir=good", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: mine/v1" in (tmp_path / "good" / ".hydra" / "config.yaml").read_text()

    for bad, named in [("lanes=0", "lanes: must be >= 1"), ("pus.pu1.hiddn=[4]", "pus.pu1.hiddn: unknown key"),
                       ("experiment=mien", "no option 'mien'; choose one of: emulate/")]:
        args = [a for a in ("experiment=mine", *TINY) if not (bad.startswith("experiment") and a.startswith("exp"))]
        proc = inet("run", *where, *args, bad, "hydra.run.dir=bad", cwd=tmp_path)
        assert proc.returncode == 2 and named in proc.stderr, (bad, proc.stderr)
        assert not (tmp_path / "bad").exists(), f"{bad}: a rejected config left a run directory"


def test_missing_config_dir_is_named(tmp_path):
    proc = inet("run", "--config-dir", "nowhere", "hydra.run.dir=bad", cwd=tmp_path)
    assert proc.returncode == 2 and "--config-dir: nowhere is not a directory" in proc.stderr
    assert not (tmp_path / "bad").exists()


def _fresh_venv(tmp_path: Path) -> Path:
    """A virtual environment without inet that sees this environment's installed packages (not this checkout)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "test_env.pth").write_text("\n".join(sorted(ours)) + "\n")
    return venv


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "inet", src / "inet", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
                    str(src)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("inet-*.whl"))
    venv = _fresh_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    # --force-reinstall: the test environment's own inet (an editable install) is visible and the same version
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", "--no-index",
                    "--force-reinstall", str(wheel)], check=True, capture_output=True, env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    exe = (str(venv / "bin" / "inet"),)
    where = subprocess.run([venv / "bin" / "python", "-c", "import inet; print(inet.__file__)"], capture_output=True,
                           text=True, cwd=work, env=env, check=True).stdout
    assert where.startswith(str(venv)), f"inet imported from {where}, not the installed wheel"

    assert inet("--version", cwd=work, exe=exe, env=env).stdout.strip() == f"inet {__version__}"
    proc = inet("run", "experiment=multitask/base", *TINY, cwd=work, exe=exe, env=env)
    assert proc.returncode == 0, proc.stderr
    run_dir = next((work / "outputs" / "runs" / "multitask" / "base").iterdir())
    configs = user_configs(tmp_path)
    proc = inet("run", "--config-dir", str(configs), "experiment=mine", *TINY, "hydra.run.dir=mine", cwd=work, exe=exe,
                env=env)
    assert proc.returncode == 0, proc.stderr

    proc = inet("report", "outputs", "mine", "-o", "report", cwd=work, exe=exe, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "multitask/base" in (work / "report" / "report.md").read_text()
    proc = inet("viz", str(run_dir), cwd=work, exe=exe, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Plotly" in (run_dir / "viewer.html").read_text()[:6_000_000]
    proc = inet("reproduce", "--dry-run", cwd=work, exe=exe, env=env)
    assert proc.returncode == 0 and "reduce/xor" in proc.stdout and "multitask/pretrained" in proc.stdout, proc.stderr
