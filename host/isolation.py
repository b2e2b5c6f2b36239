"""Run native code that trusts its input where a crash cannot take the process down.

CompressAI's rANS coder (C++, pybind11) reads its input without bounds checks: a corrupt stream
makes it read past the end of its buffer, and far enough past it a segmentation fault kills the
whole `lic` process (issue 11). Until every entropy decoder the host uses checks its own bounds,
such a call runs in a forked child: a crash there becomes a one-line LicError here, the child
cannot write a core file, and its memory and CPU time are capped. fork() copies nothing up front
(copy-on-write), so the cost is about a millisecond per call (measured on x86; see README).
"""

from __future__ import annotations

import os
import resource
import signal
import struct
from typing import Callable

import numpy as np

from lic.errors import LicError

_LEN = struct.Struct("<q")  # result length; negative = the child's failure code
FAILED = -1
_FATAL = (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGTERM, signal.SIGXCPU)


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(kind, (value, hard))


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, min(n - got, 1 << 20))
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def call_isolated(fn: Callable[[], np.ndarray | None], what: str, *, extra_bytes: int, cpu_seconds: int) -> np.ndarray | None:
    """fn() -> int32 array (or None for "rejected"), run in a forked child with at most
    `extra_bytes` of new memory and `cpu_seconds` of CPU. A signal or a limit hit in the child is
    a LicError naming `what`. Where fork() does not exist, fn runs in this process."""
    if not hasattr(os, "fork"):
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no Python-level cleanup, no stdio flushing, only os._exit
        code = 0
        try:
            os.close(r)
            for sig in _FATAL:  # die of the signal itself, not in an inherited handler (faulthandler,
                signal.signal(sig, signal.SIG_DFL)  # libFuzzer) that may need a lock another thread held
            _limit(resource.RLIMIT_CORE, 0)
            _limit(resource.RLIMIT_CPU, cpu_seconds)
            if extra_bytes:
                _limit(resource.RLIMIT_AS, _vm_bytes() + extra_bytes)
            out = fn()
            if out is None:
                os.write(w, _LEN.pack(FAILED))
            else:
                data = np.ascontiguousarray(out, dtype=np.int32).tobytes()
                view, sent = memoryview(_LEN.pack(len(data)) + data), 0
                while sent < len(view):
                    sent += os.write(w, view[sent:])
        except MemoryError:
            code = 3
        except BaseException:
            code = 2
        os._exit(code)
    os.close(w)
    try:
        head = _read_exact(r, _LEN.size)
        n = _LEN.unpack(head)[0] if len(head) == _LEN.size else None
        body = _read_exact(r, n) if n is not None and n > 0 else b""
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = "ran out of CPU time" if sig == signal.SIGXCPU else f"crashed ({signal.Signals(sig).name})"
        raise LicError(f"{what}: the entropy decoder {why}: the stream is corrupt")
    code = os.WEXITSTATUS(status)
    if code == 3:
        raise LicError(f"{what}: the entropy decoder needed more memory than the stream can justify: "
                       f"the stream is corrupt")
    if code != 0 or n is None or (n >= 0 and len(body) != n):
        raise LicError(f"{what}: the entropy decoder failed (exit {code}): the stream is corrupt")
    if n == FAILED:
        return None
    return np.frombuffer(body, dtype=np.int32).copy()
