"""The board-side C kernels other than rANS (host/csrc/integer_hs.c, rgb8.c, windows.c), via ctypes.

`make setup` builds them into build/host/liblic_host.so, host/install_board.sh does on a board, and
LIC_HOST_LIB may name a library built elsewhere (`make arm-check` cross-compiles one). Without the
library every caller falls back to numpy, which gives the same integers, only slower: the C code
exists because a Cortex-A9 has integer SIMD (NEON) but no float64 SIMD, and numpy's armhf build
spends tens of instructions per element on table lookups.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lic.errors import LicError

LIB_ENV = "LIC_HOST_LIB"
DEFAULT_LIB = Path(__file__).resolve().parent.parent / "build" / "host" / "liblic_host.so"


def _array(dtype):
    return np.ctypeslib.ndpointer(dtype, flags="C_CONTIGUOUS")


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None when they are not built."""
    path = os.environ.get(LIB_ENV) or DEFAULT_LIB
    if not Path(path).is_file():
        if os.environ.get(LIB_ENV):
            raise LicError(f"{LIB_ENV}={path}: no such library")
        return None
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise LicError(f"cannot load {path}: {e}") from None
    c_int, ptrdiff = ctypes.c_int, ctypes.c_ssize_t
    lib.lic_hs_prepare.argtypes = [_array(np.int32), c_int, c_int, _array(np.int32)]
    lib.lic_hs_prepare.restype = None
    lib.lic_hs_layer.argtypes = [_array(np.int32), c_int, c_int, c_int, _array(np.int16), c_int, c_int, c_int,
                                 _array(np.int32), c_int, _array(np.int32), _array(np.int32), c_int, c_int]
    lib.lic_hs_layer.restype = c_int
    lib.lic_rgb8.argtypes = [ctypes.c_void_p, c_int, c_int, ptrdiff, ptrdiff, _array(np.uint8), _array(np.uint8)]
    lib.lic_rgb8.restype = None
    lib.lic_rgb8_pow2.argtypes = [ctypes.c_void_p, c_int, c_int, ptrdiff, ptrdiff, c_int, _array(np.uint8)]
    lib.lic_rgb8_pow2.restype = c_int
    lib.lic_rgb8_pow2_hwc8.argtypes = [ctypes.c_void_p, c_int, c_int, ptrdiff, c_int, ctypes.c_void_p, ptrdiff]
    lib.lic_rgb8_pow2_hwc8.restype = c_int
    lib.lic_window_hwc8.argtypes = [ctypes.c_void_p, c_int, ptrdiff, ptrdiff, c_int, c_int, c_int, c_int,
                                    ctypes.c_void_p]
    lib.lic_window_hwc8.restype = None
    return lib
