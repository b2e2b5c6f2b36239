"""Peak memory of encoding and decoding, estimated from the image size before anything is allocated.

An image's size fixes what every stage allocates, so a job that cannot fit is refused in a
millisecond with one line, instead of running until torch or onnxruntime dies with a traceback
(or the kernel's OOM killer ends it). The estimates are linear in the padded pixel count (every
model works on the image padded to a multiple of 64); the slopes and fixed costs are peak RSS
measured with /usr/bin/time on this project's x86 machine (torch 2.13 CPU, onnxruntime 1.25) at
768x512, 1536x1024 and 3072x2048, rounded up:

  encode (teacher g_a, h_a, entropy coding)          ~510 B/px + ~480 MB (Python, torch, models)
  decode with the teacher (float g_s)                ~510 B/px + ~480 MB
  decode with the student, whole frame (onnx)        ~175 B/px + ~65 MB
  decode with the student in latent tiles (onnx)      ~25 B/px + ~135 MB

The limit is --max-memory, by default what the machine can give now: the smallest of the kernel's
MemAvailable, the cgroup's memory.max less its usage, and the address-space rlimit.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path

from lic.errors import LicError

MB = 2**20
PAD = 64  # the teachers' and students' spatial multiple
# kind -> (bytes per padded pixel, fixed bytes), each about 10% above the measurement
PEAK = {
    "encode": (560, 530 * MB),
    "teacher-decode": (560, 530 * MB),
    "student-whole": (195, 75 * MB),
    "student-tiled": (30, 150 * MB),
}
WHAT = {"encode": "encoding", "teacher-decode": "decoding with the teacher",
        "student-whole": "decoding with the student (whole frame)", "student-tiled": "decoding with the student in tiles"}


def padded_pixels(height: int, width: int) -> int:
    return -(-height // PAD) * PAD * (-(-width // PAD) * PAD)


def estimate(kind: str, height: int, width: int) -> int:
    per_pixel, fixed = PEAK[kind]
    return per_pixel * padded_pixels(height, width) + fixed


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None


def _mem_available() -> int | None:
    try:
        m = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


def available_bytes() -> int | None:
    """What this process can still allocate, as far as the OS says; None where it says nothing."""
    limits = [v for v in (_mem_available(), _cgroup_room()) if v is not None]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)  # the whole address space, the interpreter's own included: a bound from above
    return min(limits) if limits else None


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GB', '2000000000' -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not m or float(m.group(1)) <= 0:
        raise LicError(f"--max-memory takes a size such as 4G or 512M, not {text!r}")
    return int(float(m.group(1)) * 1024 ** "BKMGT".index((m.group(2) or "B").upper()))


class MemoryLimit:
    """--max-memory: the user's limit, else what the machine has free now (None: unknown, no limit)."""

    def __init__(self, text: str | None):
        self.bytes = parse_size(text) if text else available_bytes()
        self.source = "allowed (--max-memory)" if text else "free on this machine (--max-memory SIZE sets the limit)"


def fits(kind: str, height: int, width: int, limit: MemoryLimit) -> bool:
    return limit.bytes is None or estimate(kind, height, width) <= limit.bytes


def check(kind: str, height: int, width: int, limit: MemoryLimit, name: str) -> None:
    """A one-line refusal when `kind` of a height x width image is estimated over the limit."""
    if not fits(kind, height, width, limit):
        raise LicError(f"{name}: {WHAT[kind]} a {width}x{height} image needs about "
                       f"{estimate(kind, height, width) / 2**30:.1f} GiB, over the {limit.bytes / 2**30:.1f} GiB "
                       f"{limit.source}")


def add_argument(p) -> None:
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="refuse (or, decoding with the student, tile) a job whose estimated peak memory is over "
                        "SIZE, e.g. 4G (default: the memory this machine has free; host/memory.py says how it "
                        "is estimated)")
