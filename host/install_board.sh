#!/usr/bin/env bash
# Install the lic-fpga host runtime on a PYNQ board (PYNQ image 3.x: 32-bit ARM, Python 3.10) into PYNQ's own
# venv (/usr/local/share/pynq-venv, where the pynq package lives; it belongs to root, so pip runs under sudo),
# from a copy of this repository, logged in as the xilinx user: numpy, Pillow and tqdm (armv7 wheels or the
# image's own, nothing compiled) and the project's C code (host/csrc, built here with the board's gcc, seconds):
#   scp -r lic-fpga xilinx@pynq:~ && ssh xilinx@pynq 'cd lic-fpga && bash host/install_board.sh'
# No torch, no onnxruntime (no wheel for 32-bit ARM), no onnx, qonnx or finn-plus-driver: the student runs on the
# fabric (--backend pynq, the default where pynq is installed) through host/accelerator_driver.py, which drives
# FINN's IODMAs on PYNQ's own Overlay and allocate as finn-plus-driver's FINNDMAOverlay does, from the build's
# driver/settings.json (finn-plus-driver imports qonnx, which imports onnx: pip would compile onnx on the A9).
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
# --only-binary: a wheel or nothing, so nothing is ever compiled here; PYNQ's venv already has numpy and Pillow
# (pip then keeps them), and tqdm is pure Python.
$PIP --only-binary :all: "numpy>=1.21,<2" "pillow>=9" tqdm "setuptools>=77.0.3,<81"
# cryptography checks signed decoder packages (`lic decode --trusted-key`; optional): the lock's pin, whose
# armv7l wheel needs only the cffi that pynq itself depends on (requirements.lock says why this version).
$PIP --only-binary :all: "$(grep -m1 '^cryptography==' requirements.lock)"
# The rANS decoder and the integer h_s / RGB kernels: plain C99 (libc only), NEON on the A9
# (host/csrc/Makefile); prebuilt libraries can be used instead through LIC_RANS_LIB / LIC_HOST_LIB.
make -C host/csrc
$SUDO "$PY" -m pip install --no-deps --no-build-isolation -e .
"$PY" - <<'PY'
import sys
from host.rans import _lib
from host.backends import default_backend
from host.native import library
import host.accelerator_driver, host.fabric, host.runtime  # noqa: F401,E401  (the board's path imports)
_lib()
assert library() is not None, "build/host/liblic_host.so did not build"
assert default_backend() == "pynq"
try:
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
except ImportError as e:
    print(f"install_board: cryptography does not import ({e}): signed packages cannot be checked here", file=sys.stderr)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "onnx", "qonnx", "finn", "finn_plus_driver"})
assert not heavy, f"the board's path imported {heavy}"
print("lic host runtime installed in PYNQ's venv; decode on the fabric (as root, see the header of "
      "host/install_board.sh):  lic decode FILE.lic -o out.png --hw-dir BUILD_DIR")
PY
