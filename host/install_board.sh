#!/usr/bin/env bash
# Install the lic-fpga host runtime on a PYNQ board (PYNQ image 3.x: 32-bit ARM, Python 3.10), as the
# xilinx user, from a copy of this repository on the board. No torch: numpy, Pillow, tqdm, pynq (already in
# the PYNQ venv) and CompressAI's rANS coder built from its source distribution.
#   scp -r lic-fpga xilinx@pynq:~ && ssh xilinx@pynq 'cd lic-fpga && bash host/install_board.sh'
set -euo pipefail
if [[ -f /etc/profile.d/pynq_venv.sh ]]; then
  # shellcheck disable=SC1091
  source /etc/profile.d/pynq_venv.sh   # PYNQ's own venv, where the pynq package lives
fi
python3 -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
command -v g++ >/dev/null || { echo "install_board: g++ missing: sudo apt-get install -y g++" >&2; exit 1; }
python3 -m pip install --no-deps "numpy>=1.21" "pillow>=9" tqdm pybind11 "setuptools>=77.0.3,<81"
# CompressAI has no ARM wheel: build its sdist. Only its rANS and ops extensions compile (g++ + pybind11);
# its Python dependencies (torch, ...) are skipped on purpose: host/rans.py loads the extension alone.
python3 -m pip install --no-deps --no-build-isolation --no-binary compressai compressai==1.2.8
python3 -m pip install --no-deps --no-build-isolation -e .
# The board kernels (integer h_s, RGB output): NEON on the Zynq-7000's Cortex-A9, which Ubuntu's armhf
# gcc does not assume by default.
mkdir -p build/host
neon=""; [[ $(uname -m) == armv7l ]] && neon="-mcpu=cortex-a9 -mfpu=neon -mfloat-abi=hard"
gcc -O3 $neon -shared -fPIC -o build/host/liblic_host.so host/csrc/integer_hs.c host/csrc/rgb8.c
python3 - <<'PY'
from host.rans import _ans
from host.native import library
_ans()
assert library() is not None, "build/host/liblic_host.so did not build"
print("lic host runtime installed: try  lic decode FILE.lic -o out.png --backend pynq --hw-dir BUILD_DIR")
PY
