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
    size, stride = ctypes.c_size_t, ctypes.c_ssize_t
    lib.lic_rans_decode_region.argtypes = [ctypes.c_void_p, ctypes.c_char_p, size, _I32P, _I32P, size, size, size,
                                           stride, stride, stride, stride, ctypes.POINTER(size)]
    lib.lic_rans_strerror.restype = ctypes.c_char_p
    return lib


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_I32P)


def _error(status: int) -> str:
    return _lib().lic_rans_strerror(status).decode()


PRECISION = 16  # CompressAI's CDFs sum to 2^16
# Bits a rANS string must hold per symbol, lower bound: log2(2^16 / largest frequency of its table)
# less the encoder's rounding loss (< 2 x 2^-15 x log2(e) bits per symbol with CompressAI's 64-bit
# state, 32-bit words); upper bound: 16 bits + bypass (count nibble + 8 value nibbles) + rounding.
_ROUNDING_BITS = 1e-4
_MAX_BITS_PER_SYMBOL = 16 + 4 * 9 + _ROUNDING_BITS
_STATE_BITS, _FLUSH_BITS = 31, 64  # the encoder starts at 2^31 and flushes its 64-bit state


class CdfTable:
    """One entropy model's quantised CDFs, as CompressAI's EntropyModel holds them after update():
    cdf [n, L] int32 (rows padded), cdf_length [n], offset [n]. The tables come from a decoder
    package, which is untrusted input: the C decoder refuses any row that is not a valid CDF."""

    def __init__(self, cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray, name: str = "CDF table"):
        if cdf.ndim != 2 or cdf_length.shape != (cdf.shape[0],) or offset.shape != (cdf.shape[0],) \
                or cdf.shape[0] == 0:
            raise LicError(f"{name}: bad CDF table shapes {cdf.shape}, {cdf_length.shape}, {offset.shape}")
        for a in (cdf, cdf_length, offset):
            if a.dtype.kind not in "iu" or (a.size and (a.min() < -(1 << 31) or a.max() >= 1 << 31)):
                raise LicError(f"{name}: CDF tables must be 32-bit integers, not {a.dtype}")
        self.cdf = np.ascontiguousarray(cdf, dtype=np.int32)
        self.cdf_length = np.ascontiguousarray(cdf_length, dtype=np.int32)
        self.offset = np.ascontiguousarray(offset, dtype=np.int32)
        self._handle = None
        handle = ctypes.c_void_p()
        status = _lib().lic_rans_tables_new(_ptr(self.cdf), self.cdf.shape[0], self.cdf.shape[1],
                                            _ptr(self.cdf_length), _ptr(self.offset), ctypes.byref(handle))
        if status:
            raise LicError(f"{name}: entropy tables rejected: {_error(status)}")
        self._handle = handle
        freq = np.diff(self.cdf.astype(np.int64), axis=1)
        cols = np.arange(freq.shape[1])[None, :]
        fmax = np.where(cols < self.cdf_length[:, None] - 1, freq, 0).max(axis=1)
        self.min_bits = np.log2((1 << PRECISION) / fmax)  # per row: the cheapest symbol's cost

    def __del__(self):
        if getattr(self, "_handle", None):
            _lib().lic_rans_tables_free(self._handle)
            self._handle = None

    def __len__(self) -> int:
        return self.cdf.shape[0]

    def check_stream(self, stream: bytes, indexes: np.ndarray, what: str = "stream") -> None:
        """Everything that can be checked before decoding: table indexes in range, then check_length.
        Fails with a one-line LicError naming `what`."""
        indexes = np.asarray(indexes)
        if indexes.size and (indexes.min() < 0 or indexes.max() >= len(self)):
            raise LicError(f"{what}: CDF index out of range 0..{len(self) - 1}")
        counts = np.bincount(indexes.ravel(), minlength=len(self)) if indexes.size else np.zeros(len(self), np.int64)
        self.check_length(stream, counts, what)

    def check_length(self, stream: bytes, counts: np.ndarray, what: str = "stream") -> None:
        """A stream of CompressAI's 32-bit words whose length `counts[r]` symbols of each row r can
        produce: too short means the header claims more symbols than were coded. Checked before any
        array the size of the claim is made."""
        n, symbols = len(stream), int(counts.sum())
        if n < 8 or n % 4:
            raise LicError(f"{what}: corrupt ({n} bytes; a rANS string is a whole number of 32-bit words, "
                           f"at least 2)")
        least = _STATE_BITS + float(counts @ self.min_bits) - _ROUNDING_BITS * symbols
        most = _FLUSH_BITS + 32 + _MAX_BITS_PER_SYMBOL * symbols
        if 8 * n < least:
            raise LicError(f"{what}: {n} bytes is too short for {symbols} symbols (at least "
                           f"{int(least) // 8} bytes): the image size in the header does not match the streams")
        if 8 * n > most:
            raise LicError(f"{what}: {n} bytes is too long for {symbols} symbols (at most {int(most) // 8} "
                           f"bytes): the image size in the header does not match the streams")

    def decode_per_row(self, stream: bytes, shape: tuple[int, int, int], what: str = "stream") -> np.ndarray:
        """Symbols [rows, h, w] where every symbol of channel c uses row c (CompressAI's
        EntropyBottleneck layout). The length is checked before the index array is even made."""
        if shape[0] != len(self):
            raise LicError(f"{what}: {shape[0]} channels for a table of {len(self)} rows")
        self.check_length(stream, np.full(len(self), shape[1] * shape[2], dtype=np.int64), what)
        index = np.broadcast_to(np.arange(shape[0], dtype=np.int32)[:, None, None], shape)
        return self.decode(stream, index, what)

    def decode(self, stream: bytes, indexes: np.ndarray, what: str = "rANS stream",
               out: np.ndarray | None = None) -> np.ndarray:
        """Decode len(indexes.ravel()) symbols from one stream, symbol i with table indexes[i] (C
        order); returns int32 values shaped like `indexes`, written into `out` when given (an int32
        array or view of that shape: a tile's window of a whole frame's y). A stream that does not
        decode to exactly those symbols raises LicError naming `what`.

        The C decoder checks everything as it goes, so check_stream's whole-array passes run only
        when it fails, to say why in the file's terms (too short for the header's image size, ...)."""
        indexes = np.asarray(indexes)
        if out is None:
            out = np.empty(indexes.shape, dtype=np.int32)
        elif out.shape != indexes.shape or out.dtype != np.int32:
            raise ValueError(f"out must be int32 of shape {indexes.shape}")
        idx, dst = _region(indexes), _region(out)
        if idx.dtype != np.int32 or idx.strides[2] != 4:
            idx = np.ascontiguousarray(idx, dtype=np.int32)
        if dst.strides[2] != 4 or not np.shares_memory(dst, out):
            raise ValueError("out must be a view whose last axis is contiguous")
        where = ctypes.c_size_t()
        status = _lib().lic_rans_decode_region(self._handle, bytes(stream), len(stream), _ptr(idx), _ptr(dst),
                                               *idx.shape, *(s // 4 for s in idx.strides[:2]),
                                               *(s // 4 for s in dst.strides[:2]), ctypes.byref(where))
        if status:
            self.check_stream(stream, indexes, what)
            raise LicError(f"{what}: {_error(status)} (at symbol {where.value} of {indexes.size})")
        return out


def _region(a: np.ndarray) -> np.ndarray:
    """a as a 3-D view (the C decoder's region), without copying where its axes allow."""
    if a.ndim == 3:
        return a
    if a.ndim < 3:
        return a.reshape((1,) * (3 - a.ndim) + a.shape)
    return a.reshape((-1,) + a.shape[-2:])  # copies only if the leading axes do not merge
