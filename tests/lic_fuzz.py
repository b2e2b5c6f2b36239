"""Structure-aware mutations of .lic files, shared by the fuzz tests (tests/test_fuzz.py, fixed seed,
small budget, in `make test`) and the coverage-guided run (tests/fuzz_atheris.py, `make fuzz`).

Each mutation knows the container layout (host/container.py, docs/FORMAT.md): it changes one header
field, a stream's length field, a stream's bytes (CRC-valid garbage, bit flips, truncation,
insertion, the rANS state words), the stream list, or the raw file (truncation, insertion). Most
recompute the CRC, so the damage reaches the checks and decoders behind the container's own.
"""

from __future__ import annotations

import struct
import zlib
from typing import Callable

import numpy as np

from host.container import FORMAT_V3, LicFile, parse

_U32 = struct.Struct(">I")
# header field -> (offset, size) in bytes
FIELDS = {"magic": (0, 8), "version": (8, 1), "flags": (9, 1), "fingerprint": (10, 16), "height": (26, 2),
          "width": (28, 2), "stream_count": (30, 1)}
SIZE_CLAIMS = [(65535, 65535), (1, 65535), (65535, 1), (1, 1), (0, 5), (5, 0), (4096, 4096), (64, 64)]


def with_crc(body: bytes) -> bytes:
    return bytes(body) + _U32.pack(zlib.crc32(bytes(body)))


def build(lic: LicFile, height: int | None = None, width: int | None = None) -> bytes:
    """A CRC-valid file with these streams; any 16-bit size, 0 included (to_bytes refuses 0)."""
    body = bytearray(lic.to_bytes()[:-4])
    struct.pack_into(">HH", body, 26, lic.height if height is None else height, lic.width if width is None else width)
    return with_crc(body)


def _stream_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset of the u32 length field, length) of each stream of a well-formed file."""
    pos, out = 31 + (4 if data[8] == FORMAT_V3 else 0), []  # version 3: u16 tile, u16 halo first
    for _ in range(data[30]):
        (n,) = _U32.unpack_from(data, pos)
        out.append((pos, n))
        pos += 4 + n
    return out


class Mutator:
    """Deterministic for a given seed: mutate(data) -> (label, mutated bytes)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.ops: dict[str, Callable[[bytes], bytes]] = {
            "header_field": self.header_field, "size_claim": self.size_claim, "stream_length": self.stream_length,
            "garbage_payload": self.garbage_payload, "bit_flips": self.bit_flips, "stream_truncate": self.stream_truncate,
            "stream_insert": self.stream_insert, "state_words": self.state_words, "stream_list": self.stream_list,
            "file_truncate": self.file_truncate, "file_insert": self.file_insert,
        }

    def _int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi))

    def _bytes(self, n: int) -> bytes:
        return self.rng.integers(0, 256, n, dtype=np.uint8).tobytes()

    def _stream(self, lic: LicFile) -> int:
        return self._int(0, len(lic.streams))

    def mutate(self, data: bytes) -> tuple[str, bytes]:
        names = list(self.ops)
        steps = [names[self._int(0, len(names))] for _ in range(1 if self.rng.random() < 0.8 else self._int(2, 4))]
        for name in steps:
            try:
                data = self.ops[name](data)
            except Exception:  # an earlier step broke the structure this one needs: leave it
                pass
        return "+".join(steps), data

    # --- header ---------------------------------------------------------------------------
    def header_field(self, data: bytes) -> bytes:
        name = list(FIELDS)[self._int(0, len(FIELDS))]
        off, size = FIELDS[name]
        body = bytearray(data[:-4])
        specials = {1: [0, 1, 2, 3, 0x7F, 0x80, 0xFF], 2: [0, 1, 2, 63, 64, 65, 0x7FFF, 0xFFFF]}.get(size, [])
        if specials and self.rng.random() < 0.6:
            value = specials[self._int(0, len(specials))].to_bytes(size, "big")
        elif self.rng.random() < 0.5:
            value = bytearray(body[off:off + size])
            value[self._int(0, size)] ^= 1 << self._int(0, 8)
        else:
            value = self._bytes(size)
        body[off:off + size] = value
        return with_crc(body) if self.rng.random() < 0.9 else bytes(body) + data[-4:]

    def size_claim(self, data: bytes) -> bytes:
        """The reported attack: another image size, CRC recomputed."""
        lic = parse(data)
        if self.rng.random() < 0.5:
            h, w = SIZE_CLAIMS[self._int(0, len(SIZE_CLAIMS))]
        else:
            h, w = (max(0, min(0xFFFF, v + self._int(-130, 131))) for v in (lic.height, lic.width))
        return build(lic, h, w)

    def stream_length(self, data: bytes) -> bytes:
        pos, n = _stream_offsets(data)[self._int(0, data[30])]
        body = bytearray(data[:-4])
        choices = [0, 1, 4, 7, 8, max(n - 1, 0), n + 1, n + 4, max(n - 4, 0), 0xFFFFFFFF, self._int(0, 1 << 32)]
        struct.pack_into(">I", body, pos, choices[self._int(0, len(choices))])
        return with_crc(body)

    # --- stream contents, container kept valid -------------------------------------------------
    def _replace(self, data: bytes, fn) -> bytes:
        lic = parse(data)
        i = self._stream(lic)
        lic.streams[i] = fn(lic.streams[i])
        return build(lic)

    def garbage_payload(self, data: bytes) -> bytes:
        def garbage(s: bytes) -> bytes:
            n = len(s) if self.rng.random() < 0.5 else self._int(0, 2 * len(s) + 16)
            return self._bytes(n)
        return self._replace(data, garbage)

    def bit_flips(self, data: bytes) -> bytes:
        def flip(s: bytes) -> bytes:
            b = bytearray(s)
            for _ in range(self._int(1, 9)):
                if b:
                    b[self._int(0, len(b))] ^= 1 << self._int(0, 8)
            return bytes(b)
        return self._replace(data, flip)

    def stream_truncate(self, data: bytes) -> bytes:
        def cut(s: bytes) -> bytes:
            k = self._int(0, len(s) + 1)
            return s[:k - k % 4] if self.rng.random() < 0.5 else s[:k]
        return self._replace(data, cut)

    def stream_insert(self, data: bytes) -> bytes:
        def insert(s: bytes) -> bytes:
            at = self._int(0, len(s) + 1)
            n = 4 * self._int(1, 5) if self.rng.random() < 0.5 else self._int(1, 64)
            return s[:at] + self._bytes(n) + s[at:]
        return self._replace(data, insert)

    def state_words(self, data: bytes) -> bytes:
        """The rANS decoder's initial state (first 8 bytes, little-endian u64): zero, all ones, random."""
        choices = [b"\0" * 8, b"\xff" * 8, self._bytes(8), b"\0\0\0\x80\0\0\0\0"]
        return self._replace(data, lambda s: choices[self._int(0, len(choices))] + s[8:])

    def stream_list(self, data: bytes) -> bytes:
        lic = parse(data)
        op = self._int(0, 4)
        if op == 0:
            lic.streams.reverse()
        elif op == 1:
            lic.streams.pop(self._stream(lic))
        elif op == 2:
            lic.streams.insert(self._int(0, len(lic.streams) + 1), self._bytes(4 * self._int(0, 20)))
        else:
            lic.streams = [lic.streams[self._stream(lic)]] * len(lic.streams)
        return build(lic)

    # --- the raw file --------------------------------------------------------------------------
    def file_truncate(self, data: bytes) -> bytes:
        return data[:self._int(0, len(data))]

    def file_insert(self, data: bytes) -> bytes:
        at = self._int(0, len(data) + 1)
        out = data[:at] + self._bytes(self._int(1, 33)) + data[at:]
        return with_crc(out[:-4]) if self.rng.random() < 0.5 else out
