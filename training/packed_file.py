"""Committed training files packed losslessly: lzma over the file's bytes taken four byte planes apart.

Why: the long run commits its checkpoint (weights, Adam state, EMA) and the exports later phases start
from before every stop, and the repository travels to a GPU machine only while it is under 64 MiB
beside the sprint's photos. lzma alone gains little on float32 weights, whose low mantissa bytes are
noise; but torch.save aligns every tensor's storage to 64 bytes, so the file's bytes taken four
planes apart put the sign-and-exponent bytes of every float together, where lzma packs them tightly
(a QAT checkpoint with EMA: 4.0 -> 2.7 MB; a student export: 0.98 -> 0.84 MB). Lossless on the
bytes, so the unpacked file is the one saved, whatever it holds; its size and sha256 are checked on
every unpack.

A packed file is MAGIC, one JSON line {"bytes": N, "sha256": HEX, "planes": 4}, then an xz stream of
the N bytes (zero-padded to a multiple of 4) laid out plane after plane.

    python -m training.packed_file pack|unpack SRC DST
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sys
from pathlib import Path

import numpy as np

from host.image_io import write_atomic
from lic.errors import LicError

MAGIC = b"lic packed file\n"
SUFFIX = ".xz"
PLANES = 4


def packed_name(name: str) -> str:
    return name + SUFFIX


def header(path: Path) -> dict | None:
    """The header of a packed file, or None if `path` is not one."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def pack(src: Path, dst: Path) -> bool:
    """Write `src` packed to `dst` (whole or not at all); False if `dst` already holds exactly `src`."""
    data = Path(src).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    old = header(dst) if Path(dst).is_file() else None
    if old and old.get("sha256") == digest and old.get("bytes") == len(data):
        return False  # unchanged: an identical commit, and no second of lzma
    padded = np.frombuffer(data + b"\0" * (-len(data) % PLANES), dtype=np.uint8).reshape(-1, PLANES)
    head = json.dumps({"bytes": len(data), "sha256": digest, "planes": PLANES}).encode() + b"\n"
    write_atomic(dst, MAGIC + head + lzma.compress(padded.T.tobytes(), preset=9))
    return True


def unpack(src: Path, dst: Path) -> None:
    """Write the file `src` packs to `dst` (whole or not at all); LicError if `src` is damaged."""
    raw = Path(src).read_bytes()
    try:
        if not raw.startswith(MAGIC):
            raise ValueError("no header")
        head_end = raw.index(b"\n", len(MAGIC)) + 1
        head = json.loads(raw[len(MAGIC):head_end])
        n, planes = int(head["bytes"]), int(head["planes"])
        laid = np.frombuffer(lzma.decompress(raw[head_end:]), dtype=np.uint8)
        data = laid.reshape(planes, -1).T.tobytes()[:n]
        if len(data) != n or hashlib.sha256(data).hexdigest() != head["sha256"]:
            raise ValueError("digest mismatch")
    except (ValueError, KeyError, TypeError, lzma.LZMAError) as e:
        raise LicError(f"{src}: damaged packed file ({e})") from None
    write_atomic(dst, data)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("pack", "unpack"):
        print("usage: python -m training.packed_file pack|unpack SRC DST", file=sys.stderr)
        return 2
    command, src, dst = argv
    try:
        (pack if command == "pack" else unpack)(Path(src), Path(dst))
    except OSError as e:
        print(f"packed_file: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except LicError as e:
        print(f"packed_file: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
