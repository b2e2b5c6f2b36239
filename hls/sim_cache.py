"""The compiled simulation programs of `make hw`'s layer simulation, cached by a hash of their
sources: a second `make hw` of an unchanged layer compiles nothing."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable


def cached_build(cache: Path, key: str, name: str, build: Callable[[Path], None]) -> tuple[Path, float, bool]:
    """(cache/key/name, seconds spent building, whether it came from the cache). `build(folder)`
    writes `name` into a scratch folder, which takes the key's place only once it is complete, so an
    interrupted compile never leaves a half-built program under the key."""
    exe = cache / key / name
    if exe.is_file():
        return exe, 0.0, True
    t0 = time.time()
    work = cache / (key + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    build(work)
    shutil.rmtree(cache / key, ignore_errors=True)
    work.rename(cache / key)
    return exe, time.time() - t0, False
