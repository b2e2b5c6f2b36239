import json
import os
import subprocess
import sys

import numpy as np
import torch

from lic.cli import main
from training.teacher import load_teacher
from training.teacher_codec import decode, encode

TINY = ["--N", "16", "--M", "24", "--crop", "64", "--batch-size", "2", "--threads", "1"]


def test_train_resume_export(tmp_path, image_folder):
    run = tmp_path / "run"
    assert main(["train-teacher", "--data", str(image_folder), "--run-dir", str(run), "--steps", "3",
                 "--save-every", "3", *TINY]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3
    # Asking for more steps resumes from the checkpoint instead of starting over.
    out = tmp_path / "teacher.pt"
    assert main(["train-teacher", "--data", str(image_folder), "--run-dir", str(run), "--steps", "5",
                 "--save-every", "100", "--export", str(out), *TINY]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 5
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["steps"] == 5 and prov["N"] == 16
    # The export is a CompressAI state dict with CDF tables: it codes straight away.
    t = load_teacher(str(out))
    rgb = np.zeros((40, 50, 3), np.uint8)
    assert decode(t, encode(t, rgb)).shape == (40, 50, 3)


def test_torchrun_two_processes(tmp_path, image_folder):
    """DDP under torchrun (gloo on CPU): both ranks step in lockstep and rank 0 writes the checkpoint."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "lic.cli", "train-teacher", "--data", str(image_folder), "--run-dir",
                        str(tmp_path / "ddp"), "--steps", "2", "--save-every", "2", *TINY],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["step"] == 2
