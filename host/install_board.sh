#!/usr/bin/env bash
# Install the lic-fpga host runtime on a PYNQ board (PYNQ image 3.x: 32-bit ARM, Python 3.10), as the
# xilinx user, from a copy of this repository on the board. No torch: numpy, Pillow, tqdm, pynq (already in
# the PYNQ venv) and the project's C rANS decoder (host/csrc, built here with the board's gcc).
#   scp -r lic-fpga xilinx@pynq:~ && ssh xilinx@pynq 'cd lic-fpga && bash host/install_board.sh'
set -euo pipefail
if [[ -f /etc/profile.d/pynq_venv.sh ]]; then
  # shellcheck disable=SC1091
  source /etc/profile.d/pynq_venv.sh   # PYNQ's own venv, where the pynq package lives
fi
python3 -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
command -v gcc >/dev/null || { echo "install_board: gcc missing: sudo apt-get install -y gcc make" >&2; exit 1; }
python3 -m pip install --no-deps "numpy>=1.21" "pillow>=9" tqdm "setuptools>=77.0.3,<81"
# The rANS decoder is plain C99 (libc only); a prebuilt library can be used instead through LIC_RANS_LIB.
make -C host/csrc
python3 -m pip install --no-deps --no-build-isolation -e .
python3 - <<'PY'
from host.rans import _lib
_lib()
print("lic host runtime installed: try  lic decode FILE.lic -o out.png --backend pynq --hw-dir BUILD_DIR")
PY
