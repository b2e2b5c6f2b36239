"""What the command line finds outside the torch-free core, by module path.

host/ runs on the board with numpy and the native libraries alone, so it imports none of the stages
that own torch or FINN. The decoders and backends that need them live with those stages and are
named here; `load` imports one only when a user asks for it (on a board, asking for one says which
package is missing)."""

from __future__ import annotations

import importlib

from lic.errors import LicError

# backend name -> "module:factory"; a factory takes (package, hw_dir) and returns a host.backends.Backend
BACKENDS = {
    "onnx": "host.backends:OnnxBackend",                    # onnxruntime, any size (off the board)
    "torch": "quantize.torch_backend:TorchBackend",         # the Brevitas student, the reference
    "finn-sim": "hls.finn_sim_backend:FinnSimBackend",      # FINN's HW-layer graph from `make hw`
    "pynq": "host.fabric:PynqBackend",                      # the bitstream on a PYNQ board
}
# the teacher's float decoder (torch): `lic decode --decoder teacher`
TEACHER_DECODER = "training.teacher_decoder:TeacherDecoder"


def load(spec: str):
    module, attr = spec.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise LicError(f"{attr} needs {e.name}, which is not installed here ({module})") from None
