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
  if [[ ! -d "$FINN_DEPS/finn-hlslib" ]]; then
    mkdir -p "$FINN_DEPS"
    /lic/.venv/bin/finn deps update -d "$FINN_DEPS"
  fi
fi
exec "$@"
