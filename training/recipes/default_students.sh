#!/usr/bin/env bash
# Reproduces the shipped default students (training/students/student_q*.pt), the integer h_s of every
# rate point (training/teachers/integer_hs_q*.npz) and the decoder packages (host/decoders/q*/).
#
# A CPU-sized recipe (2 cores), in resumable stages: every run keeps its checkpoint under build/ and
# picks up where it stopped, so the script can be killed and started again (across sessions too).
#   1. the teachers' distillation targets, once per rate point, over whole BSDS500 images less the
#      50 held-out test photos (`lic cache-targets`, ~5 min per teacher on one core);
#   2. the q3 float student continues the earlier recipe's student (commit adb6b7e: 8000 steps on
#      128x128 crops with the teacher run per step) on whole cached images;
#   3. QAT (W4A4) of the q3 student on whole cached images;
#   4. q1, q2, q4: fine-tuned from the q3 students on their own teachers' caches;
#   5. the integer h_s of every rate point, from the caches;
#   6. manifests and packages.
# Usage: training/recipes/default_students.sh [Q3_FLOAT_STEPS] [Q3_QAT_STEPS] [FT_STEPS] [FT_QAT_STEPS] [HS_STEPS]
# With a GPU, raise every step count.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
Q3_FLOAT=${1:-1500}
Q3_QAT=${2:-1000}
FT_FLOAT=${3:-300}
FT_QAT=${4:-300}
HS_STEPS=${5:-2000}
RUNS=build/students
CACHE=build/cache
OUT=training/students
WHOLE=(--crop 512 --batch-size 4 --threads 1 --save-every 100)

for q in 3 1 2 4; do
    [ -f "$CACHE/q$q/manifest.json" ] || "$LIC" cache-targets --quality "$q" --threads 1 -o "$CACHE/q$q"
done

mkdir -p "$RUNS"
[ -f "$RUNS/init_q3.float.pt" ] || {
    git show adb6b7e:training/students/student_q3.float.pt > "$RUNS/init_q3.float.pt.tmp"
    git show adb6b7e:training/students/student_q3.float.provenance.json > "$RUNS/init_q3.float.provenance.json"
    mv "$RUNS/init_q3.float.pt.tmp" "$RUNS/init_q3.float.pt"
}
"$LIC" distill --quality 3 --cache "$CACHE/q3" "${WHOLE[@]}" --init "$RUNS/init_q3.float.pt" \
    --steps "$Q3_FLOAT" --lr 3e-4 --lr-final 1e-5 --run-dir "$RUNS/q3-float" --export "$OUT/student_q3.float.pt"
"$LIC" qat --student "$OUT/student_q3.float.pt" --cache "$CACHE/q3" "${WHOLE[@]}" --steps "$Q3_QAT" \
    --run-dir "$RUNS/q3-quant" --export "$OUT/student_q3.pt"
for q in 1 2 4; do
    "$LIC" distill --quality "$q" --cache "$CACHE/q$q" "${WHOLE[@]}" --init "$OUT/student_q3.float.pt" \
        --steps "$FT_FLOAT" --lr 1e-4 --lr-final 1e-5 --run-dir "$RUNS/q$q-float" --export "$OUT/student_q$q.float.pt"
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --cache "$CACHE/q$q" "${WHOLE[@]}" --steps "$FT_QAT" \
        --run-dir "$RUNS/q$q-quant" --export "$OUT/student_q$q.pt"
done
for q in 1 2 3 4; do
    "$LIC" distill-hyper --quality "$q" --cache "$CACHE/q$q" --steps "$HS_STEPS" --batch-size 16 --threads 1 \
        --run-dir "$RUNS/hs-q$q" --export "training/teachers/integer_hs_q$q.npz"
done
.venv/bin/python -m training.ship training/teachers/teacher_q{1,2,3,4}.pt
.venv/bin/python -m training.ship_students "$OUT"/student_q{1,2,3,4}.pt
for q in 1 2 3 4; do
    "$LIC" export "$OUT/student_q$q.pt" -o "host/decoders/q$q"
done
