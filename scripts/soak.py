"""Soak test: run an experiment for a long time and watch memory and the tape.

    python scripts/soak.py                                  # multitask/base, 10^6 iterations
    python scripts/soak.py --iterations 200000 --every 20000 --experiment multitask/cu_inputs
    python scripts/soak.py --experiment multitask/cu_inputs --lanes 256 --iterations 10000000 \
        --every 500000 cu.train_freq=256                   # 10^7 lane-iterations, one CU update per lockstep

Samples the process's resident memory (RSS) and the tape's live records every
`--every` lane-iterations, together with the largest tape seen since the last
sample and the replay fill. Iterations are lane-iterations; with many lanes pass
`cu.train_freq=<lanes>` (one CU update per lockstep) to keep a long soak short.
Writes outputs/soak.md (a table, plus RSS growth after the replay buffer is full
and the largest tape) and outputs/soak.csv. A leak shows as RSS that keeps
growing once the replay buffer has stopped growing.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import List

import pandas as pd
import torch

from inet.compose import compose
from inet.engine import Engine


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; elsewhere the peak from getrusage)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def tape_kib(tape) -> float:
    """The tape's tensors: the records' stored inputs and, with `tape.recompute: stored`, the kept parameters."""
    inputs = sum(x.numel() * x.element_size() for r in tape.records.values() for x in r.inputs)
    kept = sum(t.numel() * t.element_size() for ps in tape.snapshots.values() for t in ps)
    return (inputs + kept) / 1024


def soak(experiment: str, iterations: int, every: int, lanes: int, seed: int, overrides: List[str]) -> pd.DataFrame:
    torch.set_num_threads(1)
    cfg = compose([f"experiment={experiment}", f"iterations={iterations}", f"lanes={lanes}", f"seed={seed}",
                   *overrides])
    engine = Engine(cfg)
    rows, start, peak_tape, peak_kib, next_sample = [], time.perf_counter(), 0, 0.0, 0
    while engine.iteration < iterations:
        engine.step()
        peak_tape, peak_kib = max(peak_tape, len(engine.tape)), max(peak_kib, tape_kib(engine.tape))
        if engine.iteration >= next_sample or engine.iteration >= iterations:
            rows.append({"iteration": engine.iteration, "rss_mb": rss_mb(), "tape_records": len(engine.tape),
                         "tape_records_max": peak_tape, "tape_kib_max": peak_kib, "replay_size": engine.cu.replay.size,
                         "task_success": engine.kpis.success.mean,
                         "wall_seconds": time.perf_counter() - start})
            print(rows[-1], flush=True)
            peak_tape, peak_kib, next_sample = 0, 0.0, next_sample + every
    return pd.DataFrame(rows)


def report(df: pd.DataFrame, title: str, buffer_size: int) -> str:
    full = df[df["replay_size"] >= buffer_size]
    growth = (f"{full['rss_mb'].iloc[-1] - full['rss_mb'].iloc[0]:+.1f} MiB from iteration "
              f"{full['iteration'].iloc[0]:,} to {full['iteration'].iloc[-1]:,}" if len(full) > 1 else "n/a")
    lines = [f"# Soak: {title}", "", f"RSS growth after the replay buffer is full: {growth}; "
             f"largest tape at any iteration: {int(df['tape_records_max'].max())} records, "
             f"{df['tape_kib_max'].max():.1f} KiB of tensors.", "",
             "| iteration | RSS MiB | tape records | max tape since last row | max tape KiB since last row | "
             "replay size | task_success | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.iteration:,} | {r.rss_mb:.1f} | {r.tape_records} | {r.tape_records_max} | {r.tape_kib_max:.1f} | "
              f"{r.replay_size} | {r.task_success:.3f} | {r.wall_seconds:.0f} |" for r in df.itertuples()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="multitask/base")
    ap.add_argument("--iterations", type=int, default=1_000_000)
    ap.add_argument("--every", type=int, default=50_000)
    ap.add_argument("--lanes", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/soak")
    ap.add_argument("overrides", nargs="*", help="extra config overrides, e.g. tape.horizon=8")
    args = ap.parse_args()
    if args.iterations < 1 or args.every < 1:
        ap.error("--iterations and --every must be >= 1")
    df = soak(args.experiment, args.iterations, args.every, args.lanes, args.seed, args.overrides)
    buffer_size = compose([f"experiment={args.experiment}", *args.overrides]).cu.buffer_size
    text = report(df, f"{args.experiment}, {args.iterations:,} iterations, {args.lanes} lane(s), seed {args.seed}",
                  buffer_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
