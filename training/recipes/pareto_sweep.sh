#!/usr/bin/env bash
# The channels x bit-width sweep behind `lic pareto` (docs in hls/README.md): students of the q3
# teacher at three widths, each quantisation-aware trained at W4A4 and W8A8, on a short CPU schedule
# (comparable with each other, not with the longer-trained shipped default), then PSNR loss against
# MACs on Kodak and FPGA estimates for pynq-z2.
# Usage: training/recipes/pareto_sweep.sh [FLOAT_STEPS] [QAT_STEPS]
set -euo pipefail
{  # bash reads this block whole before running it: editing the file during a run of hours cannot
   # change the running copy (it read on where it stood, once, and broke a run)
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
FLOAT=${1:-1500}
QAT=${2:-400}
RUNS=build/sweep
COMMON=(--quality 3 --crop 128 --batch-size 8 ${THREADS:+--threads $THREADS})
declare -A WIDTHS=([small]=48,32,16,8 [default]=96,64,32,16 [large]=128,96,64,32)
for name in small default large; do
    "$LIC" distill "${COMMON[@]}" --channels "${WIDTHS[$name]}" --steps "$FLOAT" --run-dir "$RUNS/$name-float" \
        --export "$RUNS/$name-float.pt"
    for bits in "4 4" "8 8"; do
        set -- $bits
        "$LIC" qat --student "$RUNS/$name-float.pt" "${COMMON[@]}" --steps "$QAT" --weight-bits "$1" --act-bits "$2" \
            --run-dir "$RUNS/$name-w$1a$2" --export "$RUNS/$name-w$1a$2.pt"
        "$LIC" export "$RUNS/$name-w$1a$2.pt" -o "$RUNS/$name-w$1a$2.pkg"
        "$LIC" hw --board pynq-z2 --package "$RUNS/$name-w$1a$2.pkg" -o "$RUNS/$name-w$1a$2.hw" || true
    done
done
"$LIC" pareto "$RUNS"/*-w*a*.pt --hw "$RUNS"/*.hw -o "$RUNS/pareto"
exit
}
