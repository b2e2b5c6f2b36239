"""The `torch` backend: the package's Brevitas student (quant_student.pt), the reference every other
backend is compared with (tests/test_host_runtime.py). It needs torch and brevitas, so it lives
with quantize/, not in the torch-free host/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from host.backends import Backend
from host.decoder_package import QUANT_STUDENT, DecoderPackage
from quantize.qat import load_quant_student


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, package: DecoderPackage, hw_dir: Path | None = None):
        self.model, _, _, _ = load_quant_student(package.path(QUANT_STUDENT))

    def run(self, y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = self.model.forward_quant(torch.from_numpy(y.astype(np.float32)))
        return out.int().numpy().astype(np.int16)
