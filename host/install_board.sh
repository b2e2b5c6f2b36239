#!/usr/bin/env bash
# Install the lic-fpga host runtime on a PYNQ board (PYNQ image 3.x: 32-bit ARM, Python 3.10) into PYNQ's own
# venv (/usr/local/share/pynq-venv, where the pynq package lives; it belongs to root, so pip runs under sudo),
# from a copy of this repository, logged in as the xilinx user: numpy, Pillow, tqdm,
# finn-plus-driver and the project's C rANS decoder (host/csrc, built here with the board's gcc):
#   scp -r lic-fpga xilinx@pynq:~ && ssh xilinx@pynq 'cd lic-fpga && bash host/install_board.sh'
# No torch, no onnxruntime (no wheel for 32-bit ARM): the student runs on the fabric (--backend pynq, the
# default where pynq is installed) through finn-plus-driver, which reads the build's driver/settings.json.
# Decoding on the fabric needs root, as every PYNQ overlay does, and XILINX_XRT from xrt_setup.sh:
#   source /etc/profile.d/xrt_setup.sh
#   sudo -E /usr/local/share/pynq-venv/bin/lic decode photo.lic -o photo.png --hw-dir BUILD_DIR
set -euo pipefail
PYNQ_VENV=${PYNQ_VENV:-/usr/local/share/pynq-venv}
PY="$PYNQ_VENV/bin/python3"
[[ -x $PY ]] || { echo "install_board: no PYNQ venv at $PYNQ_VENV (PYNQ image 3.x); set PYNQ_VENV=..." >&2; exit 1; }
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed"'
"$PY" -c 'import pynq' 2>/dev/null || { echo "install_board: $PY has no pynq: not a PYNQ image?" >&2; exit 1; }
SUDO=$([[ $(id -u) -eq 0 ]] && echo "" || echo "sudo -H")
PIP="$SUDO $PY -m pip install --no-deps"
command -v gcc >/dev/null || { echo "install_board: gcc missing: sudo apt-get install -y gcc make" >&2; exit 1; }
$PIP "numpy>=1.21,<2" "pillow>=9" tqdm "setuptools>=77.0.3,<81"
# finn-plus-driver (FINNDMAOverlay, FINN's packing) without its CLI/validation extras (click, h5py, grpcio,
# matplotlib, datasets); the overlay imports qonnx.util.basic, which imports onnx: no armv7 wheel exists, so
# pip builds onnx from its sdist when the image lacks it (needs cmake and protobuf; slow on the A9).
if ! "$PY" -c 'import onnx' 2>/dev/null; then
  $SUDO apt-get install -y cmake protobuf-compiler libprotobuf-dev
  $SUDO "$PY" -m pip install "onnx==1.17.0" "protobuf>=3.20.2"
fi
$PIP bitarray "bitstring>=4.0" qonnx==1.0.0 finn-plus-driver==1.6.1
# The rANS decoder and the integer h_s / RGB kernels: plain C99 (libc only), NEON on the A9
# (host/csrc/Makefile); prebuilt libraries can be used instead through LIC_RANS_LIB / LIC_HOST_LIB.
make -C host/csrc
$SUDO "$PY" -m pip install --no-deps --no-build-isolation -e .
"$PY" - <<'PY'
from host.rans import _lib
from finn_plus_driver.packing import finnpy_to_packed_bytearray  # noqa: F401
from host.backends import default_backend
from host.native import library
_lib()
assert library() is not None, "build/host/liblic_host.so did not build"
assert default_backend() == "pynq"
print("lic host runtime installed in PYNQ's venv; decode on the fabric (as root, see the header of "
      "host/install_board.sh):  lic decode FILE.lic -o out.png --hw-dir BUILD_DIR")
PY
