"""The integer hyper-decoder: z symbols -> scale-table indexes, in integer arithmetic only.

This is the definition of h_s for .lic format version 2: the encoder and every decoder (x86, the
board's ARM core) run exactly this, so they agree on every index and entropy decoding is
bit-exact across platforms. Each layer is

    acc   = conv(a, W)                      integers (int8 weights, int activations)
    a'[c] = #{ j : acc[c] >= T[c, j] }      per-channel thresholds (FINN's MultiThreshold)

with biases, scales, ReLU, rounding and clipping all folded into the thresholds T at export time
(export/integer_hyper.py). The last layer's thresholds are the scale-table boundaries, so its
counts are the indexes. The convolutions use float64 matrix products: every product and partial
sum is an integer below 2^53, so the result is exact whatever the BLAS summation order.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lic.errors import LicError

FORMAT = "lic-integer-hyper-v1"
_EXACT_LIMIT = 2 ** 53


@dataclass
class IntegerLayer:
    weight: np.ndarray       # int8 [out, in, k, k]
    thresholds: np.ndarray   # int64 [out, T], each row non-decreasing
    upsample_before: bool    # nearest x2 before the conv

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]


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
        if t.ndim != 2 or t.shape[0] != w.shape[0] or not 1 <= t.shape[1] < 2 ** 16:
            raise LicError(f"integer h_s layer {n}: thresholds shape {t.shape} for {w.shape[0]} channels")
        if (np.diff(t, axis=1) < 0).any():
            raise LicError(f"integer h_s layer {n}: thresholds must not decrease along a row")
        channels = w.shape[0]


class IntegerHyperSynthesis:
    def __init__(self, layers: list[IntegerLayer], input_bits: int, meta: dict):
        self.layers = layers
        self.input_bits = input_bits
        self.meta = meta
        _check_layers(layers, input_bits)
        for layer in layers:  # a bound check once, so exactness is a property of the file, not luck
            fan_in = int(np.abs(layer.weight.astype(np.int64)).sum(axis=(1, 2, 3)).max())
            if fan_in * 2 ** max(input_bits, 16) >= _EXACT_LIMIT:
                raise LicError("integer h_s layer too wide for exact float64 accumulation")
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

    def indexes(self, z_symbols: np.ndarray) -> np.ndarray:
        """z symbols [N, h, w] (integers) -> scale-table indexes [M, 4h, 4w] as int32."""
        lim = 2 ** (self.input_bits - 1)
        a = np.clip(np.asarray(z_symbols, dtype=np.int64), -lim, lim - 1)
        for layer in self.layers:
            if layer.upsample_before:
                a = a.repeat(2, axis=1).repeat(2, axis=2)
            a = _count_thresholds(_conv_exact(a, layer.weight), layer.thresholds)
        return a.astype(np.int32)

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
                if meta.get("format") != FORMAT:
                    raise LicError(f"{name}: not an integer h_s file ({meta.get('format')!r})")
                layers = [IntegerLayer(weight=_integers(z[f"weight{n}"], np.int8, f"{name}: weight{n}"),
                                       thresholds=_integers(z[f"thresholds{n}"], np.int64, f"{name}: thresholds{n}"),
                                       upsample_before=bool(meta["upsample_before"][n]))
                          for n in range(meta["layers"])]
        except LicError:
            raise
        except Exception as e:  # zip, json, key errors: all mean a damaged or foreign file
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
