"""`lic hw` (`make hw` / `make bitstream BOARD=...`): the quantised student of a decoder package ->
FINN dataflow accelerator for one board.

Steps (each saves its model under BUILD/intermediate_models/):

  export_tile_qonnx       QONNX of the package's Brevitas student for the board's square tile
  qonnx_to_finn, tidy_up, streamline                                       (FINN's own steps)
  decoder_layout          NHWC Resize, drop the identity input quant, layout/scale tail to the host
  convert_to_hw           FINN's conversion + InferUpsample (FINN only looks for op "Upsample")
  verify_hw_graph         Python execution of the HW-layer graph == QONNX on a tile, bit for bit;
                          saved as hw/student_hw.onnx for the finn-sim backend
  create_dataflow_partition, specialize_layers                             (FINN's own steps)
  fold_for_target_fps     PE/SIMD to reach TARGET_FPS for the frame within the board's budget
  minimize_bit_width, generate_estimate_reports, hw_codegen                (FINN's own steps)
  cppsim                  when finn-hlslib and the HLS headers are present, else skipped (said so)
  -- with Vivado only (`--bitstream`) --
  hw_ipgen, set_fifo_depths, create_stitched_ip, make_driver, synthesize_bitfile

Outputs in fpga_projects/<board>/build/: tile.json (the geometry the host tiles with),
estimates.json (resources, cycles, fps, roofline), report/ (FINN's estimate reports), hw/,
package/ (the decoder package), and with Vivado bitfile/ and driver/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from hls.boards import BOARDS_DIR, Board, load_board
from hls.finn_workarounds import prepare_finn_import, vivado_available
from lic.errors import LicError

TILE_JSON = "tile.json"
SIM_MODEL = "hw/student_hw.onnx"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", default="pynq-z2",
                   help=f"a folder of {BOARDS_DIR.name}/ with board.json (default pynq-z2)")
    p.add_argument("--package", type=Path, default=None,
                   help="decoder package from `lic export` (default: the shipped default student)")
    p.add_argument("--target-fps", type=float, default=None,
                   help="frames per second to fold for, at the board's frame size (default: board.json)")
    p.add_argument("--tile", type=int, default=None, help="square latent tile (default: board.json)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="build folder (default fpga_projects/BOARD/build)")
    p.add_argument("--bitstream", action="store_true",
                   help="continue through IP generation, FIFO sizing, stitched IP and bitfile (needs Vivado)")


def default_package() -> Path:
    """The shipped package of the default rate point (training.teacher.DEFAULT_QUALITY)."""
    from host.decode_cli import SHIPPED_PACKAGES
    from training.teacher import DEFAULT_QUALITY

    found = {}
    for manifest in sorted(SHIPPED_PACKAGES.glob("*/manifest.json")):
        found[json.loads(manifest.read_text()).get("quality")] = manifest.parent
    if not found:
        raise LicError(f"no shipped decoder package in {SHIPPED_PACKAGES}; pass --package DIR from `lic export`")
    return found.get(DEFAULT_QUALITY) or next(iter(found.values()))


class Build:
    """One board build: its folder, FINN config, step log."""

    def __init__(self, board: Board, package_dir: Path, out: Path, tile: int, target_fps: float, bitstream: bool):
        from host.decoder_package import DecoderPackage

        self.board, self.out, self.tile, self.target_fps, self.bitstream = board, out, tile, target_fps, bitstream
        self.quant_model = None  # the package's Brevitas student, loaded by export_tile_qonnx
        self.package = DecoderPackage.load(package_dir)
        if tile - 2 * self.package.halo < 1:
            raise LicError(f"tile {tile} leaves no core inside the student's halo of {self.package.halo}")
        self.times: dict[str, float] = {}
        self.report: dict = {}

    def cfg(self, generate=()):
        from finn.builder.build_dataflow_config import DataflowBuildConfig, ShellFlowType

        return DataflowBuildConfig(
            output_dir=str(self.out), synth_clk_period_ns=self.board.clock_ns, fpga_part=self.board.part,
            board=self.board.finn_board, shell_flow_type=ShellFlowType(self.board.shell_flow),
            generate_outputs=list(generate), mvau_wwidth_max=self.board.mvau_wwidth_max,
            save_intermediate_models=True)

    def step(self, name, fn, model, *args):
        t0 = time.time()
        print(f"[{len(self.times) + 1}] {name}", file=sys.stderr, flush=True)
        model = fn(model, *args)
        self.times[name] = round(time.time() - t0, 2)
        (self.out / "intermediate_models").mkdir(parents=True, exist_ok=True)
        model.save(str(self.out / "intermediate_models" / f"{name}.onnx"))
        return model


# ---------------------------------------------------------------------------------------------
# Our steps. Each is step(model, build) -> model, like FINN's step(model, cfg) -> model.


def export_tile_qonnx(_, b: Build):
    from qonnx.core.modelwrapper import ModelWrapper

    from export.qonnx_export import export_qonnx
    from host.decoder_package import QUANT_STUDENT
    from quantize.qat import load_quant_student

    model, *_ = load_quant_student(b.package.path(QUANT_STUDENT))
    b.quant_model = model
    path = export_qonnx(model, b.tile, b.out / "student.qonnx.onnx")
    return ModelWrapper(str(path))


def decoder_layout(model, b: Build):
    from finn.transformation.streamline import absorb
    from finn.transformation.streamline.reorder import MakeScaleResizeNHWC
    from qonnx.transformation.infer_data_layouts import InferDataLayouts

    from hls.transforms import HostSideLayoutAndScale, RemoveIntegerInputQuant

    for t in (MakeScaleResizeNHWC(), absorb.AbsorbConsecutiveTransposes(), InferDataLayouts(),
              RemoveIntegerInputQuant(), HostSideLayoutAndScale()):
        model = model.transform(t)
    scale = float(model.get_metadata_prop("output_scale"))
    if not np.isclose(scale, b.package.output_scale, rtol=1e-6):
        raise LicError(f"the graph's output scale {scale} is not the package's {b.package.output_scale}")
    return model


def convert_to_hw(model, b: Build):
    import finn.builder.build_dataflow_steps as finn_steps
    from finn.transformation.fpgadataflow.convert_to_hw.upsample import InferUpsample

    from hls.finn_workarounds import RoundHalfToEvenThresholds
    from hls.transforms import CheckHWLayers

    model = model.transform(InferUpsample())
    model = finn_steps.step_convert_to_hw(model, b.cfg())
    return model.transform(CheckHWLayers()).transform(RoundHalfToEvenThresholds(b.quant_model))


def verify_hw_graph(model, b: Build):
    """The HW-layer graph, executed in Python, equals the QONNX model's integers on a tile."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    from export.package import laplacian_latents
    from export.qonnx_export import run_qonnx

    y = laplacian_latents(b.package.latent_channels, b.tile, b.tile, b.package.manifest["input_bits"], seed=7)
    ref = np.rint(run_qonnx(b.out / "student.qonnx.onnx", y) / np.float32(b.package.output_scale))
    out = execute_onnx(model, {model.graph.input[0].name: y.transpose(0, 2, 3, 1)})[model.graph.output[0].name]
    mismatches = int((out.transpose(0, 3, 1, 2) != ref).sum())
    if mismatches:
        raise LicError(f"HW-layer graph differs from the QONNX model in {mismatches} output integers on a tile")
    b.report["verification"] = {"hw_graph_vs_qonnx_mismatches": 0, "tile": [b.tile, b.tile]}
    (b.out / SIM_MODEL).parent.mkdir(parents=True, exist_ok=True)
    model.save(str(b.out / SIM_MODEL))
    return ModelWrapper(str(b.out / SIM_MODEL))


def finn_step(name: str):
    def run(model, b: Build):
        import finn.builder.build_dataflow_steps as finn_steps
        from finn.builder.build_dataflow_config import DataflowOutputType

        outputs = [DataflowOutputType.ESTIMATE_REPORTS] if name == "step_generate_estimate_reports" else []
        if b.bitstream:
            outputs += [DataflowOutputType.STITCHED_IP, DataflowOutputType.BITFILE, DataflowOutputType.PYNQ_DRIVER]
        return getattr(finn_steps, name)(model, b.cfg(outputs))
    return run


def fold_for_target_fps(model, b: Build):
    from hls.folding import fold

    model, folding = fold(model, b)
    b.report["folding"] = folding
    return model


def cppsim(model, b: Build):
    from hls.cppsim import run_cppsim

    b.report["cppsim"] = run_cppsim(model, b)
    return model


HW_STEPS = [
    ("export_tile_qonnx", export_tile_qonnx),
    ("qonnx_to_finn", finn_step("step_qonnx_to_finn")),
    ("tidy_up", finn_step("step_tidy_up")),
    ("streamline", finn_step("step_streamline")),
    ("decoder_layout", decoder_layout),
    ("convert_to_hw", convert_to_hw),
    ("verify_hw_graph", verify_hw_graph),
    ("create_dataflow_partition", finn_step("step_create_dataflow_partition")),
    ("specialize_layers", finn_step("step_specialize_layers")),
    ("fold_for_target_fps", fold_for_target_fps),
    ("minimize_bit_width", finn_step("step_minimize_bit_width")),
    ("generate_estimate_reports", finn_step("step_generate_estimate_reports")),
    ("hw_codegen", finn_step("step_hw_codegen")),
    ("cppsim", cppsim),
]
VIVADO_STEPS = [(n, finn_step(f"step_{n}")) for n in
                ("hw_ipgen", "set_fifo_depths", "create_stitched_ip", "make_driver", "synthesize_bitfile")]


def write_tile_json(b: Build) -> dict:
    m = b.package.manifest
    spec = {"board": b.board.name, "tile": b.tile, "halo": b.package.halo, "upscale": b.package.upscale,
            "input_layout": "NHWC", "output_layout": "NHWC", "input_bits": m["input_bits"],
            "output_bits": m["output_bits"], "output_scale": b.package.output_scale,
            "file_fingerprint": m["file_fingerprint"], "student_sha256": m["files"].get("quant_student.pt"),
            "sim_model": SIM_MODEL, "bitfile": "bitfile/finn-accel.bit"}
    (b.out / TILE_JSON).write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def run_build(board_name: str, package_dir: Path | None = None, out: Path | None = None, tile: int | None = None,
              target_fps: float | None = None, bitstream: bool = False) -> dict:
    board = load_board(board_name)
    out = Path(out or board.folder / "build").resolve()
    b = Build(board, package_dir or default_package(), out, tile or board.tile, target_fps or board.target_fps,
              bitstream)
    out.mkdir(parents=True, exist_ok=True)
    # FINN's generated code and per-node temporary folders go inside this build, not /tmp.
    prepare_finn_import(out / "finn_tmp")
    t0 = time.time()
    model = None
    for name, fn in HW_STEPS:
        model = b.step(name, fn, model, b)
    b.report["make_hw_seconds"] = round(time.time() - t0, 1)
    b.report["step_seconds"] = dict(b.times)
    shutil.copytree(b.package.root, out / "package", dirs_exist_ok=True)
    write_tile_json(b)
    from hls.estimates import summarise

    estimates = summarise(b)
    (out / "estimates.json").write_text(json.dumps(estimates, indent=2) + "\n")
    if bitstream:
        if not vivado_available():
            raise LicError("`make bitstream` needs Vivado and Vitis HLS: XILINX_VIVADO is not set to a Vivado "
                           "installation. Estimates and HLS code are in " + str(out) + ". Source Vivado's "
                           "settings64.sh (XILINX_VIVADO, XILINX_HLS), or run it in the Docker image with your "
                           "Vivado mounted: see hls/README.md")
        for name, fn in VIVADO_STEPS:
            model = b.step(name, fn, model, b)
        _collect_bitstream(b)
    return estimates


def _collect_bitstream(b: Build) -> None:
    """Put bitfile, .hwh and driver where the pynq backend looks (host/fabric.py)."""
    bitdir = b.out / "bitfile"
    found = sorted(b.out.rglob("*.bit"))
    if not found:
        raise LicError(f"FINN finished without a bitfile in {b.out}; see its build_dataflow.log")
    bitdir.mkdir(exist_ok=True)
    shutil.copyfile(found[0], bitdir / "finn-accel.bit")
    hwh = sorted(b.out.rglob("*.hwh"))
    if hwh:
        shutil.copyfile(hwh[0], bitdir / "finn-accel.hwh")


def run(args) -> int:
    est = run_build(args.board, args.package, args.output, args.tile, args.target_fps, args.bitstream)
    r = est["resources"]
    print(f"{est['build_dir']}: {est['board']} tile {est['tile']}x{est['tile']}, "
          f"{est['fps_at_frame']:.1f} fps at {est['frame'][0]}x{est['frame'][1]} (target {est['target_fps']}), "
          + ", ".join(f"{k} {r[k]['used']:.0f} ({100 * r[k]['fraction']:.0f}%)" for k in ("LUT", "BRAM_18K", "DSP"))
          + f"; limited by {est['limited_by']}; make hw took {est['make_hw_seconds']:.0f} s")
    if not args.bitstream:
        print("bitstream not built: run `make bitstream BOARD=%s` on a machine with Vivado" % args.board)
    return 0
