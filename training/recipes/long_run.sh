#!/usr/bin/env bash
# The long background run: one run at a time, advanced a little in every working period, on one core
# at low priority, beside whatever else is being done. Its checkpoint (weights, Adam state, EMA, step,
# elapsed time) is kept in training/long_run/ and committed before every stop, because build/ does not
# outlive the machine: a run that lived only in build/ was lost at step 23,300 of 30,000.
#
#   training/recipes/long_run.sh           resume (or start) the current phase; runs until done or killed
#   training/recipes/long_run.sh --save    copy the newest checkpoint into training/long_run/ (then commit)
#   training/recipes/long_run.sh --status  step, core-hours and the last logged figures
#
# Phase 1 (now): the q3 float student, continued from the float student shipped at commit 5665bca at a
# slow cosine (lr 2e-4 -> 1e-6) over 30,000 steps of whole cached images; the student underfits (its
# teacher gap is the same on its training photos as on held-out ones) and each core-hour of such a
# cosine gained ~0.13 dB. Later phases (fresh QAT with the shipped quantisers, the encoder re-tune and
# the pass on refined latents, as training/recipes/default_students.sh does) take this phase's export.
# A milestone ships only when it beats the shipped files on Kodak and on the 50 held-out photos.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
CORE=${LONG_RUN_CORE:-1}
Q=3
BASE=5665bca
STEPS=30000
RUN=build/long_run/q$Q-float
KEEP=training/long_run/q$Q-float
CACHE=build/cache/q$Q
INIT=build/long_run/student_q$Q.float.$BASE.pt

low() { nice -n 19 taskset -c "$CORE" "$@"; }

case "${1:-run}" in
--save)
    [ -f "$RUN/checkpoint.pt" ] || { echo "long_run: no checkpoint in $RUN to save" >&2; exit 1; }
    mkdir -p "$KEEP"
    .venv/bin/python -m training.long_run save "$RUN" "$KEEP"
    exit 0 ;;
--status)
    .venv/bin/python -m training.long_run status "$RUN" "$KEEP"
    exit 0 ;;
run) ;;
*) echo "usage: $0 [--save|--status]" >&2; exit 2 ;;
esac

mkdir -p "$RUN"
# A fresh machine has no build/: resume from the committed checkpoint.
if [ ! -f "$RUN/checkpoint.pt" ] && [ -f "$KEEP/checkpoint.pt" ]; then
    cp "$KEEP/checkpoint.pt" "$RUN/checkpoint.pt"
    [ -f "$KEEP/log.jsonl" ] && cp "$KEEP/log.jsonl" "$RUN/log.jsonl"
fi
# The init is pinned to a commit, so shipping a new float student never changes what this run resumes.
[ -f "$INIT" ] || git show "$BASE:training/students/student_q$Q.float.pt" > "$INIT"
[ -f "$CACHE/manifest.json" ] || low "$LIC" cache-targets --quality "$Q" --threads 1 -o "$CACHE"
low "$LIC" distill --init "$INIT" --quality "$Q" --cache "$CACHE" --crop 512 --batch-size 4 --threads 1 \
    --save-every 100 --log-every 100 --steps "$STEPS" --lr 2e-4 --lr-final 1e-6 \
    --run-dir "$RUN" --export "build/long_run/student_q$Q.float.long.pt"
