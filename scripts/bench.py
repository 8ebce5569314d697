"""Throughput benchmark: inet against a hand-written plain-torch loop of the same work (issue 16).

    python scripts/bench.py                                   # CPU, the default cases
    python scripts/bench.py --experiments multitask/base multitask/cu_inputs --lanes 1 16 256
    python scripts/bench.py --device cuda --lanes 1 256 4096 65536
    python scripts/bench.py --profile                         # where one inet iteration's time goes

Each case (experiment, lanes, train_freq, device) builds inet's engine and the
reference loop of scripts/reference.py from the same config, warms both up past
`learning_starts` (so CU updates are included), then times them interleaved:
`--rounds` rounds of `--seconds` each of inet, then the reference. The table gives
the median lane-iterations per second of each and the ratio inet / reference.
By default each lane count B runs with `cu.train_freq: B` (one CU update per
lockstep, DESIGN.md section 9); `--train-freq 1` adds B updates per lockstep.
Writes outputs/bench.md (and prints it).

`--profile` instead times each phase of inet's iteration (CU act, PU runs, env
feedback, node losses, CU input gradient, tape sweep, PU optimizer, CU observe and
training, tape prune, KPI trackers, other) by wrapping the bound methods of one
Engine's components; nothing under inet/ changes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import Reference  # noqa: E402

from inet.compose import compose  # noqa: E402
from inet.engine import Engine  # noqa: E402


def case_config(experiment: str, lanes: int, train_freq: int, device: str):
    """The composed config of one case (a run long enough that epsilon stays in its decay)."""
    return compose([f"experiment={experiment}", f"lanes={lanes}", f"cu.train_freq={train_freq}", f"device={device}",
                    "iterations=100000000"])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(step: Callable[[], object], lanes: int, seconds: float, device: str) -> float:
    """Lane-iterations per second of `step` over about `seconds`."""
    _sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    _sync(device)
    return steps * lanes / (time.perf_counter() - start)


def warm(step: Callable[[], object], iteration: Callable[[], int], until: int) -> None:
    while iteration() < until:
        step()


def bench(experiment: str, lanes: int, train_freq: int, device: str, seconds: float, rounds: int,
          threads: int) -> dict:
    """One case: inet and the reference, interleaved for `rounds` rounds; medians and their ratio."""
    torch.set_num_threads(threads)
    cfg = case_config(experiment, lanes, train_freq, device)
    engine, ref = Engine(cfg), Reference(cfg)
    until = cfg.cu.learning_starts + 200 * lanes
    warm(engine.step, lambda: engine.iteration, until)
    warm(ref.step, lambda: ref.iteration, until)
    inet_runs, ref_runs = [], []
    for _ in range(rounds):
        inet_runs.append(timed(engine.step, lanes, seconds, device))
        ref_runs.append(timed(ref.step, lanes, seconds, device))
    inet_rate, ref_rate = statistics.median(inet_runs), statistics.median(ref_runs)
    return {"experiment": experiment, "lanes": lanes, "train_freq": train_freq, "device": device,
            "cu_updates_per_lockstep": cfg.cu.gradient_steps * lanes / train_freq,
            "inet": inet_rate, "reference": ref_rate, "ratio": inet_rate / ref_rate,
            "inet_runs": inet_runs, "reference_runs": ref_runs}


def table(rows: List[dict], head: str) -> str:
    """The markdown table of `bench` rows."""
    lines = [f"# inet vs the plain-torch reference ({head})", "",
             "| experiment | lanes | train_freq | CU updates / lockstep | device | inet lane-it/s | "
             "reference lane-it/s | inet / reference |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['experiment']} | {r['lanes']} | {r['train_freq']} | {r['cu_updates_per_lockstep']:g} | "
              f"{r['device']} | {r['inet']:,.0f} | {r['reference']:,.0f} | {r['ratio']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"


# -- where the time goes ------------------------------------------------------------------
# (phase, path of the object from the engine, method name); "*" walks every value of a dict.
PHASES: List[Tuple[str, str, str]] = [
    ("CU act", "cu", "act"),
    ("PU runs / env actions (Rollout.apply)", "rollout", "apply"),
    ("env feedback", "envs.*", "feedback"),
    ("node losses", "", "_node_losses"),
    ("CU input_grad", "cu", "input_grad"),
    ("tape sweep", "tape", "sweep"),
    ("PU optimizer", "pu_optimizer", "step"),
    ("CU observe/train", "cu", "observe"),
    ("tape prune", "tape", "prune"),
    ("KPI trackers", "trackers.*", "update"),
]
OTHER = "other (Engine.step itself: observe, history, transition, ...)"


class PhaseTimer:
    """Exclusive wall time per phase: a wrapped call's time minus that of wrapped calls inside it."""

    def __init__(self, device: str):
        self.device = device
        self.total: Dict[str, float] = {name: 0.0 for name, _, _ in PHASES}
        self._children: List[float] = []

    def wrap(self, phase: str, fn: Callable) -> Callable:
        def timed_call(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            self._children.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(self.device)
                elapsed = time.perf_counter() - start
                inner = self._children.pop()
                self.total[phase] += elapsed - inner
                if self._children:
                    self._children[-1] += elapsed
        return timed_call


def _targets(engine: Engine, path: str) -> List[object]:
    """The objects `path` names from the engine ("" the engine, "a.b", "envs.*" every value of a dict)."""
    objs: List[object] = [engine]
    for part in filter(None, path.split(".")):
        if part == "*":
            objs = [v for o in objs for v in o.values()]
            continue
        missing = [o for o in objs if not hasattr(o, part)]
        if missing:
            raise SystemExit(f"profile: the engine has no '{path}' ({type(missing[0]).__name__} lacks '{part}'); "
                             "inet changed, so update PHASES in scripts/bench.py")
        objs = [getattr(o, part) for o in objs]
    return objs


def instrument(engine: Engine, timer: PhaseTimer) -> None:
    """Replace each phase's bound method on the engine's components by a timed one (instance attributes)."""
    for phase, path, method in PHASES:
        for obj in _targets(engine, path):
            fn = getattr(obj, method, None)
            if not callable(fn):
                raise SystemExit(f"profile: {type(obj).__name__} (engine.{path or 'self'}) has no method '{method}' "
                                 f"for phase '{phase}'; inet changed, so update PHASES in scripts/bench.py")
            setattr(obj, method, timer.wrap(phase, fn))


def profile(experiment: str, lanes: int, train_freq: int, device: str, seconds: float, threads: int) -> str:
    """Per-phase ms per lockstep iteration and share of it, after a warm-up past learning_starts."""
    torch.set_num_threads(threads)
    cfg = case_config(experiment, lanes, train_freq, device)
    engine = Engine(cfg)
    warm(engine.step, lambda: engine.iteration, cfg.cu.learning_starts + 200 * lanes)
    timer = PhaseTimer(device)
    instrument(engine, timer)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.step()
        steps += 1
    _sync(device)
    wall = time.perf_counter() - start
    shares = dict(timer.total)
    shares[OTHER] = wall - sum(timer.total.values())
    lines = [f"# Where one inet iteration's time goes: {experiment}, {lanes} lane(s), train_freq {train_freq}, "
             f"{device}, {threads} thread(s)", "",
             f"{steps} lockstep iterations in {wall:.1f} s: {1e3 * wall / steps:.3f} ms each, "
             f"{steps * lanes / wall:,.0f} lane-it/s (timing each phase adds a little overhead).", "",
             "| phase | ms / iteration | % |", "|---|---|---|"]
    lines += [f"| {name} | {1e3 * t / steps:.3f} | {100 * t / wall:.1f} |" for name, t in shares.items()]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["multitask/cu_inputs"])
    ap.add_argument("--lanes", nargs="+", type=int, default=[1, 256])
    ap.add_argument("--train-freq", choices=["lanes", "1", "both"], default="lanes",
                    help="cu.train_freq per case: B (one CU update per lockstep), 1, or both")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=5.0, help="per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="print inet's per-phase split instead (first case)")
    ap.add_argument("--out", default="outputs/bench.md")
    args = ap.parse_args()
    freqs = {"lanes": lambda b: [b], "1": lambda b: [1], "both": lambda b: sorted({1, b})}[args.train_freq]
    cases = [(e, b, f) for e in args.experiments for b in args.lanes for f in freqs(b)]
    if args.profile:
        print(profile(*cases[0][:3], args.device, args.seconds, args.threads))
        return
    rows = [bench(e, b, f, args.device, args.seconds, args.rounds, args.threads) for e, b, f in cases]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else cpu_name()
    text = table(rows, f"torch {torch.__version__}, {device}, {args.threads} thread(s), median of {args.rounds} "
                       f"interleaved rounds of {args.seconds:g} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
