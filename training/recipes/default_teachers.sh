#!/usr/bin/env bash
# Reproduces the shipped default teachers (training/teachers/teacher_q{1..4}.pt).
# A CPU-sized recipe: one base model at CompressAI's q3 lambda, then a short fine-tune per rate
# point starting from it (warm starts converge far faster than four runs from scratch).
# Usage: training/recipes/default_teachers.sh [BASE_STEPS] [FINETUNE_STEPS]
# With a GPU, raise the steps (and --crop 256): quality keeps improving for >1M steps.
set -euo pipefail
{  # bash reads this block whole before running it: editing the file during a run of hours cannot
   # change the running copy (it read on where it stood, once, and broke a run)
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
BASE_STEPS=${1:-5500}
FT_STEPS=${2:-500}
RUNS=build/train-teacher
COMMON=(--crop 128 --batch-size 8 --save-every 200)
"$LIC" train-teacher --quality 3 --steps "$BASE_STEPS" --lr 5e-4 --lr-final 1e-4 "${COMMON[@]}" \
    --run-dir "$RUNS/base"
for q in 1 2 3 4; do
    "$LIC" train-teacher --quality "$q" --steps "$FT_STEPS" --lr 1e-4 --lr-final 2e-5 "${COMMON[@]}" \
        --init "$RUNS/base/checkpoint.pt" --run-dir "$RUNS/q$q" --export "training/teachers/teacher_q$q.pt"
done
# Writes teachers.json, then stores q1, q2, q4 as lossless deltas against q3 (training/teacher_delta.py).
.venv/bin/python -m training.ship training/teachers/teacher_q{1,2,3,4}.pt
exit
}
