#!/usr/bin/env bash
# Entry point of the lic-fpga image (see Dockerfile): make a mounted Vivado usable, then run the command.
set -euo pipefail
if [[ -n "${XILINX_VIVADO:-}" ]]; then
  if [[ ! -f "$XILINX_VIVADO/settings64.sh" ]]; then
    echo "docker_entrypoint: XILINX_VIVADO=$XILINX_VIVADO has no settings64.sh; mount your Vivado installation at that path" >&2
    exit 1
  fi
  # shellcheck disable=SC1091
  source "$XILINX_VIVADO/settings64.sh"
  [[ -n "${XILINX_HLS:-}" && -f "$XILINX_HLS/settings64.sh" ]] && source "$XILINX_HLS/settings64.sh"
  # finn-hlslib and nlohmann-json are what FINN looks for (hls/preflight.py); --accept-defaults: without
  # a FINN settings file `finn` would otherwise start its interactive setup wizard and exit
  if [[ ! -f "$FINN_DEPS/finn-hlslib/mvau.hpp" || ! -f "$FINN_DEPS/nlohmann_json/json/CMakeLists.txt" ]]; then
    mkdir -p "$FINN_DEPS"
    /lic/.venv/bin/finn deps update --accept-defaults -d "$FINN_DEPS"
  fi
  # finn_xsi loads Vivado's simulator kernel in-process: the library path must be set before lic starts
  export LD_LIBRARY_PATH="$XILINX_VIVADO/lib/lnx64.o${XILINX_HLS:+:$XILINX_HLS/lnx64/tools/fpo_v7_1}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
exec "$@"
