"""The GPU sprint (training/recipes/gpu_sprint.py), end to end on the CPU with a one-minute budget:
the same code path a lent GPU runs, on three BSDS500 photos and one Kodak image."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from quantize.qat import load_quant_student
from training.distill import load_float_student

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "training" / "recipes" / "gpu_sprint.py"
SHARED = REPO.parent / "shared" / "data"


def test_sprint_end_to_end_on_the_cpu(tmp_path):
    train = sorted((SHARED / "bsds500" / "train").glob("*.jpg"))[:3]
    kodak = SHARED / "kodak" / "kodim20.png"
    if len(train) < 3 or not kodak.is_file():
        pytest.skip(f"BSDS500 / Kodak not found under {SHARED}")
    bundle = tmp_path / "bundle"
    (bundle / "data").mkdir(parents=True)
    (bundle / "eval").mkdir()
    for p in train:
        shutil.copy(p, bundle / "data" / p.name)
    shutil.copy(kodak, bundle / "eval" / kodak.name)
    out = tmp_path / "out"
    got = subprocess.run([sys.executable, str(SCRIPT), "run", "--device", "cpu", "--minutes", "1", "--bundle", str(bundle),
                          "-o", str(out), "--batch-size", "2", "--threads", "1", "--calib-steps", "3",
                          "--eval-seconds", "30", "--size", "128x128", "--crop", "128", "--min-steps", "3"],
                         capture_output=True, text=True, timeout=600)
    assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-2000:]
    record = json.loads((out / "sprint.json").read_text())
    assert record["device"] == "cpu" and record["distill_steps"] >= 3 and record["qat_steps"] >= 3
    assert [s["rc"] for s in record["stages"]] == [0] * len(record["stages"])
    # the exported students are the ones evaluated, and load as what they claim to be
    float_student, cfg, fingerprint = load_float_student(out / "student_q3.float.pt")
    quant_student, *_ = load_quant_student(out / "student_q3.pt")
    prov = json.loads((out / "student_q3.provenance.json").read_text())
    assert prov["steps"] == record["qat_steps"]
    for name in ("shipped", "sprint"):
        e = record["eval"][name]
        assert e["images"] == ["kodim20"] or e["images"] == ["kodim20.png"]
        assert 15 < e["quant_student"]["psnr"] < 45 and 0 < e["teacher"]["bpp"] < 2
    # the same teacher's files: the teacher's figures cannot depend on the student
    assert record["eval"]["shipped"]["teacher"] == record["eval"]["sprint"]["teacher"]
    y = torch.zeros(1, cfg.latent_channels, 4, 4)
    assert float_student(y).shape == (1, 3, 64, 64) and quant_student(y).shape == (1, 3, 64, 64)


def test_sprint_refuses_a_missing_bundle(tmp_path):
    got = subprocess.run([sys.executable, str(SCRIPT), "run", "--device", "cpu", "--bundle", str(tmp_path), "-o",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert got.returncode != 0 and "make sprint-bundle" in got.stderr and "Traceback" not in got.stderr


def test_the_repository_leaves_the_sprint_room_for_its_photos():
    """The repository travels to a GPU machine with the sprint's photos in 64 MiB: every committed
    megabyte (a long-run checkpoint, a shipped file that piles up beside the one it replaces) is a
    dozen training photos fewer. 58 MiB of tracked files leaves ~4 MiB for photos beside the wheels."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_sprint
    finally:
        sys.path.pop(0)
    assert gpu_sprint.ROOM == 58 * 2**20
    assert gpu_sprint.tracked_bytes() <= gpu_sprint.ROOM, \
        f"tracked files are {gpu_sprint.tracked_bytes() / 2**20:.1f} MiB: what grew? (git ls-files | xargs du)"
