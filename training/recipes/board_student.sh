#!/usr/bin/env bash
# ZCU104's quality-first student within the 8x MAC budget (issue 45 part 5; docs/fpga.md "Students
# sized to each board"): the shipped q3 student with 3 more 3x3 96->96 convs at the latents' resolution
# (5.22 kMAC/px, 8.1x fewer than the teacher's g_s; 28.2 fps on ZCU104, FINN estimate; PYNQ-Z2 does not
# hold it at 25 fps). Grown from the shipped float student with identity convs (`lic distill --init
# --latent-convs 3`: it starts from the shipped student's output exactly), fine-tuned, then the shipped
# QAT (5000 steps, then 3000 averaged; the shipped student had 3000 more between; the latent convs at 8
# bits, as the sizing priced them), given its own tuned encoder (1000 steps from the shipped one), judged
# against the shipped student on Kodak and the 50 held-out photos (bench/milestone.py: float and
# quantised on the teacher's files, the deployable codec on each one's tuned encoder's files), exported
# and priced on ZCU104 by `lic hw`.
# Each stage is skipped once its output exists, and a stopped run resumes (--run-dir).
#   training/recipes/board_student.sh                     # one core (CORE=0): 1.31 h of training on an
#                                                         # AMD EPYC core (measured), then ~10 min of verdict
#   STEPS=20 EVAL_LIMIT=1 OUT=build/board-tiny training/recipes/board_student.sh   # every stage 20 steps
# KV260's quality-first student is wider, so it cannot be grown from the shipped one: it is the long
# run's wide phases (training/recipes/long_run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
CORE=${CORE:-0}
OUT=${OUT:-build/board-students/zcu104}
CACHE=build/cache/q3
LATENT=3
S=${STEPS:-}  # one step count for every stage (a quick check of the path); empty: the real counts
GROW_STEPS=${S:-3000}; QAT_STEPS=${S:-5000}; EMA_STEPS=${S:-3000}; ENC_STEPS=${S:-1000}
EVAL_LIMIT=${EVAL_LIMIT:-}
REFINE=${REFINE:-}  # e.g. REFINE=100: the verdict's deployable codec with its latents refined (1-2 h more on one core: four students refined)
WHOLE=(--quality 3 --cache "$CACHE" --crop 512 --batch-size 4 --threads 1 --save-every 100 --log-every 100)
# conv 0 and the latent convs at 8 bits, then the shipped 4,4,8,8; every ReLU at 8
QUANT=(--weight-bits 8,8,8,8,4,4,8,8 --act-bits 8,8,8,8,8,8,8 --weight-scale mse --lr 1e-4 --lr-final 1e-6)
low() { nice -n 10 taskset -c "$CORE" "$@"; }

mkdir -p "$OUT"
# the long run may build the same cache beside this one: cache-targets then waits for it and keeps it
[ -f "$CACHE/manifest.json" ] || low "$LIC" cache-targets --quality 3 --threads 1 -o "$CACHE"
[ -f "$OUT/grown.pt" ] || low "$LIC" distill --init training/students/student_q3.float.pt --latent-convs "$LATENT" \
    "${WHOLE[@]}" --steps "$GROW_STEPS" --lr 2e-4 --lr-final 1e-6 --run-dir "$OUT/run-grown" --export "$OUT/grown.pt"
[ -f "$OUT/qat.pt" ] || low "$LIC" qat --student "$OUT/grown.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps "$QAT_STEPS" \
    --run-dir "$OUT/run-qat" --export "$OUT/qat.pt"
[ -f "$OUT/qat-ema.pt" ] || low "$LIC" qat --student "$OUT/grown.pt" --init "$OUT/qat.pt" "${WHOLE[@]}" "${QUANT[@]}" \
    --steps "$EMA_STEPS" --ema 0.999 --run-dir "$OUT/run-qat-ema" --export "$OUT/qat-ema.pt"
# its own tuned encoder (default_students.sh step 5, from the shipped one, as the long run's penc)
[ -f "$OUT/encoder.pt" ] || low "$LIC" tune-encoder --init training/teachers/encoder_q3.pt --student "$OUT/qat-ema.pt" \
    --cache "$CACHE" --steps "$ENC_STEPS" --threads 1 --run-dir "$OUT/run-encoder" --export "$OUT/encoder.pt"
[ -f "$OUT/verdict.json" ] || OMP_NUM_THREADS=1 low .venv/bin/python -m bench.milestone --quality 3 --float "$OUT/grown.pt" \
    --quant "$OUT/qat-ema.pt" --encoder "$OUT/encoder.pt" ${REFINE:+--refine "$REFINE"} \
    ${EVAL_LIMIT:+--limit "$EVAL_LIMIT"} -o "$OUT/verdict.json"
[ -d "$OUT/package" ] || low "$LIC" export "$OUT/qat-ema.pt" -o "$OUT/package"
[ -f "$OUT/hw-zcu104/estimates.json" ] || low "$LIC" hw --board zcu104 --package "$OUT/package" --target-fps 25 \
    --no-simulate -o "$OUT/hw-zcu104"
echo "board_student: $OUT/verdict.json (against the shipped student), $OUT/hw-zcu104/estimates.json (ZCU104)"
