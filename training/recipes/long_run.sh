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
#                                           exports into training/long_run/q3/ (then commit); the
#                                           checkpoint stays out if it would leave the GPU sprint too
#                                           little room (training/recipes/gpu_sprint.py room)
#   training/recipes/long_run.sh --status  phase, step, core-hours so far and the last logged figures
#
# Phases 1-5 (finished) are default_students.sh's for q3 with one change, a longer float student:
#   float    the float student of commit 5665bca at a slow cosine (lr 2e-4 -> 1e-6) over 30,000 steps
#            of whole cached images (Kodak 26.32 -> 26.54 dB on the teacher's files);
#   qat      fresh QAT of it straight to the shipped quantisers, 5000 steps;
#   qat2     3000 steps more from there (--init, a new cosine);
#   qat-ema  3000 steps exporting the weights' moving average (--ema 0.999);
#   qgate    its verdict against the shipped student (bench/milestone.py: Kodak and the 50 held-out
#            photos, float and quantised, the teacher's files): it does not beat it.
# Phases 6-10: capacity. A float student twice as wide, and the same QAT of it: how much of the gap a
# student with 2x the MACs closes once quantised, and KV260's quality-first student beyond the MAC
# budget (docs/fpga.md "Students sized to each board": 28.2 fps there, FINN estimate; PYNQ-Z2 does
# not hold it):
#   wide     128,96,48,24 from scratch, 30,000 steps;
#   wqat, wqat2, wqat-ema   phases 2-4's QAT of it;
#   wgate    its verdict, as qgate's: it beats the shipped student, float and quantised (Kodak 26.75 / 26.17
#            dB), so both its exports are kept for good (KV260's option beyond the budget).
# Phases 11-15 are training/recipes/prune_student.sh's (pruning, docs/students.md), ~8 core-hours:
#   pruned   `lic prune` of the wide student to the shipped widths by first-order Taylor importance,
#            fine-tuned 10,000 steps;
#   pqat, pqat2, pqat-ema   phases 2-4's QAT of the pruned student (same fabric, same fps);
#   pgate    its verdict, as qgate's. Only a milestone that beats the shipped student there is worth
#            its encoder and refinement phases (~3 core-hours, phases 16-19, next); otherwise they are
#            skipped (NAME.json says why). It beats (Kodak quantised 25.91 -> 26.01 dB, held-out 24.75 ->
#            24.87), and a student at the shipped widths would ship for every board, so they come before
#            KV260's.
# Phases 16-19 are default_students.sh's steps 5 and 8 for the pruned student (pgate's):
#   penc     the shipped tuned encoder re-tuned for it (`lic tune-encoder --init`, 1000 steps);
#   prefined one averaged QAT pass on penc's latents refined for it (`lic cache-targets --refine 100
#            --student`, built first: 79 min on one core for board_student.sh's, measured; its ~200 MB
#            stay in build/, so the one step whose progress a lost machine costs);
#   penc2    the encoder re-tuned for that student (500 steps);
#   pverdict the verdict again, now also the deployable codec, its files refined as the board's are:
#            it does not beat (-0.01 dB at equal rate on Kodak and held-out), not shipped.
# Phases 21-25: KV260's quality-first student within the 8x MAC budget, 112,72,36,16 (5.08 kMAC/px, 8.3x
# below the teacher's g_s; docs/fpga.md "Students sized to each board"), pruned from the same wide
# student instead of a 30,000-step float run of its own:
#   kpruned  `lic prune` of the wide student to 112,72,36,16, fine-tuned 10,000 steps;
#   kqat, kqat2, kqat-ema   phases 2-4's QAT of it;
#   kgate    its verdict, as qgate's;
#   kenc, krefined, kenc2, kverdict   phases 16-19 for it, if kgate says it beats (a person ships it as
#            KV260's package if kverdict does too).
# The pruned student's files were kept until its verdict (pverdict: it does not beat); they are in
# the history (commit 191d647).
# A milestone that beats the shipped student on every check ships by hand: pins, README, recipe.
# LIC, MILESTONE (the commands), LONG_RUN_CORE, LONG_RUN_BUILD (for build/) and LONG_RUN_KEEP (for
# training/long_run/q3) let tests/test_long_run_phases.py walk the phases with commands that only
# write their outputs.
set -euo pipefail
{  # bash reads this block whole before running it: editing the file during a run of hours cannot
   # change the running copy (it read on where it stood, once, and broke a run)
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
read -ra MILESTONE <<< "${MILESTONE:-.venv/bin/python -m bench.milestone}"
CORE=${LONG_RUN_CORE:-1}
Q=3
BASE=5665bca
BUILD=${LONG_RUN_BUILD:-build}
RUNS=$BUILD/long_run
KEEP=${LONG_RUN_KEEP:-training/long_run/q$Q}
CACHE=$BUILD/cache/q$Q
INIT=$RUNS/student_q$Q.float.$BASE.pt
TRAIN=(--crop 512 --batch-size 4 --threads 1 --save-every 100 --log-every 100)
WHOLE=(--quality "$Q" --cache "$CACHE" "${TRAIN[@]}")
QUANT=(--weight-bits 8,4,4,8,8 --act-bits 8,8,8,8 --weight-scale mse --lr 1e-4 --lr-final 1e-6)
REFINED=$RUNS/cache-refined
# NAME+LATER: its export stays in training/long_run/ until phase LATER has finished (later phases'
# --student); NAME+: for good (a candidate to ship from). The newest export always stays (the next --init).
PHASES=(float+qgate qat qat2 qat-ema qgate wide+ wqat wqat2 wqat-ema+ wgate pruned+pverdict pqat pqat2 pqat-ema+prefined
        pgate penc+penc2 prefined+pverdict penc2+pverdict pverdict kpruned+ kqat kqat2 kqat-ema+krefined kgate
        kenc+kenc2 krefined+ kenc2+ kverdict)
low() { nice -n 19 taskset -c "$CORE" "$@"; }
keeper() { .venv/bin/python -m training.long_run "$@"; }

case "${1:-run}" in
--save)
    keeper save "$RUNS" "$KEEP" "${PHASES[@]}"
    # a checkpoint that would crowd the GPU sprint's photos out of what travels is not committed
    python3 training/recipes/gpu_sprint.py room || keeper drop-checkpoint "$RUNS" "$KEEP" "${PHASES[@]}"
    exit 0 ;;
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

finished() {  # NAME: its export or result (NAME.json), or a later phase's, exists
    local name=$1 later=0 p
    for p in "${PHASES[@]}"; do
        p=${p%%+*}
        [ "$p" = "$name" ] && later=1
        [ "$later" = 1 ] && { [ -f "$RUNS/$p.pt" ] || [ -f "$RUNS/$p.json" ]; } && return 0
    done
    return 1
}
run_phase() {  # NAME COMMAND...
    local name=$1; shift
    finished "$name" || low "$LIC" "$@" --run-dir "$RUNS/q$Q-$name" --export "$RUNS/$name.pt"
}
judge() {  # NAME ARGS...: the milestone's verdict against the shipped student, RUNS/NAME.json
    local name=$1; shift
    finished "$name" || OMP_NUM_THREADS=1 low "${MILESTONE[@]}" --quality "$Q" "$@" -o "$RUNS/$name.json"
}
beats() {  # NAME: did that verdict say the milestone beats the shipped student? (no verdict, or none readable: stop)
    local verdict
    verdict=$(.venv/bin/python -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["beats"]))' \
        "$RUNS/$1.json") || { echo "long_run: no readable verdict in $RUNS/$1.json" >&2; exit 1; }
    [ "$verdict" = 1 ]
}
skip() {  # WHY NAME...: phases a verdict made not worth their core-hours
    local why=$1 p; shift
    for p; do
        finished "$p" && continue
        printf '{"skipped": "%s"}\n' "$why" > "$RUNS/$p.json.tmp"
        mv "$RUNS/$p.json.tmp" "$RUNS/$p.json"
    done
}

# The teacher's targets, unless every phase has finished (board_student.sh may build the same cache
# beside this run: cache-targets then waits for it and keeps it)
finished "${PHASES[-1]%%+*}" || [ -f "$CACHE/manifest.json" ] ||
    low "$LIC" cache-targets --quality "$Q" --threads 1 -o "$CACHE"

quantise() {  # FLOAT Q GATE: phases 2-4's QAT of FLOAT's export (Qqat, Qqat2, Qqat-ema), then its verdict GATE
    local float=$RUNS/$1.pt q=$2
    run_phase "${q}qat" qat --student "$float" "${WHOLE[@]}" "${QUANT[@]}" --steps 5000
    run_phase "${q}qat2" qat --student "$float" --init "$RUNS/${q}qat.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000
    run_phase "${q}qat-ema" qat --student "$float" --init "$RUNS/${q}qat2.pt" "${WHOLE[@]}" "${QUANT[@]}" --steps 3000 \
        --ema 0.999
    judge "$3" --float "$float" --quant "$RUNS/${q}qat-ema.pt"
}
prune() {  # NAME CHANNELS: the wide student pruned to CHANNELS by first-order Taylor importance, fine-tuned
    run_phase "$1" prune --student "$RUNS/wide.pt" --channels "$2" --importance-batches 32 "${WHOLE[@]}" \
        --steps 10000 --lr 2e-4 --lr-final 1e-6
}

run_phase float distill --init "$INIT" "${WHOLE[@]}" --steps 30000 --lr 2e-4 --lr-final 1e-6
quantise float "" qgate
run_phase wide distill "${WHOLE[@]}" --channels 128,96,48,24 --steps 30000 --lr 1e-3 --lr-final 1e-6
quantise wide w wgate
prune pruned 96,64,32,16
quantise pruned p pgate
refine() {  # X FLOAT GATE CACHE: steps 5 and 8 for the student X (FLOAT's, its QAT export Xqat-ema) if GATE
            # says it beats: Xenc, the refined cache CACHE, Xrefined, Xenc2, the verdict Xverdict
    local x=$1 float=$RUNS/$2.pt gate=$3 cache=$4 quant=$RUNS/${1}qat-ema.pt
    if ! beats "$gate"; then
        skip "$gate: the QAT milestone does not beat the shipped student" "${x}enc" "${x}refined" "${x}enc2" "${x}verdict"
        return
    fi
    run_phase "${x}enc" tune-encoder --init "training/teachers/encoder_q$Q.pt" --student "$quant" --cache "$CACHE" \
        --steps 1000 --threads 1
    finished "${x}refined" || [ -f "$cache/manifest.json" ] || low "$LIC" cache-targets --teacher "$RUNS/${x}enc.pt" \
        --student "$quant" --refine 100 --threads 1 -o "$cache"
    run_phase "${x}refined" qat --student "$float" --init "$quant" --teacher "$RUNS/${x}enc.pt" \
        --cache "$cache" "${TRAIN[@]}" --steps 2000 --lr 1e-4 --lr-final 1e-6 --ema 0.999 --w-teacher 0
    run_phase "${x}enc2" tune-encoder --init "$RUNS/${x}enc.pt" --student "$RUNS/${x}refined.pt" --cache "$CACHE" \
        --steps 500 --threads 1
    judge "${x}verdict" --float "$float" --quant "$RUNS/${x}refined.pt" --encoder "$RUNS/${x}enc2.pt" --refine 100
}
refine p pruned pgate "$REFINED"
prune kpruned 112,72,36,16
quantise kpruned k kgate
refine k kpruned kgate "$REFINED-k"
echo "long_run: every phase finished; verdicts in $RUNS/qgate.json, wgate.json, pgate.json, pverdict.json, kgate.json" \
    "and kverdict.json"
exit
}
