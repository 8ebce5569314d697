"""The README is the manual, so what it shows must work.

Every `inet` command in the README's bash blocks is run here, in the README's order, in
a fresh directory, with a short run appended (`iterations=200`, overriding the README's
own count); `<time>` in a path stands for the run or sweep an earlier command made. The
user experiment comes from the README's own YAML block, and the Python API block is
executed with `iterations=200`. Also: the README's size, and that it links only to
files in this repository.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SHORT = ["iterations=200", "log_interval=100", "progress=false", "trace.interval=100", "trace.window=10"]


def blocks(lang: str) -> list:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, re.S | re.M)


def inet_commands() -> list:
    """The README's `inet ...` / `.venv/bin/inet ...` lines (continuations joined, comments dropped)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if re.match(r"(\.venv/bin/)?inet\s", line):
                found.append(line)
    return found


def resolve(arg: str, cwd: Path) -> str:
    """A path with `<time>` -> the newest directory an earlier command made there."""
    if "<time>" not in arg:
        return arg
    matches = sorted(cwd.glob(arg.replace("<time>", "*")))
    assert matches, f"nothing made {arg} before the README uses it"
    return str(matches[-1].relative_to(cwd))


def test_readme_is_short_and_self_contained():
    assert len(README) <= 15_000, f"README has {len(README)} characters"
    title = "Interaction Networks: Using a Reinforcement Learner to train other Machine Learning algorithms"
    assert f"Florian Dietz, *{title}*, 2022" in " ".join(README.split())
    links = re.findall(r"\]\(([^)#]+)[^)]*\)", README)
    assert links and all(not link.startswith(("http", "/", "..")) and (ROOT / link).exists() for link in links), links
    assert not re.search(r"(?<!\.)\.\./", README) and "DESIGN.md" not in README
    assert not re.search(r"^tensorboard ", README, re.M), "a bare `tensorboard` is not on PATH"


def test_every_readme_inet_command_runs(tmp_path):
    commands = inet_commands()
    assert {shlex.split(c)[1] for c in commands} >= {"run", "report", "viz", "--version"}, commands
    (mine,) = [b for b in blocks("yaml") if b.splitlines()[1].startswith("# my_configs/")]
    path = tmp_path / mine.splitlines()[1][2:]
    path.parent.mkdir(parents=True)
    path.write_text(mine)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in commands:
        args = [resolve(a, tmp_path) for a in shlex.split(command)[1:]]
        if args[0] == "run":  # after the README's overrides (the last wins), before a trailing `--cfg job`
            at = args.index("--cfg") if "--cfg" in args else len(args)
            args[at:at] = SHORT + (["hydra.launcher.n_jobs=2"] if "-m" in args else [])
        proc = subprocess.run([sys.executable, "-m", "inet.cli", *args], capture_output=True, text=True,
                              timeout=600, cwd=tmp_path, env=env)
        assert proc.returncode == 0, f"README: {command}\n{proc.stderr[-3000:]}"


def test_readme_python_api_block_runs(tmp_path):
    (code,) = [b for b in blocks("python") if "inet.compose(" in b]
    code = re.sub(r"iterations=\d+", "iterations=200", code)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"\{1: [0-9.]+\}", proc.stdout)
