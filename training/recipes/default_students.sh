#!/usr/bin/env bash
# Reproduces the shipped default students (training/students/student_q*.pt) and the default decoder
# package (host/decoders/q3/). A CPU-sized recipe (2 cores): the q3 student is distilled from scratch
# and quantisation-aware trained; the other rate points start from it, since the four teachers were
# fine-tuned from one base model and their latents are alike.
# Usage: training/recipes/default_students.sh [Q3_FLOAT_STEPS] [Q3_QAT_STEPS] [FT_STEPS] [FT_QAT_STEPS]
# With a GPU, raise every step count and --crop 256.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
Q3_FLOAT=${1:-8000}
Q3_QAT=${2:-2500}
FT_FLOAT=${3:-600}
FT_QAT=${4:-400}
RUNS=build/students
OUT=training/students
ARCH=(--channels 96,64,32,16 --upsample nearest --head-kernel 3)
COMMON=(--crop 128 --batch-size 8)
"$LIC" distill --quality 3 "${ARCH[@]}" "${COMMON[@]}" --steps "$Q3_FLOAT" --run-dir "$RUNS/q3-float" \
    --export "$OUT/student_q3.float.pt"
"$LIC" qat --student "$OUT/student_q3.float.pt" "${COMMON[@]}" --steps "$Q3_QAT" --run-dir "$RUNS/q3-quant" \
    --export "$OUT/student_q3.pt"
for q in 1 2 4; do
    "$LIC" distill --quality "$q" --init "$OUT/student_q3.float.pt" "${COMMON[@]}" --steps "$FT_FLOAT" \
        --lr 3e-4 --lr-final 1e-5 --run-dir "$RUNS/q$q-float" --export "$OUT/student_q$q.float.pt"
    "$LIC" qat --student "$OUT/student_q$q.float.pt" "${COMMON[@]}" --steps "$FT_QAT" --run-dir "$RUNS/q$q-quant" \
        --export "$OUT/student_q$q.pt"
done
.venv/bin/python -m training.ship_students "$OUT"/student_q{1,2,3,4}.pt
"$LIC" export "$OUT/student_q3.pt" -o host/decoders/q3
