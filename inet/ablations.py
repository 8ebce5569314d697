"""`inet ablations` (`make ablations`): every section 6 mechanism alone, and a combination, against the baseline.

Each mechanism (`MECHANISMS`: a name and its overrides), and the best combination
measured (`BEST`, or `--combine`), runs on the four multitask
variants and on reduce/xor and reduce/and (or the part of them `ONLY` names), for every seed, through `inet run -m` (the
joblib launcher, one job per core); `inet report` then aggregates everything into one
table whose variants are named by their overrides, the baseline among them. Budgets:
`full` runs each experiment at its configured iterations with seeds 0-4; `small`
caps multitask at 30k and reduce at 20k iterations with seeds 0-2, to fit a laptop
sweep. A failed job does not stop the rest (the report lists it; exit status 1).
The measured tables live in docs/results/ablations.md.
"""
from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Dict, List, Sequence

from .reproduce import run_set

# name -> the overrides that turn the mechanism on (paper section 6; docs/mechanisms.md)
MECHANISMS: Dict[str, List[str]] = {
    "baseline": [],
    "qr_dqn": ["cu=qr_dqn"],  # the learner alone: the baseline of the rows that need QR-DQN
    "guard": ["pu_optim.guard=3.0"],
    "random_use_scale": ["pu_optim.random_use_scale=0.1"],
    "use_guard": ["pu_optim.use_guard=3.0"],
    "use_normalise": ["pu_optim.use_normalise=true"],
    "curiosity_forward": ["curiosity.kind=forward"],
    "curiosity_rnd": ["curiosity.kind=rnd"],
    "curiosity_spread": ["cu=qr_dqn", "curiosity.kind=spread"],
    "explore_counts": ["cu.exploration=counts"],
    "explore_uncertainty": ["cu=qr_dqn", "cu.exploration=uncertainty"],
    "low_initial_eps": ["cu.exploration_initial_eps=0.3"],  # 6.2: less creativity at the start
    "pu_lr": ["pu_optim.lr=0.001"],  # 6.1: PUs that settle faster than the CU's routing moves (default 3e-4)
    "self_imitation": ["cu.self_imitation=0.5"],
    "pu_replay": ["pu_optim.replay=8"],
    "node_actions": ["cu.node_actions=true"],
    "what_if": ["cu.what_if=2"],
    "shortcut": ["+shortcut=multitask"],
}
# the experiments a mechanism runs on, where not all. Node actions: competing writers of one node with a loss
# of its own are multitask's pu1, pu2 -> n2 (reduce's writers of n2, reduce and reset, play different roles and
# n2 gets no loss, so its rater cannot learn); training_wheels' teacher names PU actions, so it is refused.
# Shortcuts: the student (configs/shortcut/multitask.yaml) learns multitask's chain; reduce's answer depends on
# the whole sequence, so no PU reading one iteration's nodes can compute what its chain does.
MULTITASK = "multitask/base,multitask/cu_inputs,multitask/training_wheels,multitask/pretrained"
ONLY: Dict[str, List[str]] = {"node_actions": ["multitask/base", "multitask/cu_inputs", "multitask/pretrained"],
                              "shortcut": MULTITASK.split(",")}
REDUCE = "reduce/xor,reduce/and"
# the best combination measured (docs/results/ablations.md, stop 27): multitask/cu_inputs within 10k on 8 of 10
# seeds, multitask/training_wheels on 10 of 10 (15k of its run)
BEST = "qr_dqn,use_normalise,pu_lr"
BUDGETS = {"full": {"seeds": "0,1,2,3,4", "multitask": [], "reduce": []},
           "small": {"seeds": "0,1,2", "multitask": ["iterations=30000"], "reduce": ["iterations=20000"]}}


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="inet ablations", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("ABLATIONS_DIR", "outputs/ablations"), help="output directory")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="small", help="full or small (see above)")
    p.add_argument("--seeds", default=None, help="override the budget's seeds, e.g. 0,1")
    p.add_argument("--only", default=",".join(MECHANISMS),
                   help=f"comma-separated mechanisms to run (default all: {', '.join(MECHANISMS)})")
    p.add_argument("--combine", default=BEST,
                   help=f"comma-separated mechanisms to run together as one more row (default the best measured: {BEST}; "
                        "'' for none)")
    p.add_argument("--experiments", default=f"{MULTITASK},{REDUCE}",
                   help="comma-separated experiments (default: the four multitask variants, reduce/xor, reduce/and)")
    p.add_argument("--args", default="", help="overrides of every job, e.g. 'lanes=4'")
    p.add_argument("--distractors", choices=["one", "two"], default=None,
                   help="add one or two PUs of no use that write the answer node (configs/distractors/), "
                        "to measure robustness to them")
    p.add_argument("--dry-run", action="store_true", help="print the sweeps' commands, run nothing")
    a = p.parse_args(argv)
    for name in [n for n in (*a.only.split(","), *a.combine.split(",")) if n]:
        if name not in MECHANISMS:
            p.error(f"unknown mechanism '{name}'; choose from {', '.join(MECHANISMS)}")
    return a


def merged(*groups: Sequence[str]) -> List[str]:
    """Overrides of several groups, each key once: a later group's value wins."""
    return list({o.split("=", 1)[0]: o for group in groups for o in group}.values())


def rows(a: argparse.Namespace) -> Dict[str, List[str]]:
    """The table's rows: each chosen mechanism, and the combination (if any), with their overrides."""
    out = {n: MECHANISMS[n] for n in a.only.split(",") if n}
    if a.combine:
        names = a.combine.split(",")
        out["+".join(names)] = merged(*(MECHANISMS[n] for n in names))
    return out


def experiments_of(row: str, chosen: Sequence[str]) -> List[str]:
    """The chosen experiments a row (a mechanism, or `a+b` combined) runs on: those every mechanism in it allows."""
    return [e for e in chosen if all(e in ONLY.get(m, [e]) for m in row.split("+"))]


def sweeps(a: argparse.Namespace) -> List[List[str]]:
    """The `inet run -m` argument lists: per row, one sweep of multitask and one of reduce (where it runs any)."""
    budget = BUDGETS[a.budget]
    seeds = a.seeds or budget["seeds"]
    extra, out = shlex.split(a.args), Path(a.out)
    chosen = a.experiments.split(",")
    jobs = []
    for name, overrides in rows(a).items():
        for family in ("multitask", "reduce"):
            experiments = [e for e in experiments_of(name, chosen) if e.startswith(f"{family}/")]
            if experiments:
                distract = [f"+distractors={family}_{a.distractors}"] if a.distractors else []
                jobs.append([f"experiment={','.join(experiments)}", f"seed={seeds}",
                             *merged(["progress=false"], budget[family], overrides, distract, extra),
                             f"hydra.sweep.dir={out / name / family}"])
    return jobs


def main(argv: Sequence[str]) -> int:
    """Run the rows into --out (replacing it) and write their report; returns the exit status."""
    a = parse(argv)
    return run_set(sweeps(a), Path(a.out), f"budget {a.budget}, rows {', '.join(rows(a))}", a.dry_run)
