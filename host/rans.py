"""rANS decoding of CompressAI's streams with the project's C decoder (host/csrc/lic_rans.c), via ctypes.

Every .lic stream is written by CompressAI's encoder (`compressai.ans`); the C decoder reads that
format bit-exactly, about an order of magnitude faster (a lookup table instead of a CDF search, and
no Python lists on the way), and checks what CompressAI's decoder does not: a stream that runs out,
a state outside its interval, bypass values no encoder could write, indexes outside the CDF table,
bytes left over after the last symbol. Each of those is a one-line LicError, never a read out of
bounds. No torch, no compiler at run time: `make setup` (or `make -C host/csrc`) builds the library
into build/host/, the board's install script builds it there too, and LIC_RANS_LIB may name a
library built elsewhere (a cross-compiled one, say).

The library releases the GIL while it decodes (ctypes does for CDLL calls), so tile substreams
decode in parallel on threads.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lic.errors import LicError

LIB_ENV = "LIC_RANS_LIB"
DEFAULT_LIB = Path(__file__).resolve().parents[1] / "build" / "host" / "liblic_rans.so"

_I32P = ctypes.POINTER(ctypes.c_int32)


def library_path() -> Path:
    return Path(os.environ.get(LIB_ENV) or DEFAULT_LIB)


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL:
    path = library_path()
    if not path.is_file():
        raise LicError(f"the C rANS decoder is not built ({path} is missing): run `make setup` or "
                       f"`make -C host/csrc`, or set {LIB_ENV} to a built liblic_rans.so")
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise LicError(f"cannot load the C rANS decoder {path}: {e}") from None
    lib.lic_rans_tables_new.argtypes = [_I32P, ctypes.c_int32, ctypes.c_int32, _I32P, _I32P,
                                        ctypes.POINTER(ctypes.c_void_p)]
    lib.lic_rans_tables_free.argtypes = [ctypes.c_void_p]
    lib.lic_rans_tables_free.restype = None
    lib.lic_rans_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, _I32P, ctypes.c_size_t,
                                    _I32P, ctypes.POINTER(ctypes.c_size_t)]
    lib.lic_rans_strerror.restype = ctypes.c_char_p
    return lib


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_I32P)


def _error(status: int) -> str:
    return _lib().lic_rans_strerror(status).decode()


class CdfTable:
    """One entropy model's quantised CDFs, as CompressAI's EntropyModel holds them after update():
    cdf [n, L] int32 (rows padded), cdf_length [n], offset [n]."""

    def __init__(self, cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray):
        if cdf.ndim != 2 or cdf_length.shape != (cdf.shape[0],) or offset.shape != (cdf.shape[0],):
            raise LicError(f"bad CDF table shapes {cdf.shape}, {cdf_length.shape}, {offset.shape}")
        self.cdf = np.ascontiguousarray(cdf, dtype=np.int32)
        self.cdf_length = np.ascontiguousarray(cdf_length, dtype=np.int32)
        self.offset = np.ascontiguousarray(offset, dtype=np.int32)
        self._handle = None
        handle = ctypes.c_void_p()
        status = _lib().lic_rans_tables_new(_ptr(self.cdf), self.cdf.shape[0], self.cdf.shape[1],
                                            _ptr(self.cdf_length), _ptr(self.offset), ctypes.byref(handle))
        if status:
            raise LicError(f"entropy tables rejected: {_error(status)}")
        self._handle = handle

    def __del__(self):
        if getattr(self, "_handle", None):
            _lib().lic_rans_tables_free(self._handle)
            self._handle = None

    def __len__(self) -> int:
        return self.cdf.shape[0]

    def decode(self, stream: bytes, indexes: np.ndarray, label: str = "rANS stream") -> np.ndarray:
        """Decode len(indexes.ravel()) symbols from one stream, symbol i with table indexes[i];
        returns int32 values shaped like `indexes`. A stream that does not decode to exactly
        those symbols raises LicError naming `label`."""
        indexes = np.asarray(indexes)
        flat = np.ascontiguousarray(indexes.ravel(), dtype=np.int32)
        out = np.empty(flat.size, dtype=np.int32)
        where = ctypes.c_size_t()
        status = _lib().lic_rans_decode(self._handle, bytes(stream), len(stream), _ptr(flat), flat.size,
                                        _ptr(out), ctypes.byref(where))
        if status:
            raise LicError(f"{label}: {_error(status)} (at symbol {where.value} of {flat.size})")
        return out.reshape(indexes.shape)
