"""Backends built for the accelerator's one square tile shape: `finn-sim` and `pynq`.

Both read a board build folder (`make hw` / `make bitstream BOARD=...` writes
fpga_projects/<board>/build/): tile.json says the latent tile the accelerator was compiled for and
the layout of its input and output streams.

  finn-sim   executes the FINN HW-layer graph (hw/student_hw.onnx) with FINN's Python executor on the
             workstation; exact against the QONNX model by construction (hls/ verifies it on a tile).
  pynq       the bitstream on the board's fabric through finn-plus-driver (FINNDMAOverlay), set up
             from the driver/settings.json that finn-plus 1.6.1's step_make_driver writes; a frame's
             tiles go to the IODMAs as one batch.

Both take a frame's windows in the accelerator's stream layout, already clipped to its input type
(host/tiling.py fill_windows: the build removes the student's input quantiser, hls/transforms.py
RemoveIntegerInputQuant, which clips; the host does it instead). For INT8 streams, which FINN packs
as the plain values, the pynq backend hands the runtime its DMA buffers themselves: the windows are
written into the input buffer and the image is read out of the output buffer, with no packing,
layout or type conversion on the ARM (what `lic board-rate` counts is then all the ARM does).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from host.backends import Backend
from host.decoder_package import DecoderPackage
from host.tiling import window_dtype
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


def _to_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """Windows [n, t, t, M] -> the layout the model's stream has."""
    return x if layout == "NHWC" else x.transpose(0, 3, 1, 2)


def _from_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "NHWC" else x.transpose(0, 2, 3, 1)


def _packing():
    """finn-plus-driver's packing functions on the board; finn-plus's own (the same code, which
    the driver's copy says it keeps in sync with) where only the compiler is installed."""
    try:
        from finn_plus_driver.packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    except ImportError:
        from finn.util.data_packing import finnpy_to_packed_bytearray, packed_bytearray_to_finnpy
    return finnpy_to_packed_bytearray, packed_bytearray_to_finnpy


class StreamFormat:
    """The accelerator's input and output streams as driver/settings.json describes them
    (driver_information.io_shape_dict, from FINN's get_driver_shapes): tiles in the stream layout
    <-> the packed bytes the IODMAs move, packed the way FINNDMAOverlay.pack_input and
    unpack_output do (FINN's packing, SIMD and byte order reversed)."""

    def __init__(self, io_shape_dict: dict):
        from qonnx.core.datatype import DataType

        if io_shape_dict.get("num_inputs", 1) != 1 or io_shape_dict.get("num_outputs", 1) != 1:
            raise LicError("the accelerator must have one input and one output stream")
        dtype = lambda s: DataType[s[s.index("[") + 1:s.index("]")].strip("'")]  # "DataType['INT8']"
        self.idt, self.odt = dtype(io_shape_dict["idt"][0]), dtype(io_shape_dict["odt"][0])
        self.ishape_normal, self.ishape_folded, self.ishape_packed = (
            tuple(io_shape_dict[k][0]) for k in ("ishape_normal", "ishape_folded", "ishape_packed"))
        self.oshape_normal, self.oshape_folded, self.oshape_packed = (
            tuple(io_shape_dict[k][0]) for k in ("oshape_normal", "oshape_folded", "oshape_packed"))

    @property
    def plain_input(self) -> bool:
        """The packed input bytes are the INT8 values themselves (FINN packs a byte-aligned type with
        both reversals as a plain view; tests check it against FINN's packing)."""
        return self.idt.name == "INT8" and np.prod(self.ishape_packed) == np.prod(self.ishape_normal)

    @property
    def plain_output(self) -> bool:
        return self.odt.name == "INT8" and np.prod(self.oshape_packed) == np.prod(self.oshape_normal)

    @staticmethod
    def _batch(shape, n):
        return (n, *shape[1:])

    def pack(self, tiles: np.ndarray) -> np.ndarray:
        """[n, *ishape_normal[1:]] integers of the input type -> [n, *ishape_packed[1:]] uint8."""
        pack, _ = _packing()
        n = tiles.shape[0]
        if tiles.shape != self._batch(self.ishape_normal, n):
            raise LicError(f"accelerator input must be {self._batch(self.ishape_normal, n)}, got {tiles.shape}")
        folded = tiles.astype(np.float32).reshape(self._batch(self.ishape_folded, n))
        return np.ascontiguousarray(pack(folded, self.idt, reverse_endian=True, reverse_inner=True))

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """[n, *oshape_packed[1:]] uint8 -> [n, *oshape_normal[1:]] float32 integers."""
        _, unpack = _packing()
        n = packed.shape[0]
        folded = unpack(packed, self.odt, self._batch(self.oshape_folded, n), reverse_endian=True,
                        reverse_inner=True)
        return folded.reshape(self._batch(self.oshape_normal, n))


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

    def run_windows(self, x: np.ndarray) -> np.ndarray:
        """One execution of the HW graph per window (its input shape is one tile)."""
        from finn.core.onnx_exec import execute_onnx

        iname, oname = self.model.graph.input[0].name, self.model.graph.output[0].name
        outs = [_from_model_layout(execute_onnx(self.model, {iname: _to_model_layout(
            x[i:i + 1], self.spec["input_layout"]).astype(np.float32)})[oname], self.spec["output_layout"])
            for i in range(len(x))]
        return np.rint(np.concatenate(outs)).astype(window_dtype(self.spec["output_bits"]))


class PynqBackend(Backend):
    name = "pynq"

    def __init__(self, package: DecoderPackage, hw_dir: Path):
        missing = [m for m in ("pynq", "finn_plus_driver") if importlib.util.find_spec(m) is None]
        if missing:
            raise LicError(f"the pynq backend runs on a PYNQ board: {' and '.join(missing)} not installed "
                           f"(host/install_board.sh installs finn-plus-driver into PYNQ's venv); on this machine "
                           f"use --backend finn-sim or onnx")
        spec = read_tile_spec(hw_dir, package, "bitstream")
        bitfile, settings = hw_dir / spec.get("bitfile", "bitfile/finn-accel.bit"), hw_dir / "driver" / "settings.json"
        if not bitfile.is_file() or not bitfile.with_suffix(".hwh").is_file() or not settings.is_file():
            raise LicError(f"{hw_dir} lacks {bitfile.name}, its .hwh or driver/settings.json: run `make bitstream` "
                           f"(needs Vivado) and copy its build folder to the board")
        from finn_plus_driver import get_driver_class

        info = json.loads(settings.read_text())["driver_information"]
        self.tile, self.spec = int(spec["tile"]), spec
        self.streams = StreamFormat(info["io_shape_dict"])
        # As finn-plus-driver's own CLI does: the settings are the overlay's keyword arguments,
        # weight folders next to settings.json.
        kwargs = {k: v for k, v in info.items() if k != "driver_type"}
        kwargs.setdefault("runtime_weight_dir", str(settings.parent / "runtime_weights"))
        kwargs.setdefault("mlo_weight_dir", str(settings.parent / "mlo_weights"))
        self.overlay = get_driver_class(info["driver_type"])(str(bitfile), **kwargs)

    def _batch(self, n: int) -> None:
        if self.overlay.batch_size != n:
            self.overlay.batch_size = n  # reallocates the DMA buffers for n windows

    def _plain(self, which: str) -> bool:
        return getattr(self.streams, f"plain_{which}") and self.spec[f"{which}_layout"] == "NHWC"

    def input_windows(self, n: int, tile: int, channels: int, dtype) -> np.ndarray:
        """The input DMA buffer as int8 windows, when FINN's packing of the stream is the values."""
        self._batch(n)
        if self._plain("input") and np.dtype(dtype) == np.int8:
            return self.overlay.ibuf_packed_device[0].view(np.int8).reshape(n, tile, tile, channels)
        return super().input_windows(n, tile, channels, dtype)

    def run_windows(self, x: np.ndarray) -> np.ndarray:
        """All windows in one DMA batch. With plain INT8 streams the result is a view of the output
        DMA buffer, valid until the next run (the runtime converts it into the image at once)."""
        n = x.shape[0]
        self._batch(n)
        ibuf, obuf = self.overlay.ibuf_packed_device[0], self.overlay.obuf_packed_device[0]
        if np.may_share_memory(x, ibuf):
            ibuf.flush()  # written in place by the ARM: out of its caches into DDR for the DMA
        else:
            self.overlay.copy_input_data_to_device(self.streams.pack(_to_model_layout(x, self.spec["input_layout"])))
        self.overlay.execute_on_buffers()
        if self._plain("output"):
            obuf.invalidate()  # the DMA wrote DDR behind the ARM's caches
            return obuf.view(np.int8).reshape(n, *self.streams.oshape_normal[1:])
        packed = self.overlay.obuf_packed[0]
        self.overlay.copy_output_data_from_device(packed)
        out = _from_model_layout(self.streams.unpack(packed), self.spec["output_layout"])
        return np.rint(out).astype(window_dtype(self.spec["output_bits"]))


def make_fabric_backend(name: str, package: DecoderPackage, hw_dir: Path | None) -> Backend:
    hw_dir = Path(hw_dir) if hw_dir is not None else DEFAULT_HW_DIR
    return PynqBackend(package, hw_dir) if name == "pynq" else FinnSimBackend(package, hw_dir)
