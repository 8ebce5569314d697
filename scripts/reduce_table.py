"""Run the reduce grid (every f x seeds x variant) and write a markdown table of the length KPIs.

Each run: `experiment=reduce/<f> seed=S iterations=N` plus the variant's overrides, the
Engine stepped in a worker process (one thread each, `--jobs` at a time), greedy evaluation every
`--eval-interval` iterations on 200 instances per length. Reported per run: `max_length_reached`
(curriculum), `max_length_reliable` and its reliable prefix at the last evaluation, the smallest
reliable prefix of the evaluations in the second half of the run (did it hold?), the best
`max_length_reliable` of any evaluation, and the iterations run.

    python scripts/reduce_table.py --iterations 30000 --jobs 2 --out outputs/reduce_table.md
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from inet.compose import compose
from inet.engine import Engine
from inet.guards import NonFiniteError


def wheels(*extra: str):
    """The teacher's wheels for the first half of the run, plus `extra` overrides."""
    return lambda n: ["training_wheels.teacher=inet.tasks.reduce.teacher", f"training_wheels.iterations={n // 2}",
                      *extra]


LEAD = "training_wheels.mode=lead"  # the teacher acts in the CU's place (its exploration stays), the task's reward
VARIANTS = {
    "plain": lambda n: [],
    "stabilisers": lambda n: ["+stabilisers=on"],
    "wheels": wheels(),  # the paper's: the CU is rewarded for the teacher's action
    "lead": wheels(LEAD),
    "lead+stabilisers": wheels(LEAD, "+stabilisers=on"),
    "lead+eps+guard": wheels(LEAD, "cu.epsilon_by_task_length=true", "pu_optim.guard=3.0"),  # no rounding of n2
}


def one_run(f: str, seed: int, variant: str, iterations: int, eval_interval: int) -> dict:
    torch.set_num_threads(1)
    overrides = [f"experiment=reduce/{f}", f"seed={seed}", f"iterations={iterations}",
                 f"evaluation.interval={eval_interval}", *VARIANTS[variant](iterations)]
    engine = Engine(compose(overrides))
    start = time.perf_counter()
    prefixes = []  # (iteration, max_length_reliable_prefix) at each evaluation
    stopped = None  # why the run stopped early (`nonfinite: raise`); its KPIs are those at the stop
    try:
        while engine.iteration < iterations:
            engine.step()
            if engine.evaluator.evaluated_at == engine.iteration:
                prefixes.append((engine.iteration, engine.evaluator.max_length_reliable_prefix))
    except NonFiniteError as e:
        stopped = str(e)
    s = engine.task_summary()
    return {"f": f, "seed": seed, "variant": variant, "budget": iterations, "iterations": engine.iteration,
            "max_length_reached": int(s["max_length_reached"]), "max_length_reliable": s["max_length_reliable"],
            "max_length_reliable_prefix": s["max_length_reliable_prefix"],
            "best_max_length_reliable": s["best_max_length_reliable"], "prefix_by_evaluation": prefixes,
            "stopped": stopped,
            "task_success": engine.metrics()["task_success"], "eval_success_by_length": s["eval_success_by_length"],
            "seconds": round(time.perf_counter() - start, 1), "overrides": " ".join(overrides)}


def table(rows: list) -> str:
    lines = ["| f | variant | seed | iterations | max_length_reached | max_length_reliable (end) | best reliable | "
             "train success (last 200) | eval success by L (end) |", "|---" * 9 + "|"]
    for r in rows:
        ev = " ".join(f"{n}:{v:.2f}" for n, v in sorted(r["eval_success_by_length"].items()))
        its = f"{r['iterations']} (stopped: {r['stopped']})" if r.get("stopped") else r["iterations"]
        lines.append(f"| {r['f']} | {r['variant']} | {r['seed']} | {its} | {r['max_length_reached']} | "
                     f"{r['max_length_reliable']} | {r['best_max_length_reliable']} | {r['task_success']:.2f} | {ev} |")
    return "\n".join(lines)


def summary(rows: list) -> str:
    """One line per (f, variant): each KPI as seed0/seed1/seed2."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["variant"], r["f"]), []).append(r)
    lines = ["| variant | f | iterations | max_length_reached | max_length_reliable (end) | reliable prefix (end) "
             "| min prefix, 2nd half | best max_length_reliable |", "|---|---|---|---|---|---|---|---|"]
    for (variant, f), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        col = lambda k: "/".join(str(int(r[k])) for r in rs)  # noqa: E731
        held = "/".join(str(min([p for i, p in r["prefix_by_evaluation"] if i > r["budget"] // 2], default=0))
                        for r in rs)
        its = "/".join(str(r["iterations"]) for r in rs)
        lines.append(f"| {variant} | {f} | {its} | {col('max_length_reached')} | "
                     f"{col('max_length_reliable')} | {col('max_length_reliable_prefix')} | {held} | "
                     f"{col('best_max_length_reliable')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", nargs="+", default=["constant", "last", "and", "or", "xor"])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=30000)
    p.add_argument("--eval-interval", type=int, default=5000)
    p.add_argument("--jobs", type=int, default=1, help="runs side by side, one process and one thread each")
    p.add_argument("--out", type=Path, default=Path("outputs/reduce_table.md"))
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonl = args.out.with_suffix(".jsonl")
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {(r["f"], r["variant"], r["seed"], r["budget"]) for r in rows}
    todo = [(f, seed, variant, args.iterations, args.eval_interval)
            for variant in args.variants for f in args.functions for seed in args.seeds
            if (f, variant, seed, args.iterations) not in done]
    with ProcessPoolExecutor(args.jobs) as pool:
        for r in pool.map(one_run, *zip(*todo)) if todo else []:
            rows.append(r)
            with open(jsonl, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            args.out.write_text(summary(rows) + "\n\n" + table(rows) + "\n")
            print(json.dumps({k: r[k] for k in ("f", "variant", "seed", "max_length_reached",
                                                 "max_length_reliable", "best_max_length_reliable", "seconds")}),
                  flush=True)


if __name__ == "__main__":
    main()
