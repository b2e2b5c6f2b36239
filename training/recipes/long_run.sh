#!/usr/bin/env bash
# The long background run: one run at a time, advanced a little in every working period, on one core
# at low priority, beside whatever else is being done. Its state is kept in training/long_run/q3/ and
# committed before every stop, because build/ does not outlive the machine (a run that lived only in
# build/ was lost at step 23,300 of 30,000): the current phase's checkpoint (weights, Adam state, EMA,
# step, elapsed time) and the exports of the finished phases that later phases start from; each
# replaces the last, never a pile.
#
#   training/recipes/long_run.sh           resume (or start) the current phase, then the next ones
#   training/recipes/long_run.sh --save    copy the current phase's checkpoint and the finished
#                                           exports into training/long_run/q3/ (then commit)
#   training/recipes/long_run.sh --status  phase, step, core-hours so far and the last logged figures
#
# Phases 1-4 are default_students.sh's for q3 with one change, a longer float student (finished):
#   float    the float student of commit 5665bca at a slow cosine (lr 2e-4 -> 1e-6) over 30,000 steps
#            of whole cached images (Kodak 26.32 -> 26.54 dB on the teacher's files);
#   qat      fresh QAT of it straight to the shipped quantisers, 5000 steps;
#   qat2     3000 steps more from there (--init, a new cosine);
#   qat-ema  3000 steps exporting the weights' moving average (--ema 0.999).
# Phases 5-9 are training/recipes/prune_student.sh's (pruning, docs/students.md), ~8 core-hours:
#   wide     a float student twice as wide (128,96,48,24), from scratch, 30,000 steps;
#   pruned   `lic prune` to the shipped widths by first-order Taylor importance, fine-tuned 10,000 steps;
#   pqat, pqat2, pqat-ema   the same QAT as phases 2-4, of the pruned student (same fabric, same fps).
# Not scripted: the encoder re-tune and the pass on refined latents. A milestone ships only when it
# beats the shipped files on Kodak and on the 50 held-out photos.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
CORE=${LONG_RUN_CORE:-1}
Q=3
BASE=5665bca
RUNS=build/long_run
KEEP=training/long_run/q$Q
CACHE=build/cache/q$Q
INIT=$RUNS/student_q$Q.float.$BASE.pt
WHOLE=(--quality "$Q" --cache "$CACHE" --crop 512 --batch-size 4 --threads 1 --save-every 100 --log-every 100)
QUANT=(--weight-bits 8,4,4,8,8 --act-bits 8,8,8,8 --weight-scale mse --lr 1e-4 --lr-final 1e-6)
# NAME+: its export stays in training/long_run/ for good (a later phase's --student, or a result)
PHASES=(float+ qat qat2 qat-ema+ wide pruned+ pqat pqat2 pqat-ema+)

low() { nice -n 19 taskset -c "$CORE" "$@"; }
keeper() { .venv/bin/python -m training.long_run "$@"; }

case "${1:-run}" in
--save) keeper save "$RUNS" "$KEEP" "${PHASES[@]}"; exit 0 ;;
--status) keeper status "$RUNS" "$KEEP" "${PHASES[@]}"; exit 0 ;;
run) ;;
*) echo "usage: $0 [--save|--status]" >&2; exit 2 ;;
esac

mkdir -p "$RUNS"
# A fresh machine has no build/: bring back the committed state (the current phase's checkpoint, the
# finished phases' exports).
keeper restore "$RUNS" "$KEEP" "${PHASES[@]}"
# The init is pinned to a commit, so shipping a new float student never changes what this run resumes.
[ -f "$INIT" ] || git show "$BASE:training/students/student_q$Q.float.pt" > "$INIT"
[ -f "$CACHE/manifest.json" ] || low "$LIC" cache-targets --quality "$Q" --threads 1 -o "$CACHE"

run_phase() {  # NAME COMMAND...: skipped once its export, or a later phase's, exists
    local name=$1 later=0 p; shift
    for p in "${PHASES[@]}"; do
        p=${p%+}
        [ "$p" = "$name" ] && later=1
        [ "$later" = 1 ] && [ -f "$RUNS/$p.pt" ] && return 0
    done
    low "$LIC" "$@" --run-dir "$RUNS/q$Q-$name" --export "$RUNS/$name.pt"
}
run_phase float distill --init "$INIT" "${WHOLE[@]}" --steps 30000 --lr 2e-4 --lr-final 1e-6
run_phase qat qat --student "$RUNS/float.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 5000
run_phase qat2 qat --student "$RUNS/float.pt" --init "$RUNS/qat.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000
run_phase qat-ema qat --student "$RUNS/float.pt" --init "$RUNS/qat2.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000 \
    --ema 0.999
run_phase wide distill "${WHOLE[@]}" --channels 128,96,48,24 --steps 30000 --lr 1e-3 --lr-final 1e-6
run_phase pruned prune --student "$RUNS/wide.pt" --channels 96,64,32,16 --importance-batches 32 "${WHOLE[@]}" \
    --steps 10000 --lr 2e-4 --lr-final 1e-6
run_phase pqat qat --student "$RUNS/pruned.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 5000
run_phase pqat2 qat --student "$RUNS/pruned.pt" --init "$RUNS/pqat.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000
run_phase pqat-ema qat --student "$RUNS/pruned.pt" --init "$RUNS/pqat2.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000 \
    --ema 0.999
echo "long_run: every phase finished; $RUNS/qat-ema.pt and $RUNS/pqat-ema.pt are the quantised students"
