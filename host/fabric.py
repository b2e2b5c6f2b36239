"""Backends built for the accelerator's one square tile shape: `finn-sim` and `pynq`.

Both read a board build folder (`make hw` / `make bitstream BOARD=...` writes
fpga_projects/<board>/build/): tile.json says the latent tile the accelerator was compiled for and
the layout of its input and output streams.

  finn-sim   executes the FINN HW-layer graph (hw/student_hw.onnx) with FINN's Python executor on the
             workstation; exact against the QONNX model by construction (hls/ verifies it on a tile).
  pynq       the bitstream on the board's fabric through the driver FINN generates next to it
             (driver/driver_base.py: FINNExampleOverlay does the DMA and FINN's bit packing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from host.backends import Backend
from host.decoder_package import DecoderPackage
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HW_DIR = REPO / "fpga_projects" / "pynq-z2" / "build"
TILE_JSON = "tile.json"


def read_tile_spec(hw_dir: Path, package: DecoderPackage, need: str) -> dict:
    spec_path = hw_dir / TILE_JSON
    if not spec_path.is_file():
        raise LicError(f"no accelerator build in {hw_dir} ({TILE_JSON} missing): run `make {need} BOARD=pynq-z2` "
                       f"first, or pass --hw-dir with a board build folder")
    spec = json.loads(spec_path.read_text())
    if spec.get("file_fingerprint") != package.manifest["file_fingerprint"] or \
            spec.get("student_sha256") != package.manifest["files"].get("quant_student.pt"):
        raise LicError(f"the accelerator in {hw_dir} was built for another student than package {package.name}; "
                       f"rebuild it with `make {need}`")
    return spec


def _nchw_to_stream(y: np.ndarray, layout: str) -> np.ndarray:
    return y.transpose(0, 2, 3, 1) if layout == "NHWC" else y


def _stream_to_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if layout == "NHWC" else x


class FinnSimBackend(Backend):
    name = "finn-sim"

    def __init__(self, package: DecoderPackage, hw_dir: Path):
        spec = read_tile_spec(hw_dir, package, "hw")
        self.tile = int(spec["tile"])
        self.spec = spec
        from hls.finn_workarounds import prepare_finn_import

        prepare_finn_import()
        from qonnx.core.modelwrapper import ModelWrapper

        self.model = ModelWrapper(str(hw_dir / spec["sim_model"]))

    def run(self, y: np.ndarray) -> np.ndarray:
        from finn.core.onnx_exec import execute_onnx

        iname, oname = self.model.graph.input[0].name, self.model.graph.output[0].name
        x = _nchw_to_stream(y, self.spec["input_layout"]).astype(np.float32)
        out = execute_onnx(self.model, {iname: x})[oname]
        return np.rint(_stream_to_nchw(out, self.spec["output_layout"])).astype(np.int16)


class PynqBackend(Backend):
    name = "pynq"

    def __init__(self, package: DecoderPackage, hw_dir: Path):
        try:
            import pynq  # noqa: F401  (the board's own package; checked first so the error says what is missing)
        except ImportError:
            raise LicError("the pynq backend runs on a PYNQ board (needs the `pynq` package and the bitfile from "
                           "`make bitstream`); on this machine use --backend finn-sim or onnx") from None
        spec = read_tile_spec(hw_dir, package, "bitstream")
        bitfile = hw_dir / spec.get("bitfile", "bitfile/finn-accel.bit")
        driver = hw_dir / "driver"
        if not bitfile.is_file() or not (driver / "driver_base.py").is_file():
            raise LicError(f"{hw_dir} has no bitfile and FINN driver: run `make bitstream` (needs Vivado) and copy "
                           f"its build folder to the board")
        self.tile, self.spec = int(spec["tile"]), spec
        sys.path.insert(0, str(driver))
        from driver import io_shape_dict  # FINN-generated, describes the packed DMA streams
        from driver_base import FINNExampleOverlay

        self.overlay = FINNExampleOverlay(str(bitfile), "zynq-iodma", io_shape_dict, batch_size=1)

    def run(self, y: np.ndarray) -> np.ndarray:
        out = self.overlay.execute(_nchw_to_stream(y, self.spec["input_layout"]).astype(np.float32))
        return np.rint(_stream_to_nchw(out, self.spec["output_layout"])).astype(np.int16)


def make_fabric_backend(name: str, package: DecoderPackage, hw_dir: Path | None) -> Backend:
    hw_dir = Path(hw_dir) if hw_dir is not None else DEFAULT_HW_DIR
    return PynqBackend(package, hw_dir) if name == "pynq" else FinnSimBackend(package, hw_dir)
