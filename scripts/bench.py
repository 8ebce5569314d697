"""Throughput benchmark: lane-iterations per second of the engine, written as a table.

    python scripts/bench.py                      # CPU, the default cases
    python scripts/bench.py --device cuda --lanes 1 16 256 4096

Each case builds the engine from the experiment's config, warms up past
`learning_starts` (so CU updates are included), then times `--seconds` of steps.
With B > 1 lanes there are two cases: the default `cu.train_freq: 1` (one CU update
per lane-iteration, B per lockstep) and `cu.train_freq: B` (one CU update per
lockstep: the "fixed DQN batch" of DESIGN.md section 9).
Writes outputs/bench.md (and prints it).
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from inet.compose import compose
from inet.engine import Engine


def bench(experiment: str, lanes: int, train_freq: int, device: str, seconds: float, threads: int) -> dict:
    torch.set_num_threads(threads)
    cfg = compose([f"experiment={experiment}", f"lanes={lanes}", f"cu.train_freq={train_freq}", f"device={device}",
                   "iterations=100000000"])
    engine = Engine(cfg)
    while engine.iteration < cfg.cu.learning_starts + 200 * lanes:
        engine.step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.step()
        steps += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"experiment": experiment, "lanes": lanes, "device": device,
            "lockstep_it_per_s": steps / wall, "lane_it_per_s": steps * lanes / wall,
            "cu_updates_per_lockstep": cfg.cu.gradient_steps * lanes / cfg.cu.train_freq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=["multitask/base", "multitask/cu_inputs"])
    ap.add_argument("--lanes", nargs="+", type=int, default=[1, 16, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="outputs/bench.md")
    args = ap.parse_args()
    rows = [bench(e, b, f, args.device, args.seconds, args.threads)
            for e in args.experiments for b in args.lanes for f in sorted({1, b})]
    head = f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s)"
    lines = [f"# inet throughput ({head})", "",
             "| experiment | lanes | device | lockstep it/s | lane-it/s | CU updates per lockstep |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['experiment']} | {r['lanes']} | {r['device']} | {r['lockstep_it_per_s']:.0f} | "
              f"{r['lane_it_per_s']:.0f} | {r['cu_updates_per_lockstep']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
