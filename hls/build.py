"""`lic hw` (`make hw` / `make bitstream BOARD=...`): the quantised student of a decoder package ->
FINN dataflow accelerator for one board, built by FINN's own builder (build_dataflow_cfg) with the
decoder's steps as custom step functions, in FINN's order (default_build_dataflow_steps):

  step_qonnx_to_finn, step_tidy_up, step_streamline                       FINN
  step_decoder_layout       NHWC Resize, drop the identity input quant, layout/scale tail to the host
  step_resize_to_upsample   workaround: FINN's InferUpsample for torch's "Resize"
  step_convert_to_hw        FINN, with standalone thresholds (Thresholding layers, which the RTL
                            MVU needs; the HLS MVU runs either way)
  step_exact_thresholds     workaround: MVAU thresholds rounded half to even, weights checked exact
  step_verify_hw_graph      Python execution of the HW-layer graph == QONNX on a tile, bit for bit;
                            saved as hw/student_hw.onnx for the finn-sim backend
  step_minimize_bit_width_initial, step_create_dataflow_partition                          FINN
  step_mvaus_start_in_luts  MVAUs specialised as HLS (LUT multipliers); the folding moves the
                            widest to FINN's RTL MVU (DSP48s) only when the LUTs run short
  step_specialize_layers                                                    FINN
  step_fold_for_target_fps  in place of FINN's step_target_fps_parallelization: PE/SIMD for
                            TARGET_FPS at the board's frame, within the board's budget
  step_apply_folding_config, step_minimize_bit_width, step_transpose_decomposition,
  step_generate_estimate_reports                                           FINN
  -- `make hw` (no Vivado) --
  step_hw_codegen (FINN), step_simulate_layers (each layer in cppsim or Verilator == Python, hls/layer_sim.py)
  -- `make bitstream` (Vivado): hls/preflight.py first, then resumed from
     step_generate_estimate_reports.onnx --
  step_assign_ddr_weight_offsets, step_generate_hardware (codegen, IP, FIFO depths),
  step_create_stitched_ip (+ FINN's stitched-IP rtlsim on a tile)                    FINN
  step_check_stitched_ip_rtlsim   stop unless that rtlsim equals the HW-layer graph (hls/gates.py)
  step_measure_rtlsim_performance, step_out_of_context_synthesis, step_prepare_synthesis,
  step_synthesize_bitfile                                                            FINN
  step_check_timing               stop on negative post-route slack, naming clock and path
  step_make_driver, step_deployment_package                                          FINN

Outputs in fpga_projects/<board>/build/: tile.json (the geometry the host tiles with),
estimates.json (resources, the three rates, compute ceiling), report/ (FINN's reports),
intermediate_models/ (one model per step), hw/, package/ (the decoder package), and with Vivado
FINN's bitfile/finn-accel.{bit,hwh}, driver/settings.json (for finn-plus-driver) and deploy/.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import time
from pathlib import Path

import numpy as np
from finn.util.exception import FINNUserError

from hls.boards import BOARDS_DIR, Board, board_rate_path, load_board
from hls.finn_workarounds import prepare_finn_import
from hls.gates import step_check_stitched_ip_rtlsim, step_check_timing
from host.decode_cli import default_package
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
DEMO_JSON = REPO / "build" / "demo" / "demo.json"
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
    p.add_argument("--host-times", type=Path, default=None,
                   help="host stage times for the board rate: `lic demo`'s demo.json (x86-measured) or a JSON "
                        "{\"source\": ..., \"ms_per_frame\": {stage: ms}} (e.g. Cortex-A9 estimates); default: "
                        f"{DEMO_JSON.relative_to(REPO)} when `make demo` has written it")
    p.add_argument("--bitstream", action="store_true",
                   help="continue through IP generation, FIFO sizing, stitched IP and bitfile (needs Vivado); "
                        "runs --preflight first and stops there if anything is missing")
    p.add_argument("--no-simulate", dest="simulate", action="store_false",
                   help="skip the per-layer simulation gate (cppsim for HLS layers, Verilator for RTL layers; "
                        "2-3 minutes on 2 cores, cached by source); make hw runs it")
    p.add_argument("--preflight", action="store_true",
                   help="only check what --bitstream needs (Vivado, Vitis HLS, FINN's dependencies, finn_xsi's "
                        "build requirements, disk, memory, the board's part): one table, non-zero exit if any is missing")
    p.add_argument("--shared-weights", action="store_true",
                   help="one build for every rate point: MVAU weights and thresholds runtime-writable (AXI-lite), "
                        "widths covering every student, each rate point's weight files in runtime_weights/ "
                        "(hls/shared_weights.py)")
    p.add_argument("--rate-packages", type=Path, nargs="+", default=None, metavar="DIR",
                   help="with --shared-weights: the decoder packages whose weights the build carries (default: "
                        "host/decoders/* and build/decoders/* from `make packages`, covering every student of "
                        "training/students/students.json)")


class Build:
    """One board build: its folder, board, package, and what the steps report."""

    def __init__(self, board: Board, package_dir: Path, out: Path, tile: int, target_fps: float, bitstream: bool,
                 simulate: bool = True):
        from host.decoder_package import DecoderPackage

        self.board, self.out, self.tile, self.target_fps, self.bitstream = board, out, tile, target_fps, bitstream
        self.simulate = simulate
        self.quant_model = None  # the package's Brevitas student, loaded by export_tile_qonnx
        self.package = DecoderPackage.load(package_dir)
        if tile - 2 * self.package.halo < 1:
            raise LicError(f"tile {tile} leaves no core inside the student's halo of {self.package.halo}")
        self.report: dict = {}
        self.shared_weights = False  # --shared-weights: runtime-writable MVAU weights and thresholds

    def cfg(self, steps: list, outputs=(), start_step: str | None = None, verify_io: tuple[Path, Path] | None = None):
        """verify_io: (input, expected output) .npy for FINN's stitched-IP RTL simulation check."""
        from finn.builder.build_dataflow_config import DataflowBuildConfig, ShellFlowType, VerificationStepType

        verify = {} if verify_io is None else {
            "verify_steps": [VerificationStepType.STITCHED_IP_RTLSIM],
            "verify_input_npy": str(verify_io[0]), "verify_expected_output_npy": str(verify_io[1])}
        return DataflowBuildConfig(**verify,
            output_dir=str(self.out), synth_clk_period_ns=self.board.clock_ns, fpga_part=self.board.part,
            board=self.board.finn_board, shell_flow_type=ShellFlowType(self.board.shell_flow),
            generate_outputs=list(outputs), mvau_wwidth_max=self.board.mvau_wwidth_max,
            standalone_thresholds=True,
            save_intermediate_models=True, steps=[self._bind(s) for s in steps], start_step=start_step)

    def _bind(self, step):
        """FINN calls step(model, cfg); ours also get this build. A LicError raised inside FINN's
        builder is logged by it as a FINN user error (one line, no traceback) and re-raised here."""
        if isinstance(step, str):
            return step

        @functools.wraps(step)
        def bound(model, cfg):
            try:
                return step(model, cfg, self)
            except LicError as e:
                self.report["error"] = str(e)
                raise StepError(str(e)) from e
        return bound


class StepError(LicError, FINNUserError):
    """A LicError raised in one of our steps: FINN's builder logs a FINNUserError as one line
    ("FINN ERROR: ...") without a traceback, and `lic` prints a LicError as one line."""


# ---------------------------------------------------------------------------------------------
# The decoder's steps: step_x(model, cfg, build) -> model, FINN's step(model, cfg) plus the build.


def export_tile_qonnx(b: Build) -> Path:
    """The builder's input model: QONNX of the package's Brevitas student for the board's tile."""
    from export.qonnx_export import export_qonnx
    from host.decoder_package import QUANT_STUDENT
    from quantize.qat import load_quant_student

    model, *_ = load_quant_student(b.package.path(QUANT_STUDENT))
    b.quant_model = model
    return export_qonnx(model, b.tile, b.out / "student.qonnx.onnx")


def step_decoder_layout(model, cfg, b: Build):
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


def step_resize_to_upsample(model, cfg, b: Build):
    from hls.finn_workarounds import InferResizeUpsample

    return model.transform(InferResizeUpsample())


def step_exact_thresholds(model, cfg, b: Build):
    from hls.finn_workarounds import RoundHalfToEvenThresholds
    from hls.transforms import CheckHWLayers

    exact = RoundHalfToEvenThresholds(b.quant_model)
    model = model.transform(CheckHWLayers()).transform(exact)
    b.report["thresholds_moved_to_half_even"] = exact.moved
    return model


def step_verify_hw_graph(model, cfg, b: Build):
    """The HW-layer graph, executed in Python, equals the QONNX model's integers on a tile."""
    from finn.core.onnx_exec import execute_onnx

    from export.package import laplacian_latents
    from export.qonnx_export import run_qonnx

    y = laplacian_latents(b.package.latent_channels, b.tile, b.tile, b.package.manifest["input_bits"], seed=7)
    ref = np.rint(run_qonnx(b.out / "student.qonnx.onnx", y) / np.float32(b.package.output_scale))
    out = execute_onnx(model, {model.graph.input[0].name: y.transpose(0, 2, 3, 1)})[model.graph.output[0].name]
    mismatches = int((out.transpose(0, 3, 1, 2) != ref).sum())
    if mismatches:
        raise LicError(f"HW-layer graph differs from the QONNX model in {mismatches} output integers on a tile")
    b.report["verification"] = {"hw_graph_vs_qonnx_mismatches": 0, "tile": [b.tile, b.tile],
                                "thresholds_moved_to_half_even": b.report.get("thresholds_moved_to_half_even")}
    (b.out / SIM_MODEL).parent.mkdir(parents=True, exist_ok=True)
    model.save(str(b.out / SIM_MODEL))
    return model


def step_mvaus_start_in_luts(model, cfg, b: Build):
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if node.op_type == "MVAU":
            getCustomOp(node).set_nodeattr("preferred_impl_style", "hls")
    return model


def step_fold_for_target_fps(model, cfg, b: Build):
    from hls.folding import fold

    model, folding = fold(model, b)
    b.report["folding"] = folding
    (b.out / "report").mkdir(parents=True, exist_ok=True)
    (b.out / "report" / "folding.json").write_text(json.dumps(folding, indent=2) + "\n")
    return model


def step_simulate_layers(model, cfg, b: Build):
    """Each layer simulated at its own source level (HLS: cppsim, RTL: Verilator) on a real tile
    equals its Python execution, and the chain gives the network's output (hls/layer_sim.py)."""
    from hls.layer_sim import simulate_layers

    b.report["layer_sim"] = simulate_layers(model, b.out, b.package, b.tile, enabled=b.simulate)
    return model


# FINN's default_build_dataflow_steps up to its estimate reports, with the decoder's steps in place.
ESTIMATE_STEPS = [
    "step_qonnx_to_finn", "step_tidy_up", "step_streamline",
    step_decoder_layout, step_resize_to_upsample,
    "step_convert_to_hw",
    step_exact_thresholds, step_verify_hw_graph,
    "step_minimize_bit_width_initial", "step_create_dataflow_partition", step_mvaus_start_in_luts,
    "step_specialize_layers",
    step_fold_for_target_fps,
    "step_apply_folding_config", "step_minimize_bit_width", "step_transpose_decomposition",
    "step_generate_estimate_reports",
]
# `make hw`: FINN's HLS/RTL code generation (the Vivado-free half of step_generate_hardware).
HW_STEPS = ESTIMATE_STEPS + ["step_hw_codegen", step_simulate_layers]
# `make bitstream`: the rest of default_build_dataflow_steps, in FINN's order, with our gates
# (hls/gates.py): the stitched IP's RTL simulation must equal the HW-layer graph, and the routed
# design must meet timing, or the build stops there.
VIVADO_STEPS = [
    "step_assign_ddr_weight_offsets", "step_generate_hardware", "step_create_stitched_ip",
    step_check_stitched_ip_rtlsim,
    "step_measure_rtlsim_performance", "step_out_of_context_synthesis", "step_prepare_synthesis",
    "step_synthesize_bitfile", step_check_timing, "step_make_driver", "step_deployment_package",
]
BITSTREAM_STEPS = ESTIMATE_STEPS + VIVADO_STEPS


def with_runtime_weights(steps: list) -> list:
    """The step list of a shared build (--shared-weights): FINN's runtime_writeable_weights set on every
    MVAU and Thresholding layer just before FINN's first width minimisation, which then keeps the
    widths every student of these bit widths needs (hls/shared_weights.py)."""
    from hls.shared_weights import step_runtime_writable_weights

    i = steps.index("step_minimize_bit_width_initial")
    return steps[:i] + [step_runtime_writable_weights] + steps[i:]


def step_names(steps) -> list[str]:
    return [s if isinstance(s, str) else s.__name__ for s in steps]


def write_tile_json(b: Build) -> dict:
    m = b.package.manifest
    spec = {"board": b.board.name, "tile": b.tile, "halo": b.package.halo, "upscale": b.package.upscale,
            "input_layout": "NHWC", "output_layout": "NHWC", "input_bits": m["input_bits"],
            "output_bits": m["output_bits"], "output_scale": b.package.output_scale,
            "file_fingerprint": m["file_fingerprint"], "student_sha256": m["files"].get("quant_student.pt"),
            "sim_model": SIM_MODEL, "bitfile": "bitfile/finn-accel.bit"}
    if b.shared_weights:
        from hls.shared_weights import RT_MANIFEST

        # the weights in the bitstream are this package's; every set of RT_MANIFEST can be loaded instead
        spec["shared_weights"] = RT_MANIFEST
    (b.out / TILE_JSON).write_text(json.dumps(spec, indent=2) + "\n")
    return spec


def run_build(board_name: str, package_dir: Path | None = None, out: Path | None = None, tile: int | None = None,
              target_fps: float | None = None, bitstream: bool = False,
              host: tuple[dict[str, float], str] | None = None, simulate: bool = True,
              shared_weights: bool = False, rate_packages: list[Path] | None = None) -> dict:
    """host: (ms per frame of each host pipeline stage, where those times come from), for the
    board rate (hls/estimates.py: board_rate)."""
    from hls.estimates import read_host_times, summarise

    if host is None:
        # the board's own ARM stages when `make board-rate` has estimated them; this machine's otherwise
        found = next((f for f in (board_rate_path(board_name), DEMO_JSON) if f.is_file()), None)
        host = read_host_times(found) if found else None
    board = load_board(board_name)
    out = Path(out or board.folder / "build").resolve()
    if bitstream:
        # everything the Vivado steps need, before any FINN step: fails in a second, not after make hw
        from hls.preflight import preflight

        preflight(board, out)
    b = Build(board, package_dir or default_package(), out, tile or board.tile, target_fps or board.target_fps,
              bitstream, simulate)
    b.shared_weights = shared_weights
    hw_steps, bitstream_steps = HW_STEPS, BITSTREAM_STEPS
    if shared_weights:
        from hls.shared_weights import rate_packages as find_rate_packages

        rate_packages = find_rate_packages(rate_packages)  # before FINN runs: a missing package fails at once
        hw_steps, bitstream_steps = with_runtime_weights(HW_STEPS), with_runtime_weights(BITSTREAM_STEPS)
    out.mkdir(parents=True, exist_ok=True)
    # FINN reads FINN_DEPS when it builds its settings: point it where `finn deps update` put them
    from hls.preflight import use_finn_deps

    use_finn_deps()
    # FINN's generated code and per-node temporary folders go inside this build, not /tmp.
    prepare_finn_import(out / "finn_tmp")
    from finn.builder.build_dataflow_config import DataflowOutputType as Out

    t0 = time.time()
    _run_finn(b, export_tile_qonnx(b), b.cfg(hw_steps, [Out.ESTIMATE_REPORTS]))
    b.report["make_hw_seconds"] = round(time.time() - t0, 1)
    if shared_weights:
        from hls.shared_weights import write_weight_sets

        t1 = time.time()
        import sys

        b.report["shared_weights"] = write_weight_sets(b, rate_packages, sys.modules[__name__])
        b.report["shared_weights_seconds"] = round(time.time() - t1, 1)
        # every set written through the driver's AXI-lite writes into the simulated layers, equal to its
        # own rate point's outputs, or the build stops (report/runtime_weight_sim.json)
        from hls.runtime_weight_sim import simulate_runtime_weights

        b.report["runtime_weight_sim"] = simulate_runtime_weights(out, b.tile, enabled=simulate)
    b.report["step_seconds"] = json.loads((out / "report" / "time_per_step.json").read_text())
    shutil.copytree(b.package.root, out / "package", dirs_exist_ok=True)
    write_tile_json(b)
    estimates = summarise(b, host)
    if shared_weights:
        sw = b.report["shared_weights"]
        estimates["shared_weights"] = {
            "manifest": "runtime_weights/weights.json", "layers": sw["layers"],
            "sets": {s["name"]: {k: s[k] for k in ("quality", "file_fingerprint", "bytes", "estimated_switch_ms")}
                     for s in sw["sets"]},
            "switch_time": sw["switch_time"], "check_seconds": b.report["shared_weights_seconds"],
            "simulated": {k: b.report["runtime_weight_sim"].get(k) for k in ("status", "reason", "summary", "seconds")
                          if k in b.report["runtime_weight_sim"]} | {"report": "report/runtime_weight_sim.json"}}
    (out / "estimates.json").write_text(json.dumps(estimates, indent=2) + "\n")
    if bitstream:
        from hls.gates import measured_summary, write_verification_io

        # FINN resumes from intermediate_models/step_generate_estimate_reports.onnx of the run above.
        outputs = [Out.ESTIMATE_REPORTS, Out.STITCHED_IP, Out.RTLSIM_PERFORMANCE, Out.OOC_SYNTH, Out.BITFILE,
                   Out.PYNQ_DRIVER, Out.DEPLOYMENT_PACKAGE]
        # a verdict left by an earlier run must not pass for this one's (gates.rtlsim_verdict)
        shutil.rmtree(out / "verification_output", ignore_errors=True)
        try:
            _run_finn(b, out / "student.qonnx.onnx", b.cfg(bitstream_steps, outputs, start_step=VIVADO_STEPS[0],
                                                           verify_io=write_verification_io(b)))
            check_bitstream(out)
        finally:
            # whatever ran (rtlsim cycles, OOC fmax, slack) goes beside FINN's estimate, pass or fail
            estimates["measured"] = measured_summary(out, board.clock_hz, estimates["tiles_per_frame"],
                                                     estimates["cycles_per_tile"], b.report.get("timing"))
            (out / "estimates.json").write_text(json.dumps(estimates, indent=2) + "\n")
    return estimates


def _run_finn(b: Build, model_path: Path, cfg) -> None:
    from hls.finn_workarounds import run_dataflow_build

    if run_dataflow_build(model_path, cfg) != 0:
        cause = b.report.get("error") or "see its log"
        raise LicError(f"FINN's build stopped: {cause} ({b.out / 'build_dataflow.log'})")


def check_bitstream(out: Path) -> None:
    """What the pynq backend needs (host/fabric.py), where FINN's step_synthesize_bitfile and
    step_make_driver put it: the bitfile and its .hwh, and finn-plus-driver's settings.json."""
    missing = [p for p in ("bitfile/finn-accel.bit", "bitfile/finn-accel.hwh", "driver/settings.json")
               if not (out / p).is_file()]
    if missing:
        raise LicError(f"FINN finished without {', '.join(missing)} in {out}; see its build_dataflow.log")


def run(args) -> int:
    from hls.estimates import read_host_times

    if args.preflight:
        from hls.preflight import preflight

        board = load_board(args.board)
        preflight(board, Path(args.output or board.folder / "build"))
        print(f"preflight: everything `make bitstream BOARD={args.board}` needs is here")
        return 0
    host = read_host_times(args.host_times) if args.host_times else None
    est = run_build(args.board, args.package, args.output, args.tile, args.target_fps, args.bitstream, host,
                    simulate=args.simulate, shared_weights=args.shared_weights, rate_packages=args.rate_packages)
    r, rates = est["resources"], est["rates"]
    board_fps = rates["board_fps"]
    print(f"{est['build_dir']}: {est['board']} tile {est['tile']}x{est['tile']}, {est['frame'][0]}x{est['frame'][1]}: "
          f"fabric {est['fps_at_frame']:.1f} fps (FINN estimate at {est['clock_mhz']:g} MHz, not timing-closed; "
          f"target {est['target_fps']}), tile latency {rates['tile_latency_ms']['ms']:.1f} ms (FINN's layer sum, an "
          f"upper bound: {rates['tile_latency_ms']['finn_upper_bound_ms']:.0f} ms), board "
          + (f"{board_fps['fps']:.1f} fps (limited by {board_fps['limited_by']}; host times "
             f"{board_fps['host_times_source']})" if board_fps["fps"] else "fps unknown (" + board_fps["what"] + ")")
          + "; FINN estimate with FIFOs and IODMAs: "
          + ", ".join(f"{k} {r[k]['used_with_fifos_and_iodmas']:.0f} of {r[k]['limit_for_finn_layers']:.0f} budgeted "
                      f"({100 * r[k]['used_with_fifos_and_iodmas'] / r[k]['available']:.1f}% of the device)"
                      for k in ("LUT", "BRAM_18K", "DSP"))
          + f"; folding limited by {est['limited_by']}; make hw took {est['make_hw_seconds']:.0f} s")
    if not args.bitstream:
        print("bitstream not built: run `make bitstream BOARD=%s` on a machine with Vivado" % args.board)
    return 0
