"""Run the reduce grid (every f x seeds x variant) and write a markdown table of the length KPIs.

Each run: `experiment=reduce/<f> seed=S iterations=N` plus the variant's overrides, the
Engine stepped in this process (one thread, one run at a time), greedy evaluation every
`--eval-interval` iterations on 200 instances per length. Reported per run: `max_length_reached`
(curriculum), `max_length_reliable` at the last evaluation, the best `max_length_reliable` of any
evaluation, and the iterations run.

    python scripts/reduce_table.py --iterations 30000 --out outputs/reduce_table.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inet.cli import compose
from inet.engine import Engine
from inet.evaluation import reliable_prefix

WHEELS = ["training_wheels.teacher=inet.tasks.reduce.teacher"]
VARIANTS = {
    "wheels+stabilisers": lambda n: [*WHEELS, f"training_wheels.iterations={n // 2}", "+stabilisers=on"],
    "wheels": lambda n: [*WHEELS, f"training_wheels.iterations={n // 2}"],
    "stabilisers": lambda n: ["+stabilisers=on"],
    # 30% of the instances rehearse a length drawn from [1, current length]
    "wheels+mix": lambda n: [*WHEELS, f"training_wheels.iterations={n // 2}", "envs.reduce.curriculum.mix=0.3"],
    # no uniformly random phase at the start: epsilon 0.01 from iteration 0, the CU trains from iteration 0
    "wheels+stabilisers+no-random-phase": lambda n: [*WHEELS, f"training_wheels.iterations={n // 2}", "+stabilisers=on",
                                                     "cu.exploration_initial_eps=0.01", "cu.learning_starts=0"],
    "plain": lambda n: [],
}


def one_run(f: str, seed: int, variant: str, iterations: int, eval_interval: int) -> dict:
    overrides = [f"experiment=reduce/{f}", f"seed={seed}", f"iterations={iterations}",
                 f"evaluation.interval={eval_interval}", *VARIANTS[variant](iterations)]
    engine = Engine(compose(overrides))
    start = time.perf_counter()
    while engine.iteration < iterations:
        engine.step()
    s = engine.task_summary()
    return {"f": f, "seed": seed, "variant": variant, "iterations": engine.iteration,
            "max_length_reached": int(s["max_length_reached"]), "max_length_reliable": s["max_length_reliable"],
            "best_max_length_reliable": s["best_max_length_reliable"],
            "task_success": engine.metrics()["task_success"], "eval_success_by_length": s["eval_success_by_length"],
            "seconds": round(time.perf_counter() - start, 1), "overrides": " ".join(overrides)}


def table(rows: list) -> str:
    lines = ["| f | variant | seed | iterations | max_length_reached | max_length_reliable (end) | best reliable | "
             "train success (last 200) | eval success by L (end) |", "|---" * 9 + "|"]
    for r in rows:
        ev = " ".join(f"{n}:{v:.2f}" for n, v in sorted(r["eval_success_by_length"].items()))
        lines.append(f"| {r['f']} | {r['variant']} | {r['seed']} | {r['iterations']} | {r['max_length_reached']} | "
                     f"{r['max_length_reliable']} | {r['best_max_length_reliable']} | {r['task_success']:.2f} | {ev} |")
    return "\n".join(lines)


def summary(rows: list) -> str:
    """One line per (f, variant): each KPI as seed0/seed1/seed2."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["variant"], r["f"]), []).append(r)
    lines = ["| variant | f | iterations | max_length_reached | max_length_reliable (end) | reliable prefix (end) "
             "| best max_length_reliable |", "|---|---|---|---|---|---|---|"]
    for (variant, f), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        col = lambda k: "/".join(str(int(r[k])) for r in rs)  # noqa: E731
        prefix = "/".join(str(reliable_prefix({int(n): v for n, v in r["eval_success_by_length"].items()}, 0.95))
                          for r in rs)
        lines.append(f"| {variant} | {f} | {rs[0]['iterations']} | {col('max_length_reached')} | "
                     f"{col('max_length_reliable')} | {prefix} | {col('best_max_length_reliable')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", nargs="+", default=["constant", "last", "and", "or", "xor"])
    p.add_argument("--variants", nargs="+", default=["wheels+stabilisers"], choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=30000)
    p.add_argument("--eval-interval", type=int, default=5000)
    p.add_argument("--out", type=Path, default=Path("outputs/reduce_table.md"))
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonl = args.out.with_suffix(".jsonl")
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {(r["f"], r["variant"], r["seed"], r["iterations"]) for r in rows}
    for variant in args.variants:
        for f in args.functions:
            for seed in args.seeds:
                if (f, variant, seed, args.iterations) in done:
                    continue
                r = one_run(f, seed, variant, args.iterations, args.eval_interval)
                rows.append(r)
                with open(jsonl, "a") as fh:
                    fh.write(json.dumps(r) + "\n")
                args.out.write_text(summary(rows) + "\n\n" + table(rows) + "\n")
                print(json.dumps({k: r[k] for k in ("f", "variant", "seed", "max_length_reached",
                                                     "max_length_reliable", "best_max_length_reliable", "seconds")}),
                      flush=True)


if __name__ == "__main__":
    main()
