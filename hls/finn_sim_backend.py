"""The `finn-sim` backend: FINN's HW-layer graph (hw/student_hw.onnx of a `make hw` build) executed
with FINN's Python executor, one tile at a time, as the accelerator would compute it. Exact against
the QONNX model by construction (hls/build.py verifies it on a tile); the fixed tile and the stream
layouts come from the build's tile.json, as for the fabric (host/fabric.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hls.finn_workarounds import prepare_finn_import
from host.backends import Backend
from host.decoder_package import DecoderPackage
from host.fabric import DEFAULT_HW_DIR, from_model_layout, read_tile_spec, to_model_layout
from host.tiling import window_dtype


class FinnSimBackend(Backend):
    name = "finn-sim"

    def __init__(self, package: DecoderPackage, hw_dir: Path | None = None):
        hw_dir = Path(hw_dir) if hw_dir is not None else DEFAULT_HW_DIR
        spec = read_tile_spec(hw_dir, package, "hw")
        self.tile = int(spec["tile"])
        self.spec = spec
        prepare_finn_import()  # FINN reads its settings when first imported: the imports below come after it
        from qonnx.core.modelwrapper import ModelWrapper

        self.model = ModelWrapper(str(hw_dir / spec["sim_model"]))

    def run_windows(self, x: np.ndarray) -> np.ndarray:
        """One execution of the HW graph per window (its input shape is one tile)."""
        from finn.core.onnx_exec import execute_onnx

        iname, oname = self.model.graph.input[0].name, self.model.graph.output[0].name
        outs = [from_model_layout(execute_onnx(self.model, {iname: to_model_layout(
            x[i:i + 1], self.spec["input_layout"]).astype(np.float32)})[oname], self.spec["output_layout"])
            for i in range(len(x))]
        return np.rint(np.concatenate(outs)).astype(window_dtype(self.spec["output_bits"]))

