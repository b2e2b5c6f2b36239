#!/usr/bin/env bash
# Pruning, the third of the method (issue 45 part 3): a wider float student pruned to the shipped widths,
# then the shipped QAT, priced by `lic hw` (FINN's estimates, no layer simulation) and evaluated beside the
# shipped q3 student. Each stage is skipped once its export exists, and a stopped run resumes (--run-dir).
#   1. wide     `lic distill` 128,96,48,24 (2x the shipped MACs; KV260's width in docs/fpga.md), slow-ish cosine
#   2. pruned   `lic prune` to 96,64,32,16 (first-order Taylor importance on the cache, docs/students.md
#               "Pruning"), fine-tuned under the distillation loss
#   3. qat      fresh QAT to the shipped quantisers (W8/4/4/8/8 A8/8/8/8, MSE-initialised power-of-two scales),
#               5000 + 3000 + 3000 averaged steps, as training/recipes/long_run.sh does for the shipped student
#   4. package  `lic export`, then `lic hw --no-simulate` on PYNQ-Z2 at 25 fps (the shipped widths: the same
#               fabric, so the same fps; the figure checks that the pruned student is what the board builds)
#   5. eval     `lic eval-students` of the pruned float and quantised students on Kodak (teacher's files),
#               to set beside the shipped q3 student's figures at the same fps
#   training/recipes/prune_student.sh                    # the real run, one core (see the cost below)
#   STEPS=20 EVAL_LIMIT=1 OUT=build/prune-tiny training/recipes/prune_student.sh   # every stage 20 steps
# Cost (one AMD EPYC core, crop 512, batch 4), expected ~8 core-hours: the wide student ~0.68 s/step x 30,000
# = 5.7 h (1.74x the shipped width's step, measured side by side, times the long run's 0.39 s/step for it), the
# importance ~25 s (32 batches), the pruned fine-tuning 0.39 x 10,000 = 1.1 h, QAT 5000 + 3000 + 3000 = 1.2 h (the
# long run's 0.64 + 0.31 + 0.29 h), export + `lic hw` ~1 min, eval ~5 s per Kodak image. The 20-step run on a
# shared, busy core measured 1.5-1.6 / 0.83-0.85 / 1.0-1.06 / 0.66-0.70 s per step for wide / pruned / QAT /
# averaged QAT and 52 s for the importance: ~2x the quiet figures above. Not run beyond 20 steps yet: no pruned
# student is trained or shipped.
set -euo pipefail
{  # bash reads this block whole before running it: editing the file during a run of hours cannot
   # change the running copy (it read on where it stood, once, and broke a run)
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
CORE=${CORE:-0}
OUT=${OUT:-build/prune/q3}
CACHE=build/cache/q3
WIDE=${WIDE:-128,96,48,24}
TARGET=${TARGET:-96,64,32,16}
S=${STEPS:-}  # one step count for every stage (a quick check of the path); empty: the real counts
WIDE_STEPS=${S:-30000}; PRUNE_STEPS=${S:-10000}; QAT_STEPS=${S:-5000}; QAT2_STEPS=${S:-3000}; EMA_STEPS=${S:-3000}
EVAL_LIMIT=${EVAL_LIMIT:-24}
WHOLE=(--quality 3 --cache "$CACHE" --crop 512 --batch-size 4 --threads 1 --save-every 100 --log-every 100)
QUANT=(--weight-bits 8,4,4,8,8 --act-bits 8,8,8,8 --weight-scale mse --lr 1e-4 --lr-final 1e-6)
low() { nice -n 19 taskset -c "$CORE" "$@"; }

mkdir -p "$OUT"
[ -f "$CACHE/manifest.json" ] || low "$LIC" cache-targets --quality 3 --threads 1 -o "$CACHE"
# 1. the wider float student, from scratch (a student cannot be grown wider from the shipped one)
[ -f "$OUT/wide.float.pt" ] || low "$LIC" distill "${WHOLE[@]}" --channels "$WIDE" --steps "$WIDE_STEPS" \
    --lr 1e-3 --lr-final 1e-6 --run-dir "$OUT/run-wide" --export "$OUT/wide.float.pt"
# 2. pruned to the shipped widths by measured importance, fine-tuned from the cache
[ -f "$OUT/student_q3.float.pt" ] || low "$LIC" prune --student "$OUT/wide.float.pt" --channels "$TARGET" \
    --importance-batches 32 "${WHOLE[@]}" --steps "$PRUNE_STEPS" --lr 2e-4 --lr-final 1e-6 \
    --run-dir "$OUT/run-prune" --export "$OUT/student_q3.float.pt"
# 3. QAT with the shipped quantisers
[ -f "$OUT/qat.pt" ] || low "$LIC" qat --student "$OUT/student_q3.float.pt" "${WHOLE[@]}" "${QUANT[@]}" \
    --steps "$QAT_STEPS" --run-dir "$OUT/run-qat" --export "$OUT/qat.pt"
[ -f "$OUT/qat2.pt" ] || low "$LIC" qat --student "$OUT/student_q3.float.pt" --init "$OUT/qat.pt" "${WHOLE[@]}" \
    "${QUANT[@]}" --steps "$QAT2_STEPS" --run-dir "$OUT/run-qat2" --export "$OUT/qat2.pt"
[ -f "$OUT/student_q3.pt" ] || low "$LIC" qat --student "$OUT/student_q3.float.pt" --init "$OUT/qat2.pt" \
    "${WHOLE[@]}" "${QUANT[@]}" --steps "$EMA_STEPS" --ema 0.999 --run-dir "$OUT/run-ema" --export "$OUT/student_q3.pt"
# 4. the package and its price on PYNQ-Z2 (FINN's estimates; the per-layer simulation waits until a student is chosen)
[ -d "$OUT/pkg" ] || low "$LIC" export "$OUT/student_q3.pt" -o "$OUT/pkg"
[ -f "$OUT/hw-pynq-z2/estimates.json" ] || low "$LIC" hw --board pynq-z2 --package "$OUT/pkg" --target-fps 25 \
    --no-simulate -o "$OUT/hw-pynq-z2"
# 5. the pruned students beside the teacher on Kodak (the shipped q3's figures: docs/results.md)
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from quantize.ship_students import entry

out = Path(sys.argv[1]).resolve()
(out / "students.json").write_text(json.dumps({"students": [entry(out / "student_q3.pt")]}, indent=2) + "\n")
PY
low "$LIC" eval-students --quality 3 --students "$OUT/students.json" --limit "$EVAL_LIMIT" -o "$OUT/eval"
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
e = json.loads((out / "hw-pynq-z2" / "estimates.json").read_text())
print(f"pruned student: {e['student']['kmac_per_pixel']} kMAC/px, fabric {e['rates']['fabric_fps']['fps']:.2f} fps "
      f"on {e['board']} (FINN's estimate); Kodak figures in {out / 'eval'}")
for name in ("wide.float", "student_q3.float", "qat", "qat2", "student_q3"):
    p = json.loads((out / f"{name}.provenance.json").read_text())
    print(f"{name}: {p['steps']} steps, {p['train_time_s']} s, {p['train_time_s'] / max(p['steps'], 1):.2f} s/step")
PY
exit
}
