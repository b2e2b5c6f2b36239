#!/usr/bin/env bash
# Prices wider students on each board with `lic hw` (FINN's estimates at 25 fps, the margins of make hw,
# no layer simulation): the sizing behind docs/fpga.md "Students sized to each board". Each candidate
# is a student trained one step (its weights do not change FINN's resources or cycles), QAT'd one step
# with the shipped bit widths (8-bit for convs at the latents' resolution), exported and built.
#   training/recipes/size_board_students.sh [BOARD...]     (default: zcu104 kv260 pynq-z2; ~1 min per build)
set -euo pipefail
{  # bash reads this block whole before running it: editing the file during a run of hours cannot
   # change the running copy (it read on where it stood, once, and broke a run)
cd "$(dirname "$0")/../.."
LIC=${LIC:-.venv/bin/lic}
BOARDS=${*:-zcu104 kv260 pynq-z2}
OUT=build/sizing
CANDIDATES=("96,64,32,16 0" "96,64,32,16 2" "96,64,32,16 3" "112,72,36,18 0" "112,72,36,16 0" "128,96,48,24 0" "192,128,64,32 0"
            "256,160,80,40 0" "320,192,96,48 0")
COMMON=(--quality 3 --cache build/cache/q3 --crop 128 --batch-size 1 --threads 1 --steps 1)
[ -f build/cache/q3/manifest.json ] || "$LIC" cache-targets --quality 3 --threads 1 -o build/cache/q3
for cand in "${CANDIDATES[@]}"; do
    read -r channels latent <<< "$cand"
    d=$OUT/c${channels//,/-}-l$latent
    wb=8; ab=8
    for _ in $(seq 1 "$latent"); do wb+=",8"; ab+=",8"; done
    mkdir -p "$d"
    [ -f "$d/float.pt" ] || "$LIC" distill "${COMMON[@]}" --channels "$channels" --latent-convs "$latent" \
        --run-dir "$d/run-float" --export "$d/float.pt" > "$d/log" 2>&1
    [ -f "$d/quant.pt" ] || "$LIC" qat --student "$d/float.pt" "${COMMON[@]}" --weight-bits "$wb,4,4,8,8" \
        --act-bits "$ab,8,8,8" --weight-scale mse --run-dir "$d/run-quant" --export "$d/quant.pt" >> "$d/log" 2>&1
    [ -d "$d/pkg" ] || "$LIC" export "$d/quant.pt" -o "$d/pkg" >> "$d/log" 2>&1
    for board in $BOARDS; do
        # a student no fold of which fits a board is a result, not a failure
        "$LIC" hw --board "$board" --package "$d/pkg" --target-fps 25 --no-simulate -o "$d/hw-$board" >> "$d/log" 2>&1 \
            || echo "$d on $board: $(tail -1 "$d/log")"
    done
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path

print("| student | board | fabric fps | LUT | BRAM18 | DSP | kMAC/px |\n|---|---|---:|---:|---:|---:|---:|")
for f in sorted(Path(sys.argv[1]).glob("*/hw-*/estimates.json")):
    e = json.loads(f.read_text())
    r = e["resources"]
    use = lambda k: f'{r[k].get("used_with_fifos_and_iodmas", r[k]["used"]):,.0f} / {r[k]["limit_for_finn_layers"]:,.0f}'
    print(f'| {f.parts[-3]} | {e["board"]} | {e["rates"]["fabric_fps"]["fps"]:.2f} | {use("LUT")} | {use("BRAM_18K")} '
          f'| {use("DSP")} | {e["student"]["kmac_per_pixel"]} |')
PY
exit
}
