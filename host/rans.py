"""CompressAI's rANS decoder, without torch.

The compiled extension `compressai.ans` (pybind11, no torch symbols) is what every .lic stream was
coded with. Importing it the normal way runs `compressai/__init__.py`, which imports torch; the
board has no torch. So the extension is loaded straight from its file under the name it was built
with. On x86 that file comes from the compressai wheel; on the board from building CompressAI's
sdist (see host/README.md), whose rANS output is byte-identical to the wheel's.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from lic.errors import LicError

_MODULE = "compressai.ans"


@lru_cache(maxsize=1)
def _ans():
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    spec = importlib.util.find_spec("compressai")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise LicError("CompressAI's rANS coder is not installed: on x86 `pip install --no-deps "
                       "compressai==1.2.8`; on the board build it from the sdist (host/README.md)")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("ans*" + _suffix())):
            loader = importlib.machinery.ExtensionFileLoader(_MODULE, str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(_MODULE, loader))
            loader.exec_module(module)
            return module
    raise LicError(f"compressai is installed but has no compiled rANS extension (ans*{_suffix()}) in "
                   f"{', '.join(spec.submodule_search_locations)}; reinstall it so the extension is built")


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


PRECISION = 16  # CompressAI's CDFs sum to 2^16
# |symbol - offset| bound. CompressAI's encoder loops forever on a bypass value of 2^28 or more (its
# nibble count shifts a uint32 by 32), so no file holds |symbol| >= 2^27; far beyond any latent.
MAX_SYMBOL = 1 << 26
# Bits a rANS string must hold per symbol, lower bound: log2(2^16 / largest frequency of its table)
# less the encoder's rounding loss (< 2 x 2^-15 x log2(e) bits per symbol with CompressAI's 64-bit
# state, 32-bit words); upper bound: 16 bits + bypass (count nibble + 8 value nibbles) + rounding.
_ROUNDING_BITS = 1e-4
_MAX_BITS_PER_SYMBOL = 16 + 4 * 9 + _ROUNDING_BITS
# CompressAI's encoder sizes its output buffer at one word per symbol and flushes two words into
# it: with 1 or 2 symbols it writes before the buffer (heap corruption, found by `make fuzz`).
MIN_SYMBOLS = 3
_STATE_BITS, _FLUSH_BITS = 31, 64  # the encoder starts at 2^31 and flushes its 64-bit state


class CdfTable:
    """One entropy model's quantised CDFs, as CompressAI's EntropyModel holds them after update():
    cdf [n, L] int32 (rows padded), cdf_length [n], offset [n]. The tables come from a decoder
    package, which is untrusted input: every row is checked to be a valid CDF, because CompressAI's
    coder indexes memory with them unchecked."""

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
        self._check(name)
        freq = np.diff(self.cdf.astype(np.int64), axis=1)
        cols = np.arange(freq.shape[1])[None, :]
        fmax = np.where(cols < self.cdf_length[:, None] - 1, freq, 0).max(axis=1)
        self.min_bits = np.log2((1 << PRECISION) / fmax)  # per row: the cheapest symbol's cost
        self._lists = (self.cdf.tolist(), self.cdf_length.tolist(), self.offset.tolist())

    def _check(self, name: str) -> None:
        n, width = self.cdf.shape
        length = self.cdf_length
        if length.min() < 2 or length.max() > width:
            raise LicError(f"{name}: CDF lengths must be 2..{width}, found {length.min()}..{length.max()}")
        if np.abs(self.offset.astype(np.int64)).max() >= MAX_SYMBOL:
            raise LicError(f"{name}: CDF offsets out of range")
        rows = np.arange(n)
        cols = np.arange(width)[None, :]
        inside = cols < length[:, None]
        steps = np.diff(self.cdf.astype(np.int64), axis=1)
        if (self.cdf[:, 0] != 0).any() or (self.cdf[rows, length - 1] != 1 << PRECISION).any() \
                or (steps[inside[:, 1:]] < 1).any():
            raise LicError(f"{name}: not a valid CDF table (each row must rise strictly from 0 to 2^{PRECISION})")

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
        produce: too short means the header claims more symbols than were coded."""
        n, symbols = len(stream), int(counts.sum())
        if symbols < MIN_SYMBOLS:
            raise LicError(f"{what}: {symbols} symbols; CompressAI's rANS coder needs at least {MIN_SYMBOLS}")
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

    def decode(self, stream: bytes, indexes: np.ndarray, what: str = "stream") -> np.ndarray:
        """Decode len(indexes.ravel()) symbols from one stream, symbol i with table indexes[i];
        returns int32 values shaped like `indexes`. Untrusted streams are fine: see decode_checked."""
        indexes = np.asarray(indexes)
        self.check_stream(stream, indexes, what)
        return decode_checked(self, stream, indexes, what).reshape(indexes.shape)


def _decode_and_reencode(table: CdfTable, stream: bytes, indexes: np.ndarray) -> np.ndarray | None:
    """CompressAI's decoder, then its encoder on what came out: a stream is accepted only if it is
    exactly what the encoder writes for those symbols. That rejects every stream the decoder read
    past the end of, whose state left its interval, or that carries symbols out of range: the
    decoder itself checks none of these (issue 11)."""
    ans = _ans()
    idx = indexes.ravel().astype(np.int32).tolist()
    # Zero words after the stream: a corrupt stream's over-read lands in them rather than past the
    # buffer (each symbol reads at most one word outside bypass runs). A valid stream never reaches
    # them, and the comparison below is with the stream itself.
    padded = stream + bytes(4 * len(idx) + (64 << 10))
    decoded = ans.RansDecoder().decode_with_indexes(padded, idx, *table._lists)
    values = np.asarray(decoded, dtype=np.int64)
    if values.size and np.abs(values - table.offset[indexes.ravel()]).max() >= MAX_SYMBOL:
        return None
    if ans.RansEncoder().encode_with_indexes(decoded, idx, *table._lists) != stream:
        return None
    return values.astype(np.int32)


def decode_checked(table: CdfTable, stream: bytes, indexes: np.ndarray, what: str = "stream") -> np.ndarray:
    """Decode with CompressAI's unchecked coder, safely: in a forked child (host/isolation.py), so
    that reading out of bounds cannot take this process down, and verified by re-encoding, so that
    a corrupt stream is an error and never noise. Its memory cap: the decoder's own vectors and
    the Python lists it is called with, ~100 bytes a symbol, plus 256 MiB."""
    from host.isolation import call_isolated

    n = int(np.asarray(indexes).size)
    values = call_isolated(lambda: _decode_and_reencode(table, stream, indexes), what,
                           extra_bytes=(256 << 20) + 100 * n + 8 * len(stream), cpu_seconds=10 + n // 200_000)
    if values is None or values.size != n:
        raise LicError(f"{what}: corrupt (the entropy-coded data does not decode to what the encoder writes: "
                       f"it is damaged, truncated, or the header does not match it)")
    return values
