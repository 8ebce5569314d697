"""emulate/dqn: the PU-DQN's game return against the same DQN trained plainly (paper 3.5, issue 17).

    python scripts/emulate_dqn.py                                   # emulate/dqn (scripted CU), seeds 0 1 2
    python scripts/emulate_dqn.py --experiment emulate/dqn_learned --seeds 0 1 2

Per seed: build the IN of the experiment, copy its DQN PU as the plain DQN's initial
network (inet/tasks/plain_dqn.py: same game, schedule, memory, loss and seeds), run
the IN for its `iterations`, then the plain DQN for as many game steps as the IN
played (mean per lane). Prints per seed: game steps, the IN's and the plain DQN's
replayed updates, the greedy return of each network over 500 fresh games (+1 catch,
-1 miss; a random policy scores about -0.6), the mean training return of the last
200 episodes, the IN's iterations per game step, and the CU's route rates (the share
of the last kpi_window live steps and replays that took their route).
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inet.compose import compose  # noqa: E402
from inet.engine import Engine  # noqa: E402
from inet.tasks.plain_dqn import PlainDQN, greedy_return  # noqa: E402


def one_seed(experiment: str, seed: int, overrides: list) -> dict:
    torch.set_num_threads(1)
    cfg = compose([f"experiment={experiment}", f"seed={seed}", *overrides])
    engine = Engine(cfg)
    plain = PlainDQN(copy.deepcopy(engine.pus["dqn"]), cfg)
    while engine.iteration < cfg.iterations:
        engine.step()
    game, replay = engine.envs["game"], engine.envs["replay"]
    steps = int(game.steps.float().mean())
    for _ in range(steps):
        plain.step()
    rows, cols = game.game.rows, game.game.cols
    tail = lambda r: sum(r[-200:]) / len(r[-200:]) if r else float("nan")  # noqa: E731
    return {"seed": seed, "game_steps": steps, "in_updates": int(replay.metrics()["replays"]),
            "in_greedy": greedy_return(engine.pus["dqn"], rows, cols),
            "plain_greedy": greedy_return(plain.qnet, rows, cols),
            "in_train": tail(list(game.returns)), "plain_train": tail(plain.returns),
            "iterations_per_step": cfg.iterations / max(steps, 1),
            "live_route_rate": engine.trackers["game"].snapshot()["route_rate"],
            "replay_route_rate": engine.trackers["replay"].snapshot()["route_rate"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="emulate/dqn")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. iterations=20000")
    args = ap.parse_args()
    cols = ["seed", "game_steps", "in_updates", "in_greedy", "plain_greedy", "in_train", "plain_train",
            "iterations_per_step", "live_route_rate", "replay_route_rate"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for seed in args.seeds:
        row = one_seed(args.experiment, seed, args.overrides)
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols) + " |",
              flush=True)


if __name__ == "__main__":
    main()
