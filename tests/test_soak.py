"""The soak run of the audit: `lic decode` of a folder of 1,000 files in one process keeps its memory
flat (no cache, queue or buffer grows with the number of files decoded). The process's resident set
is sampled from /proc while it runs; the last quarter of the run may not hold more than the second."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from test_fuzz import photo

FILES = 1000
SIZES = [(64, 64), (48, 80), (96, 32), (128, 64)]  # several geometries, so per-size state is exercised
GROWTH_LIMIT_MB = 8  # a leaked decoded 64x64 frame per file would add ~12 MB


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the resident set from /proc")
def test_decoding_1000_files_keeps_memory_flat(tmp_path):
    from training.teacher import load_default
    from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

    models = EntropyModels(load_default(3), shipped_integer_hs(3))
    files = [encode(models, photo(h, w, i)) for i, (h, w) in enumerate(SIZES)]
    src = tmp_path / "lics"
    src.mkdir()
    for i in range(FILES):
        (src / f"f{i:04d}.lic").write_bytes(files[i % len(files)])
    out = tmp_path / "pngs"
    proc = subprocess.Popen([sys.executable, "-m", "lic.cli", "decode", str(src), "-o", str(out), "--backend", "onnx"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []  # (files written so far, RSS MB)
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss is not None and out.is_dir():
            samples.append((sum(1 for _ in out.iterdir()), rss))
        time.sleep(0.05)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert len(list(out.iterdir())) == FILES
    second = [r for n, r in samples if FILES // 4 <= n < FILES // 2]
    last = [r for n, r in samples if n >= 3 * FILES // 4]
    assert second and last, f"too few samples ({len(samples)}) to judge"
    growth = max(last) - max(second)
    print(f"soak: {FILES} files, RSS peak {max(second):.0f} MB (2nd quarter) -> {max(last):.0f} MB (last quarter)")
    assert growth < GROWTH_LIMIT_MB, f"memory grew {growth:.1f} MB between the second and the last quarter"
    shutil.rmtree(out)
