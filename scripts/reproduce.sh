#!/usr/bin/env bash
# `make reproduce`: the paper's experiment set as sweeps (joblib, one job per core), then one report.
#   multitask: all four variants x seeds 0-4; reduce: every inet/configs/experiment/reduce/*.yaml x seeds 0-2;
#   each at its configured length (41 min on 2 cores). $REPRO_LONG (overrides of multitask/base and
#   training_wheels) and $REPRO_REDUCE (of reduce/*) shorten them, e.g. REPRO_REDUCE=iterations=30000.
# Env: REPRO_DIR, REPRO_SEEDS, REPRO_REDUCE_SEEDS, REPRO_LONG, REPRO_REDUCE, REPRO_ARGS (extra overrides for every job).
# A failed job does not stop the rest; the report lists it and the script exits non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
INET=${INET:-.venv/bin/inet}
OUT=${REPRO_DIR:-outputs/reproduce}
SEEDS=${REPRO_SEEDS:-0,1,2,3,4}
REDUCE_SEEDS=${REPRO_REDUCE_SEEDS:-0,1,2}
LONG=${REPRO_LONG:-}
REDUCE=${REPRO_REDUCE:-}
ARGS=${REPRO_ARGS:-}
rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)
status=0
# shellcheck disable=SC2086  # LONG and ARGS are lists of overrides
"$INET" run -m experiment=multitask/base,multitask/training_wheels "seed=$SEEDS" progress=false $LONG $ARGS \
    "hydra.sweep.dir=$OUT/multitask_long" || status=1
# shellcheck disable=SC2086
"$INET" run -m experiment=multitask/cu_inputs,multitask/pretrained "seed=$SEEDS" progress=false $ARGS \
    "hydra.sweep.dir=$OUT/multitask" || status=1
reduce=$(ls inet/configs/experiment/reduce/*.yaml 2>/dev/null | sed -e 's|inet/configs/experiment/||' -e 's|\.yaml$||' | paste -sd, -)
if [ -n "$reduce" ]; then
    # shellcheck disable=SC2086
    "$INET" run -m "experiment=$reduce" "seed=$REDUCE_SEEDS" progress=false $REDUCE $ARGS "hydra.sweep.dir=$OUT/reduce" || status=1
fi
end=$(date +%s)
echo "wall time: $((end - start)) s on $(nproc) cores (seeds $SEEDS; long variants: ${LONG:-as configured}; reduce: ${REDUCE:-as configured}; extra: ${ARGS:-none})" \
    | tee "$OUT/wall_time.txt"
"$INET" report "$OUT" -o "$OUT" > /dev/null || status=2
echo "report: $OUT/report.md"
exit $status
