"""Train a small run, load it back from its checkpoint and evaluate it greedily: the Python API end to end.

    python examples/train_load_evaluate.py [RUN_DIR] [ITERATIONS]

RUN_DIR defaults to outputs/runs/example (it must not hold a run yet), ITERATIONS to
10000 (about a minute on one core). tests/test_api.py runs this file with 300 iterations.
"""
import sys

import inet

run_dir = sys.argv[1] if len(sys.argv) > 1 else "outputs/runs/example"
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 10000

# The same overrides as `inet run experiment=multitask/cu_inputs iterations=...`; they are
# recorded in RUN_DIR/.hydra/overrides.yaml, so `inet report` and `inet viz` read the run.
overrides = ["experiment=multitask/cu_inputs", f"iterations={iterations}", "progress=false"]
cfg = inet.compose(overrides)
print(f"training {cfg.name} for {cfg.iterations} iterations")
run_dir = inet.run(cfg, run_dir, overrides=overrides)

engine = inet.load(run_dir)  # the trained engine, restored from RUN_DIR/checkpoint.pt
success = inet.evaluate(engine, instances=500)  # {task length: fraction solved by the greedy CU}
print(f"greedy success after {engine.iteration} iterations: {success[1]:.3f}")
