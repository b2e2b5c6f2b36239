#!/usr/bin/env bash
# Reproduces the shipped default students (training/students/student_q*.pt), the integer h_s of every
# rate point (training/teachers/integer_hs_q*.npz) and the default decoder package (host/decoders/q3/).
#
# A CPU-sized recipe (2 cores) in resumable stages: every run keeps its checkpoint under build/ and
# picks up where it stopped, so the script can be killed and started again, across sessions too.
#   1. the teachers' distillation targets, once per rate point, over whole BSDS500 images less the
#      50 held-out test photos (`lic cache-targets`, ~5 min per teacher on one core);
#   2. the q3 students of the earlier recipe (commit adb6b7e: `lic distill` 8000 steps and `lic qat`
#      2500 steps on 128x128 crops, teacher run per step) continue on whole cached images;
#   3. q1, q2, q4 students: those of commit adb6b7e (600 + 400 fine-tuning steps from the q3 ones), the
#      W4A4 ones QAT-continued for 3000 steps on cached whole images;
#   3b. the last ReLU of every student at 8 bits (A4/4/4/8), 3000 more QAT steps;
#   3c. A4/4/8/8 (the third ReLU at 8 bits too) and MSE-initialised learned power-of-two weight scales,
#      2000 more QAT steps;
#   3d. A4/8/8/8 (the second ReLU at 8 bits too), 1500 more QAT steps;
#   3e. A8/8/8/8 (every ReLU at 8 bits), 1500 more QAT steps (2500 for q4);
#   3f. the q3, q4, q1 and q2 float students continued 12,000 / 10,000 / 10,000 / 10,000 steps at a slow cosine;
#   3g. 8-bit weights in convs 0 and 3 (2500 QAT steps), then in the 16->3 head too (1000 steps);
#   3h. q1, q2: fresh QAT of the 3f float students straight to W8/4/4/8/8 A8/8/8/8 (4000 / 5500 steps),
#       which replaces 3-3g for them (q3 and q4 keep the 3g students);
#   4. the integer h_s of every rate point, from the caches (64 channels, rate + log-scale matching);
#   5. encoders tuned for the quantised students (`lic tune-encoder`: g_a only, rate-distortion loss
#      through the frozen student; 1500 steps for q3, 1000 for the others, ~16 min per 1000
#      steps on one core). (The shipped encoders were tuned for the W4A4 students, then 500 steps
#      more with --init for each later student: A4/4/4/8, A4/4/8/8, A4/8/8/8, A8/8/8/8; their provenance has
#      the history; since then 500 more for the W8/4/4/8/8 students, and 500 more for the 3h ones, q1 and q2);
#   6. each integer h_s fine-tuned on its teacher's and its tuned encoder's latents together (one cache
#      of the tuned encoder's targets per rate point), so that it stays within 3% on both encoders' files
#      (the shipped h_s were fine-tuned on the caches of the encoders tuned for the W4A4 students, and
#      measured within 3% on the re-tuned encoders' files too);
#   7. manifests and the q3 package; `make packages` exports the other rate points into build/.
# Usage: training/recipes/default_students.sh [Q3_FLOAT_STEPS] [Q3_QAT_STEPS] [HS_STEPS]
# With a GPU, raise every step count.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
Q3_FLOAT=${1:-1500}
Q3_QAT=${2:-1000}
HS_STEPS=${3:-2000}
BASE=adb6b7e
RUNS=build/students
CACHE=build/cache
OUT=training/students
WHOLE=(--crop 512 --batch-size 4 --threads 1 --save-every 100)

for q in 3 1 2 4; do
    [ -f "$CACHE/q$q/manifest.json" ] || "$LIC" cache-targets --quality "$q" --threads 1 -o "$CACHE/q$q"
done

mkdir -p "$RUNS/$BASE"
for f in student_q{1,2,3,4}.float.pt student_q{1,2,3,4}.pt; do
    [ -f "$RUNS/$BASE/$f" ] || git show "$BASE:training/students/$f" > "$RUNS/$BASE/$f"
done
"$LIC" distill --quality 3 --cache "$CACHE/q3" "${WHOLE[@]}" --init "$RUNS/$BASE/student_q3.float.pt" \
    --steps "$Q3_FLOAT" --lr 3e-4 --lr-final 1e-5 --run-dir "$RUNS/q3-float" --export "$RUNS/student_q3.float.pt"
"$LIC" qat --student "$RUNS/$BASE/student_q3.float.pt" --init "$RUNS/$BASE/student_q3.pt" --cache "$CACHE/q3" \
    "${WHOLE[@]}" --steps "$Q3_QAT" --lr 3e-5 --lr-final 1e-6 --run-dir "$RUNS/q3-quant" --export "$RUNS/student_q3.pt"
cp "$RUNS"/student_q3{.float.pt,.float.provenance.json,.pt,.provenance.json} "$OUT/"
for q in 1 2 4; do
    "$LIC" qat --student "$RUNS/$BASE/student_q$q.float.pt" --init "$RUNS/$BASE/student_q$q.pt" --quality "$q" \
        --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 3000 --lr 3e-5 --lr-final 1e-6 --run-dir "$RUNS/q$q-quant" \
        --export "$RUNS/student_q$q.pt"
    cp "$RUNS"/student_q$q{.pt,.provenance.json} "$OUT/"
done
# 3b. every student's last ReLU at 8 bits (A4/4/4/8): FINN folds it to the same PYNQ-Z2 rate as W4A4,
#     and it gave +0.65 to +0.94 dB. QAT goes on from the W4A4 student, that ReLU re-calibrated.
for q in 3 4 1 2; do
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$OUT/student_q$q.pt" --quality "$q" --act-bits 4,4,4,8 \
        --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 3000 --lr 1e-4 --lr-final 1e-6 --run-dir "$RUNS/q$q-a8" \
        --export "$RUNS/student_q$q.a8.pt"
    cp "$RUNS/student_q$q.a8.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.a8.provenance.json" "$OUT/student_q$q.provenance.json"
done
# 3c. the third ReLU at 8 bits as well (A4/4/8/8: PYNQ-Z2's fabric estimate falls from 23.5 to 21.2 fps, still
#     above the board's ARM-bound rate; ZCU104 and KV260 keep 63.6) and weight scales learned from an MSE start
#     (--weight-scale mse: the same power-of-two grid, no fabric cost). On q3: +0.38 and +0.16 dB apart, against
#     -0.03 dB for the same 1500 steps with nothing changed.
for q in 3 4 1 2; do
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$OUT/student_q$q.pt" --quality "$q" --act-bits 4,4,8,8 \
        --weight-scale mse --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 2000 --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-a88-mse" --export "$RUNS/student_q$q.a88.pt"
    cp "$RUNS/student_q$q.a88.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.a88.provenance.json" "$OUT/student_q$q.provenance.json"
done
# 3d. the second ReLU at 8 bits too (A4/8/8/8): once the sliding windows' line buffers may go to block RAM
#     (hls/folding.py), PYNQ-Z2's fabric estimate is 23.8 fps for A4/4/8/8 and for A4/8/8/8 alike. On q3:
#     +0.35 dB on the teacher's files (A8/4/8/8, the first ReLU instead: +0.14).
for q in 3 4 1 2; do
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$OUT/student_q$q.pt" --quality "$q" --act-bits 4,8,8,8 \
        --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 1500 --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-a888" --export "$RUNS/student_q$q.a888.pt"
    cp "$RUNS/student_q$q.a888.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.a888.provenance.json" "$OUT/student_q$q.provenance.json"
done
# 3e. every ReLU at 8 bits (A8/8/8/8): once `make hw` can move the widest MVAUs to FINN's RTL MVU on DSPs
#     (hls/folding.py), PYNQ-Z2's fabric estimate is 28.0 fps for A4/8/8/8 and A8/8/8/8 alike. On q3: +0.16 dB
#     on the teacher's files. q4 had gained least from 3d, and 1000 more steps alone gave it +0.16: 2500 here.
for q in 3 4 1 2; do
    steps=1500; [ "$q" = 4 ] && steps=2500
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$OUT/student_q$q.pt" --quality "$q" --act-bits 8,8,8,8 \
        --cache "$CACHE/q$q" "${WHOLE[@]}" --steps "$steps" --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-a8888" --export "$RUNS/student_q$q.a8888.pt"
    cp "$RUNS/student_q$q.a8888.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.a8888.provenance.json" "$OUT/student_q$q.provenance.json"
done

# 3f. the float students continued at a slow cosine (lr 2e-4 -> 1e-6): 12,000 steps for q3, 10,000 for q4, q1, q2.
#     The earlier runs had decayed over 600-8000 steps, before the students converged: on Kodak (teacher's
#     files) q3 25.77 -> 26.19 dB, q4 25.70 -> 26.19, q1 25.24 -> 25.55, q2 25.53 -> 25.92. W4 QAT of these,
#     fresh or staged as in 3-3e, ended below the 3e students; with 8-bit weights in the DSP-mapped convs (3h)
#     fresh QAT of them beats the 3g students at q1 and q2 (and q3: not shipped yet, see 3h).
for q in 3 4 1 2; do
    steps=12000; [ "$q" != 3 ] && steps=10000
    "$LIC" distill --init "$OUT/student_q$q.float.pt" --quality "$q" --cache "$CACHE/q$q" "${WHOLE[@]}" --steps "$steps" \
        --lr 2e-4 --lr-final 1e-6 --run-dir "$RUNS/q$q-float-long" --export "$RUNS/student_q$q.float.long.pt"
    cp "$RUNS/student_q$q.float.long.pt" "$OUT/student_q$q.float.pt"
    cp "$RUNS/student_q$q.float.long.provenance.json" "$OUT/student_q$q.float.provenance.json"
done

# 3g. 8-bit weights where they cost no frame rate: convs 0 and 3 and the 16->3 head are the MVAUs that `make hw`
#     puts on FINN's RTL MVU on PYNQ-Z2, two W4..W8 x A8 products per DSP48E1 either way (28.0 fps, estimated;
#     5 bits in conv 1 or 2 would need 42-45 K LUTs of the 39,900). First convs 0 and 3, then the head too:
#     +0.14 to +0.28 dB on Kodak (teachers' files), where the same 1000 steps straight to W8/4/4/8/8 gave q3 0.07 less.
#     The q3 and q4 shipped students come from here (3h replaced q1, q2; fresh QAT of q4, 5000 steps, was level).
for q in 3 4; do
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$OUT/student_q$q.pt" --quality "$q" --weight-bits 8,4,4,8,4 \
        --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 2500 --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-w8c03" --export "$RUNS/student_q$q.w8c03.pt"
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$RUNS/student_q$q.w8c03.pt" --quality "$q" \
        --weight-bits 8,4,4,8,8 --cache "$CACHE/q$q" "${WHOLE[@]}" --steps 1000 --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-w8" --export "$RUNS/student_q$q.w8.pt"
    cp "$RUNS/student_q$q.w8.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.w8.provenance.json" "$OUT/student_q$q.provenance.json"
done

# 3h. fresh QAT of the 3f float students straight to W8/4/4/8/8 A8/8/8/8 (MSE weight scales, calibrated first):
#     Kodak (teachers' files) q1 25.14 -> 25.26 dB, q2 25.42 -> 25.60 over the 3g students. q2 ran 2500 steps,
#     then 3000 more with --init (25.44 after the first 2500). q3 (6000 steps: 25.57 -> 25.70) is not shipped
#     yet: its tuned pair would sit level with q4's, so the deployable curve would stop rising.
for q in 1 2; do
    steps=4000; [ "$q" = 2 ] && steps=2500
    "$LIC" qat --student "$OUT/student_q$q.float.pt" --quality "$q" --weight-bits 8,4,4,8,8 --act-bits 8,8,8,8 \
        --weight-scale mse --cache "$CACHE/q$q" "${WHOLE[@]}" --steps "$steps" --lr 1e-4 --lr-final 1e-6 \
        --run-dir "$RUNS/q$q-fresh-w8" --export "$RUNS/student_q$q.fresh-w8.pt"
    if [ "$q" = 2 ]; then
        "$LIC" qat --student "$OUT/student_q$q.float.pt" --init "$RUNS/student_q$q.fresh-w8.pt" --quality "$q" \
            --weight-bits 8,4,4,8,8 --act-bits 8,8,8,8 --weight-scale mse --cache "$CACHE/q$q" "${WHOLE[@]}" \
            --steps 3000 --lr 1e-4 --lr-final 1e-6 --run-dir "$RUNS/q$q-fresh-w8b" --export "$RUNS/student_q$q.fresh-w8.pt"
    fi
    cp "$RUNS/student_q$q.fresh-w8.pt" "$OUT/student_q$q.pt"
    cp "$RUNS/student_q$q.fresh-w8.provenance.json" "$OUT/student_q$q.provenance.json"
done

for q in 1 2 3 4; do
    "$LIC" distill-hyper --quality "$q" --cache "$CACHE/q$q" --channels 64 --steps "$HS_STEPS" --batch-size 16 \
        --threads 1 --run-dir "$RUNS/hs-q$q" --export "$RUNS/integer_hs_q$q.npz"
done
# q1, the lowest rate, needed 2000 more steps (at a lower learning rate) to come under 3%
"$LIC" distill-hyper --quality 1 --cache "$CACHE/q1" --channels 64 --steps $((2 * HS_STEPS)) --lr 3e-4 \
    --lr-final 3e-5 --batch-size 16 --threads 1 --run-dir "$RUNS/hs-q1" --export "$RUNS/integer_hs_q1.npz"

for q in 1 2 3 4; do
    steps=1000; [ "$q" = 3 ] && steps=1500
    "$LIC" tune-encoder --student "$OUT/student_q$q.pt" --cache "$CACHE/q$q" --steps "$steps" --threads 1 \
        --run-dir "$RUNS/encoder-q$q" --export "$RUNS/encoder_q$q.pt"
done
cp "$RUNS"/encoder_q{1,2,3,4}.{pt,provenance.json} training/teachers/

for q in 1 2 3 4; do
    [ -f "$CACHE/q$q-tuned/manifest.json" ] || \
        "$LIC" cache-targets --teacher "$RUNS/encoder_q$q.pt" --threads 1 -o "$CACHE/q$q-tuned"
    "$LIC" distill-hyper --quality "$q" --cache "$CACHE/q$q" "$CACHE/q$q-tuned" --channels 64 \
        --init "$RUNS/hs-q$q/checkpoint.pt" --steps 1000 --lr 3e-4 --lr-final 3e-5 --batch-size 16 --threads 1 \
        --run-dir "$RUNS/hs-tuned-q$q" --export "$RUNS/integer_hs_q$q.npz"
done
# q1 needed 1000 more steps with two thirds of each batch from its tuned encoder's cache to come under 3% there.
# (The shipped q1 h_s went one stage further round: 1000 such steps on the cache of the encoder tuned for the
# previous q1 student, then 1000 on this one's; its provenance has the history. This shorter path is the one
# to take from scratch.)
"$LIC" distill-hyper --quality 1 --cache "$CACHE/q1" "$CACHE/q1-tuned" "$CACHE/q1-tuned" --channels 64 \
    --init "$RUNS/hs-tuned-q1/checkpoint.pt" --steps 1000 --lr 1e-4 --lr-final 1e-5 --batch-size 16 --threads 1 \
    --run-dir "$RUNS/hs-tuned2-q1" --export "$RUNS/integer_hs_q1.npz"
cp "$RUNS"/integer_hs_q{1,2,3,4}.{npz,provenance.json} training/teachers/

.venv/bin/python -m training.ship training/teachers/teacher_q{1,2,3,4}.pt
.venv/bin/python -m training.ship_students "$OUT"/student_q{1,2,3,4}.pt
"$LIC" export "$OUT/student_q3.pt" --teacher q3-tuned -o host/decoders/q3
