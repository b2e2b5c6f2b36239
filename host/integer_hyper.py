"""The integer hyper-decoder: z symbols -> scale-table indexes, in integer arithmetic only.

This is the definition of h_s for .lic format version 2: the encoder and every decoder (x86, the
board's ARM core) run exactly this, so they agree on every index and entropy decoding is
bit-exact across platforms. Each layer is

    acc   = conv(a, W)                      integers (int8 weights, int activations)
    a'[c] = #{ j : acc[c] >= T[c, j] }      per-channel thresholds (FINN's MultiThreshold)

with biases, scales, ReLU, rounding and clipping all folded into the thresholds T at export time
(quantize/integer_hyper.py). The last layer's thresholds are the scale-table boundaries, so its
counts are the indexes.

Two implementations, equal bit for bit (tests/test_integer_hyper.py):
  native  host/csrc/integer_hs.c (host/native.py): int8 weights x int16 activations -> int32
          accumulators (exact: every model is checked once to keep |acc| < 2^31 - 1), zero
          activations skipped. What the board runs: ARMv7 NEON has integer SIMD but no float64 SIMD.
  numpy   float64 matrix products: every product and partial sum is an integer below 2^53, so the
          result is exact whatever the BLAS summation order. The reference, and the fallback
          where the library is not built.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from host.native import LIB_ENV, library
from host.parallel import each, row_bands
from lic.errors import LicError

FORMAT = "lic-integer-hyper-v1"
_EXACT_LIMIT = 2 ** 53
_INT32_LIMIT = 2 ** 31
NATIVE_BLOCK = 32  # LIC_HS_BLOCK in host/csrc/integer_hs.c


@dataclass
class IntegerLayer:
    weight: np.ndarray       # int8 [out, in, k, k]
    thresholds: np.ndarray   # int64 [out, T], each row non-decreasing
    upsample_before: bool    # nearest x2 before the conv

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    # What the native kernel reads, made on first use (after the file's checks, _check_layers). Its
    # accumulators stay within +-(2^31 - 2) (checked per model), so a threshold clipped to int32 is
    # passed exactly when the original is, and padding each row to 2^m - 1 entries with INT32_MAX
    # (never passed) lets it search without bounds checks. Output channels are padded with zero
    # weights to the kernel's block of 32, and each block's weights are contiguous (it reads one
    # block at a time, which then fits the board's L1 cache).
    @property
    def out_padded(self) -> int:
        return -(-self.weight.shape[0] // NATIVE_BLOCK) * NATIVE_BLOCK

    @cached_property
    def weight_c(self) -> np.ndarray:
        taps = self._taps_c  # [..][in][out_padded]
        blocks = taps.reshape(taps.shape[:-1] + (-1, NATIVE_BLOCK))
        return np.ascontiguousarray(np.moveaxis(blocks, -2, 0))  # [out_padded / 32][..][in][32]

    @property
    def _taps_c(self) -> np.ndarray:
        o, i, k, _ = self.weight.shape
        weight = np.zeros((k, k, i, self.out_padded), np.int16)
        weight[..., :o] = self.weight.transpose(2, 3, 1, 0)
        if not self.native_upsample:
            return weight  # [k][k][in][out]
        # Nearest x2 then a 3x3 conv = four 2x2 convs of the low-resolution map, one per output phase:
        # output row 2y+py reads input rows y-1+py and y+py, and the 3x3 rows landing on each add up
        # (phase 0: row 0 | rows 1+2; phase 1: rows 0+1 | row 2). Same for columns. |sums| <= 4*128.
        taps = ((weight[0:1], weight[1:3]), (weight[0:2], weight[2:3]))
        phases = np.zeros((2, 2, 2, 2) + weight.shape[2:], np.int16)  # [py][px][ky][kx][in][out]
        for py in range(2):
            for ky in range(2):
                rows = taps[py][ky].sum(axis=0)  # [3 (kx)][in][out]
                for px in range(2):
                    phases[py, px, ky, 0] = rows[[0] if px == 0 else [0, 1]].sum(axis=0)
                    phases[py, px, ky, 1] = rows[[1, 2] if px == 0 else [2]].sum(axis=0)
        return phases

    @property
    def native_upsample(self) -> bool:
        """The native kernel upsamples inside the conv (3x3 only); otherwise the caller repeats pixels."""
        return self.upsample_before and self.kernel == 3

    @cached_property
    def thresholds_c(self) -> np.ndarray:
        o, n = self.thresholds.shape
        padded = np.full((self.out_padded, (1 << n.bit_length()) - 1), _INT32_LIMIT - 1, np.int64)
        padded[:o, :n] = np.clip(self.thresholds, -_INT32_LIMIT, _INT32_LIMIT - 1)
        return padded.astype(np.int32)

    @cached_property
    def guesses_c(self) -> np.ndarray:
        """Per channel, where the native kernel starts counting thresholds_c and when it may trust
        that start without reading the row (host/csrc/integer_hs.c, lic_hs_prepare)."""
        t = self.thresholds_c
        guesses = np.empty(6 * t.shape[0], np.int32)
        library().lic_hs_prepare(t, t.shape[1], t.shape[0], guesses)
        return guesses


def _conv_exact(a: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """'same' convolution (zero padding, stride 1) of integer maps, exact, as int64."""
    o, i, k, _ = weight.shape
    c, h, w = a.shape
    if c != i:
        raise LicError(f"integer h_s expects {i} input channels, got {c}")
    p = k // 2
    padded = np.pad(a.astype(np.float64), ((0, 0), (p, p), (p, p)))
    # im2col: [c*k*k, h*w] with rows in (c, ky, kx) order, matching weight.reshape(o, -1)
    cols = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # c, h, w, k, k
    cols = cols.transpose(0, 3, 4, 1, 2).reshape(c * k * k, h * w)
    acc = weight.reshape(o, -1).astype(np.float64) @ cols
    return acc.reshape(o, h, w).astype(np.int64)


def _count_thresholds(acc: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    out = np.empty(acc.shape, dtype=np.int64)
    for c in range(acc.shape[0]):
        out[c] = np.searchsorted(thresholds[c], acc[c], side="right")
    return out


def _integers(a: np.ndarray, dtype, what: str) -> np.ndarray:
    """An integer array cast to `dtype` only if every value fits: a silent wrap would change the network."""
    info = np.iinfo(dtype)
    if a.dtype.kind not in "iu" or (a.size and (a.min() < info.min or a.max() > info.max)):
        raise LicError(f"{what}: expected {np.dtype(dtype).name} values, found {a.dtype} "
                       f"{'' if a.dtype.kind not in 'iu' or not a.size else f'{a.min()}..{a.max()}'}")
    return a.astype(dtype)


def _check_layers(layers: list[IntegerLayer], input_bits: int) -> None:
    """Shapes that chain, thresholds that count: an altered file fails here, not inside numpy."""
    if not layers or not isinstance(input_bits, int) or not 2 <= input_bits <= 16:
        raise LicError(f"integer h_s: needs at least one layer and 2..16 input bits (got {len(layers)}, {input_bits!r})")
    channels = layers[0].weight.shape[1] if layers[0].weight.ndim == 4 else None
    for n, layer in enumerate(layers):
        w, t = layer.weight, layer.thresholds
        if w.ndim != 4 or w.shape[1] != channels or w.shape[2] != w.shape[3] or w.shape[2] % 2 == 0 or min(w.shape) < 1:
            raise LicError(f"integer h_s layer {n}: weight shape {w.shape} does not follow {channels} channels "
                           f"with an odd square kernel")
        if t.ndim != 2 or t.shape[0] != w.shape[0] or not 0 <= t.shape[1] < 2 ** 16:
            raise LicError(f"integer h_s layer {n}: thresholds shape {t.shape} for {w.shape[0]} channels")
        if (np.diff(t, axis=1) < 0).any():
            raise LicError(f"integer h_s layer {n}: thresholds must not decrease along a row")
        channels = w.shape[0]


def _layer_native(lib, a: np.ndarray, layer: "IntegerLayer", threads: int) -> np.ndarray:
    o, i, k, _ = layer.weight.shape
    c, h, w = a.shape
    if c != i:
        raise LicError(f"integer h_s expects {i} input channels, got {c}")
    o_pad = layer.out_padded
    up = layer.native_upsample
    a = np.ascontiguousarray(a, dtype=np.int32)
    out = np.empty((o_pad, h * (1 + up), w * (1 + up)), dtype=np.int32)
    guesses = layer.guesses_c

    def rows(band: tuple[int, int]) -> int:
        return lib.lic_hs_layer(a, c, h, w, layer.weight_c, o_pad, k, int(up), layer.thresholds_c,
                                layer.thresholds_c.shape[1], guesses, out, *band)

    # The threads share the layer by input rows; each writes only its own output rows, and ctypes
    # lets go of the GIL during the call, so the board's cores all work.
    if any(each(rows, row_bands(h, threads), threads)):
        raise MemoryError("integer h_s: out of memory")
    return out[:o]


def _check_meta(meta: dict, name: str) -> None:
    """The fields that size and steer decoding, typed and in range (the file is untrusted input)."""
    layers = meta.get("layers")
    if not (isinstance(layers, int) and not isinstance(layers, bool) and 1 <= layers <= 16):
        raise LicError(f"{name}: meta 'layers' must be an integer in 1..16, not {layers!r}")
    bits = meta.get("input_bits")
    if not (isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 16):
        raise LicError(f"{name}: meta 'input_bits' must be an integer in 2..16, not {bits!r}")
    ups = meta.get("upsample_before")
    if not (isinstance(ups, list) and len(ups) == layers and all(isinstance(u, bool) for u in ups)):
        raise LicError(f"{name}: meta 'upsample_before' must list one true/false per layer")


class IntegerHyperSynthesis:
    def __init__(self, layers: list[IntegerLayer], input_bits: int, meta: dict):
        self.layers = layers
        self.input_bits = input_bits
        self.meta = meta
        _check_layers(layers, input_bits)
        # Bound checks once, so exactness is a property of the file, not luck. Inputs are clipped to
        # input_bits (signed); later inputs are threshold counts, at most the previous layer's count.
        in_max = 2 ** (input_bits - 1)
        self.native_ok = True
        for layer in layers:
            fan_in = int(np.abs(layer.weight.astype(np.int64)).sum(axis=(1, 2, 3)).max())
            if fan_in * 2 ** max(input_bits, 16) >= _EXACT_LIMIT:
                raise LicError("integer h_s layer too wide for exact float64 accumulation")
            n_thr = layer.thresholds.shape[1]
            if fan_in * in_max >= _INT32_LIMIT - 1 or n_thr > np.iinfo(np.int16).max or in_max > np.iinfo(np.int16).max:
                self.native_ok = False  # int32 / int16 would not be exact: numpy's float64 path only
            in_max = n_thr
        self.fingerprint = self._fingerprint()

    @property
    def in_channels(self) -> int:
        return self.layers[0].weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.layers[-1].weight.shape[0]

    @property
    def max_index(self) -> int:
        """The largest scale-table index it can output: the last layer's threshold count."""
        return self.layers[-1].thresholds.shape[1]

    def _fingerprint(self) -> bytes:
        h = hashlib.sha256(FORMAT.encode())
        h.update(str(self.input_bits).encode())
        for layer in self.layers:
            for arr in (layer.weight, layer.thresholds):
                h.update(str(arr.shape).encode() + str(arr.dtype).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(bytes([layer.upsample_before]))
        return h.digest()[:16]

    @property
    def implementation(self) -> str:
        return "native" if self.native_ok and library() is not None else "numpy"

    def indexes(self, z_symbols: np.ndarray, implementation: str | None = None, threads: int = 1) -> np.ndarray:
        """z symbols [N, h, w] (integers) -> scale-table indexes [M, 4h, 4w] as int32. Both
        implementations give the same integers; None picks the native one when it is built, which
        then runs on `threads` threads."""
        implementation = implementation or self.implementation
        lim = 2 ** (self.input_bits - 1)
        a = np.clip(np.asarray(z_symbols, dtype=np.int64), -lim, lim - 1)
        if implementation == "native":
            lib = library()
            if lib is None or not self.native_ok:
                raise LicError("the native integer h_s is not available for this model"
                               + ("" if self.native_ok else " (its accumulators could exceed int32)")
                               + f": build it with `make setup` or set {LIB_ENV}")
            a = a.astype(np.int32)
            for layer in self.layers:
                if layer.upsample_before and not layer.native_upsample:
                    a = a.repeat(2, axis=1).repeat(2, axis=2)
                a = _layer_native(lib, a, layer, threads)
        else:
            for layer in self.layers:
                if layer.upsample_before:
                    a = a.repeat(2, axis=1).repeat(2, axis=2)
                a = _count_thresholds(_conv_exact(a, layer.weight), layer.thresholds)
        return a.astype(np.int32, copy=False)

    # --- storage: one .npz, readable without torch ---------------------------------------------
    def to_bytes(self) -> bytes:
        arrays = {"meta": np.frombuffer(json.dumps(
            {"format": FORMAT, "input_bits": self.input_bits, "layers": len(self.layers),
             "upsample_before": [l.upsample_before for l in self.layers], **self.meta}).encode(), dtype=np.uint8)}
        for n, layer in enumerate(self.layers):
            arrays[f"weight{n}"] = layer.weight
            arrays[f"thresholds{n}"] = layer.thresholds
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "integer h_s") -> "IntegerHyperSynthesis":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                    got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                    raise LicError(f"{name}: not an integer h_s file ({got!r})")
                _check_meta(meta, name)
                layers = [IntegerLayer(weight=_integers(z[f"weight{n}"], np.int8, f"{name}: weight{n}"),
                                       thresholds=_integers(z[f"thresholds{n}"], np.int64, f"{name}: thresholds{n}"),
                                       upsample_before=meta["upsample_before"][n])
                          for n in range(meta["layers"])]
        except LicError:
            raise
        except Exception as e:  # zip, json (RecursionError too), key errors: a damaged or foreign file
            raise LicError(f"{name}: cannot read integer h_s ({type(e).__name__})") from None
        input_bits = meta.pop("input_bits")
        for k in ("format", "layers", "upsample_before"):
            meta.pop(k)
        return cls(layers, input_bits, meta)

    @classmethod
    def load(cls, path: Path | str) -> "IntegerHyperSynthesis":
        path = Path(path)
        if not path.is_file():
            raise LicError(f"integer h_s not found: {path}")
        return cls.from_bytes(path.read_bytes(), str(path))
