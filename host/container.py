"""The .lic container: a versioned header, a model fingerprint, entropy-coded streams, a CRC.

Layout (all integers big-endian; see docs/FORMAT.md for the meaning of each version's streams):

    offset  size  field
    0       8     magic  b"\\x89LIC\\r\\n\\x1a\\n"  (PNG-style: catches text-mode and 7-bit transfers)
    8       1     format version
    9       1     flags (0 in version 1; readers reject bits they do not know)
    10      16    fingerprint of the model that wrote the file
    26      2     image height in pixels (1..65535)
    28      2     image width  in pixels (1..65535)
    30      1     number of streams S
    (version 3 only)
    31      2     tile: the square latent tile of the y substreams
    33      2     halo: latents each tile overlaps its neighbours (host/tiling.py)
    ...     ...   S times: u32 length, then that many bytes
    end-4   4     CRC-32 of every byte before it

The parser is version-agnostic about stream meaning; the codec of each version interprets them.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lic.errors import LicError

# 4096 x 4096: a 16-megapixel photo, the default limit on what a header may claim (--max-pixels);
# memory per pixel, measured, is in host/memory.py (~3 GB whole-frame with the student, ~9 with the teacher).
DEFAULT_MAX_PIXELS = 4096 * 4096

MAGIC = b"\x89LIC\r\n\x1a\n"
FORMAT_V1 = 1  # float-teacher hyperprior: streams [z, y], indexes from the teacher's float h_s
FORMAT_V2 = 2  # streams [z, y], indexes from an integer h_s (host/integer_hyper.py)
FORMAT_V3 = 3  # as v2, with y in substreams: bands of rows of each tile of the header's tile geometry
SUPPORTED_VERSIONS = {FORMAT_V1, FORMAT_V2, FORMAT_V3}
FINGERPRINT_BYTES = 16
_HEADER = struct.Struct(">8sBB16sHHB")
_U32 = struct.Struct(">I")
_TILES = struct.Struct(">HH")


@dataclass
class LicFile:
    version: int
    fingerprint: bytes
    height: int
    width: int
    streams: list[bytes] = field(default_factory=list)
    flags: int = 0
    tiles: tuple[int, int] | None = None  # (tile, halo) in latents, version 3

    def to_bytes(self) -> bytes:
        if not (1 <= self.height <= 0xFFFF and 1 <= self.width <= 0xFFFF):
            raise LicError(f"image size {self.width}x{self.height} does not fit the .lic header (max 65535)")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError("fingerprint must be 16 bytes")
        if len(self.streams) > 255:
            raise ValueError("at most 255 streams")
        parts = [_HEADER.pack(MAGIC, self.version, self.flags, self.fingerprint, self.height, self.width,
                              len(self.streams))]
        if self.version == FORMAT_V3:
            tile, halo = self.tiles
            if not (1 <= tile - 2 * halo and tile <= 0xFFFF):
                raise ValueError(f"bad tile geometry {self.tiles}")
            parts.append(_TILES.pack(tile, halo))
        for s in self.streams:
            parts += [_U32.pack(len(s)), s]
        body = b"".join(parts)
        return body + _U32.pack(zlib.crc32(body))


# The most a file can hold for its image size, from the header alone, before any byte more is read:
# every model this project reads has at most 320 latent and 192 hyper-latent channels (CompressAI's
# largest hyperprior), y has one symbol per 16x16 pixels per channel and z one per 64x64, a symbol
# takes at most 52 bits (docs/FORMAT.md, entropy decoding), each stream a 64-bit flush and its length.
_MAX_SYMBOLS_PER_PIXEL = 320 / 256 + 192 / 4096
_MAX_STREAM_OVERHEAD = 12


def check_pixels(height: int, width: int, max_pixels: int, name: str, what: str = "image") -> None:
    if height * width > max_pixels:
        raise LicError(f"{name}: {what} is {width}x{height} = {height * width:,} pixels, over the limit of "
                       f"{max_pixels:,} (memory grows with it; --max-pixels N raises the limit)")


def max_file_bytes(height: int, width: int, streams: int) -> int:
    padded = -(-height // 64) * 64 * (-(-width // 64) * 64)
    return int(padded * _MAX_SYMBOLS_PER_PIXEL * 52 / 8) + streams * _MAX_STREAM_OVERHEAD + _HEADER.size + 8


def read_lic(path: Path, max_pixels: int | None = None) -> bytes:
    """A file's bytes, read only after its header says the file can be a .lic of its size: a
    non-regular file (a FIFO would block forever) and a file larger than its image size allows are
    refused before it is read. Failures are LicErrors naming the file."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait for one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise LicError(f"{path}: cannot read ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise LicError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) == _HEADER.size and head[:len(MAGIC)] == MAGIC:
            _, _, _, _, height, width, n = _HEADER.unpack(head)
            check_pixels(height, width, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels, str(path))
            if st.st_size > max_file_bytes(height, width, n):
                raise LicError(f"{path}: {st.st_size:,} bytes, more than a {width}x{height} .lic file can hold "
                               f"({max_file_bytes(height, width, n):,}): not a .lic file, or a damaged one")
        return head + f.read()  # parse() gives every other malformation its message


def parse(data: bytes, name: str = "input") -> LicFile:
    """Parse and integrity-check a .lic file; every malformation is a one-line LicError."""
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise LicError(f"{name}: not a .lic file (bad magic)")
    if len(data) < _HEADER.size + _U32.size:
        raise LicError(f"{name}: truncated .lic file ({len(data)} bytes)")
    _, version, flags, fingerprint, height, width, n = _HEADER.unpack_from(data, 0)
    if version not in SUPPORTED_VERSIONS:
        newest = max(SUPPORTED_VERSIONS)
        hint = "written by a newer lic" if version > newest else "an unknown format"
        raise LicError(f"{name}: .lic format version {version} is {hint}; this lic reads versions "
                       f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}")
    body, crc = memoryview(data)[:-4], _U32.unpack_from(data, len(data) - 4)[0]  # a view: no copy of the file
    pos, streams, tiles = _HEADER.size, [], None
    if version == FORMAT_V3:
        if pos + _TILES.size > len(body):
            raise LicError(f"{name}: truncated .lic file (no tile geometry)")
        tiles = _TILES.unpack_from(body, pos)
        pos += _TILES.size
    for i in range(n):
        if pos + 4 > len(body):
            raise LicError(f"{name}: truncated .lic file (stream {i} of {n} missing)")
        (length,) = _U32.unpack_from(body, pos)
        pos += 4
        if pos + length > len(body):
            raise LicError(f"{name}: truncated .lic file (stream {i} needs {length} bytes, "
                           f"{len(body) - pos} left)")
        streams.append(bytes(body[pos:pos + length]))
        pos += length
    if pos != len(body):
        raise LicError(f"{name}: corrupt .lic file ({len(body) - pos} unexpected bytes after the streams)")
    if zlib.crc32(body) != crc:
        raise LicError(f"{name}: corrupt .lic file (CRC mismatch)")
    if flags:
        raise LicError(f"{name}: .lic flags 0x{flags:02x} are not understood by this lic")
    if height == 0 or width == 0:
        raise LicError(f"{name}: corrupt .lic file (image size {width}x{height})")
    if tiles is not None and tiles[0] - 2 * tiles[1] < 1:
        raise LicError(f"{name}: corrupt .lic file (tile {tiles[0]} leaves no core inside a halo of {tiles[1]})")
    return LicFile(version=version, fingerprint=fingerprint, height=height, width=width, streams=streams,
                   flags=flags, tiles=tiles)
