"""estimates.json: what `make hw` tells a user about the accelerator before any Vivado run.

From FINN's analytical estimates (report/estimate_layer_resources.json, estimate_network_
performance.json), three rates, each labelled with what it is:

  fabric_fps         steady-state frames per second of the fabric alone: FINN's cycles per tile of
                     the slowest layer x tiles per frame, at the board's target clock. Estimated,
                     not timing-closed (no Vivado run).
  tile_latency_ms    one tile in, its last output out: the slowest layer's cycles + each layer's
                     first-output delay (fabric_timing); FINN's own figure sums every layer's cycles
                     as if none overlapped, an upper bound reported beside it.
  board_fps          the runtime's pipeline (board_rate; pipeline_rate models the A9's schedule in
                     detail): the fabric's period per frame (a whole batch, fill and restart gap
                     included) against each host stage, from host stage times that say where they
                     come from (x86-measured or A9-estimated).

Resources: FINN's layer estimates plus the FIFOs and IODMAs (hls/folding.py infrastructure: FINN's FIFO
sizing where a `make bitstream` measured it, else a stated model) against the board's budget, which
keeps `Board.lut_margin` of the LUTs (width converters, interconnect, shell) and `Board.bram_margin`
of the BRAM18s (estimate error) free.

Compute ceiling ("roofline"): the MACs per cycle the budget could buy, as LUT-multiplier MAC lanes
(the LUTs left after every layer that is not a LUT-multiplier MVAU, at the LUTs per lane the
folded MVAUs cost) plus, per DSP, the MAC lanes FINN's RTL MVU packs into one (the fewest any of
the student's MVAUs gets: 2 at W4 x A8); sliding-window and upsample LUTs are not counted as
multiplier budget.
"""

from __future__ import annotations

import json
from pathlib import Path

RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP", "URAM")

# host/runtime.py's pipeline (HostDecoder.decode_stream): one thread entropy-decodes frame i+1 while
# the other hands frame i to the fabric and dequantises it; the fabric is the third stage.
HOST_PIPELINE = {"entropy decoding (parse, rANS z, integer h_s, rANS y)": ("parse", "rans_z", "integer_hs", "rans_y"),
                 "dequantise": ("dequantise",)}


def host_stages_from_runtime(stage_seconds: dict[str, float]) -> dict[str, float]:
    """host/runtime.py's StageTimes per frame (seconds) -> ms per frame of each host pipeline stage."""
    return {stage: 1000.0 * sum(stage_seconds.get(k, 0.0) for k in keys) for stage, keys in HOST_PIPELINE.items()}


def board_rate(fabric_fps: float, host_ms: dict[str, float], source: str, fabric: dict | None = None) -> dict:
    """The board's frames per second with the runtime's pipeline (host/runtime.py decode_stream):
    each host stage and the fabric work on different frames at once, so the slowest sets the rate;
    the fabric's part per frame is a whole batch, fill and drain included, plus the gap before the
    next start (`fabric`, from fabric_timing), not its steady state, which it never reaches between
    batches. Without `fabric` it is the steady state (an upper bound), and the result says so.

    host_ms: ms per frame of each host stage that runs concurrently with the others and with the
    fabric; source: what those times are, e.g. "x86-measured (make demo, 1 core)" or
    "Cortex-A9-estimated (...)". For the A9's stages one by one, pipeline_rate models the schedule
    in more detail (cores, cache maintenance, Python)."""
    fabric_ms = (fabric["batch_ms"] + BOARD_ASSUMPTIONS["restart_ms"][1]) if fabric else 1000.0 / fabric_fps
    rates = {"fabric": 1000.0 / fabric_ms, **{k: 1000.0 / v for k, v in host_ms.items() if v > 0}}
    slowest = min(rates, key=rates.get)
    return {"fps": rates[slowest], "limited_by": slowest, "host_ms_per_frame": dict(host_ms),
            "host_times_source": source, "fabric_ms_per_frame": fabric_ms,
            "fabric_per_frame": ("one batch: fill + tiles x the slowest layer's cycles, plus the restart gap "
                                 f"({fabric['method']})") if fabric else
                                "the fabric's steady state (no fill or drain, no restart gap): an upper bound"}


# ---- The board's schedule, modelled (host/runtime.py HostDecoder.decode_stream, pynq backend) ----
#   entropy thread  parse, rANS z (one core); integer h_s, rANS y (all cores: rows, substreams)
#   main thread     the windows into the free buffer set (all cores), cache clean of its input
#                   buffer; once the fabric is done with the frame before (a sleeping wait), its start
#   output thread   cache invalidate of the output buffer, the image (all cores)
#   fabric          one batch per frame (fill, then one tile per slowest-layer interval, drain),
#                   idle from its ap_done until the main thread notices and starts the next
# Assumptions, each a range [fast, slow]; none is measured on a board.
BOARD_ASSUMPTIONS = {
    "cache_line_bytes": 32,
    "cache_ns_per_line": [50.0, 100.0],
    "cache_ns_per_line_why": (
        "assumed: Linux's ARMv7 DMA sync cleans / invalidates L1 by address (one CP15 op per 32-byte line) "
        "and the PL310 L2 by physical address, one write to its line-operation register per line "
        "(arch/arm/mm/cache-l2x0.c, l2c210_clean_range / l2c210_inv_range, used for the L2C-310), then a "
        "cache sync: 50-100 ns per line at 650 MHz = 0.32-0.64 GB/s of buffer; not measured"),
    "ddr_write_mb_s": [2100.0, 1000.0],
    "ddr_write_why": ("cleaning writes the dirty input lines back to DDR: PYNQ-Z2's DDR3, 16 bits at 1050 MT/s "
                      "= 2.1 GB/s peak (TUL's PYNQ-Z2 reference), half of it at the slow end"),
    "python_ms_per_frame": [1.0, 3.0],
    "python_why": ("assumed: per-frame Python beyond the counted stage functions: two thread hand-offs (futures, a "
                   "queue), the job, 8 register writes and ~4 reads through PYNQ's MMIO in Python (~20-50 us each "
                   "on the A9), the frame's plan; serial (it holds the GIL)"),
    "restart_ms": [0.1, 0.5],
    "restart_why": ("from the fabric's ap_done to the next batch's start: the waiting thread's sleep (it sleeps "
                    "until 1 ms before the last batch's duration, then polls every 0.25 ms) and wake-up, and the "
                    "start's register writes; assumed"),
    "cores": 2,
}


def _first_output_fraction(inst) -> tuple[float, str]:
    """How much of a layer's cycles per tile pass before its first output: a sliding window needs
    k-1 rows and k pixels of its input; every other layer one output pixel (padding, upsampling,
    MVAU, thresholds)."""
    from math import prod

    attrs = inst.get_nodeattr_types()
    if "ConvKernelDim" in attrs and "IFMDim" in attrs:
        (kh, kw), (h, w) = inst.get_nodeattr("ConvKernelDim"), inst.get_nodeattr("IFMDim")
        return ((kh - 1) * w + kw) / (h * w), f"{kh}x{kw} window: {kh - 1} rows + {kw} pixels of {h}x{w}"
    shape = inst.get_normal_output_shape()
    pixels = int(prod(shape[1:-1])) if len(shape) > 2 else 1
    return 1.0 / max(1, pixels), f"one of {pixels} output pixels"


def fabric_timing(build_dir: Path, tiles: int, clock_hz: float) -> dict:
    """The fabric's three figures, each with its method, from a `make hw` build folder:
      steady_fps     tiles back to back forever: tiles x the slowest layer's cycles (FINN's fabric fps)
      tile_latency   one tile in, its last output out: the slowest layer's cycles + each layer's
                     first-output delay (its cycles x the fraction of its input it buffers first)
      batch_ms       one frame's batch as the runtime runs it: the delays + tiles x the slowest layer
    FINN's own latency estimate (critical_path_cycles) sums every layer's cycles as if none
    overlapped: an upper bound, reported beside it. Per-layer cycles: report/layer_sim.json's
    simulated ones (cycles_first_in_to_last_out, Verilator) where it has them, else FINN's estimate
    (report/estimate_layer_cycles.json); the result says which."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    report = Path(build_dir) / "report"
    estimate = _read(report / "estimate_layer_cycles.json")
    simulated = {row["name"]: int(row["cycles"]["cycles_first_in_to_last_out"])
                 for row in _read(report / "layer_sim.json").get("layers", [])
                 if isinstance(row.get("cycles"), dict) and "cycles_first_in_to_last_out" in row["cycles"]}
    model = ModelWrapper(str(Path(build_dir) / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    layers = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        cycles = simulated.get(node.name, estimate.get(node.name, inst.get_exp_cycles()))
        fraction, why = _first_output_fraction(inst)
        layers[node.name] = {"cycles": int(cycles), "source": "simulated" if node.name in simulated else "FINN estimate",
                             "first_output_cycles": cycles * fraction, "first_output_from": why}
    slowest = max(layers, key=lambda k: layers[k]["cycles"])
    c_max, fill = layers[slowest]["cycles"], sum(v["first_output_cycles"] for v in layers.values())
    ms = 1e3 / clock_hz
    n_sim = sum(v["source"] == "simulated" for v in layers.values())
    source = (f"cycles per layer: {n_sim} of {len(layers)} simulated (report/layer_sim.json, Verilator), the rest "
              f"FINN's estimate" if n_sim else "cycles per layer: FINN's estimate (report/estimate_layer_cycles.json; "
                                               "no report/layer_sim.json with simulated cycles)")
    return {
        "tiles": tiles, "clock_mhz": clock_hz / 1e6, "slowest_layer": slowest, "slowest_cycles": c_max,
        "fill_cycles": fill, "steady_fps": clock_hz / (tiles * c_max),
        "tile_latency_ms": (fill + c_max) * ms, "batch_ms": (fill + tiles * c_max) * ms,
        "finn_latency_upper_bound_ms": sum(v["cycles"] for v in layers.values()) * ms,
        "cycles_source": source, "layers": layers,
        "method": (f"{source}; a layer's first output after the fraction of its input it buffers first (a k x k "
                   f"window: k-1 rows + k pixels; any other layer: one output pixel) x its cycles; a batch of "
                   f"{tiles} = the sum of those delays + {tiles} x the slowest layer ({slowest}); FINN's "
                   f"critical-path latency sums every layer's cycles as if none overlapped: an upper bound"),
    }


def pipeline_rate(arm_s: dict, fabric: dict, input_bytes: int, output_bytes: int, end: int = 1,
                  shared: tuple[str, ...] = ("integer_hs", "rans_y", "tiles", "to_rgb8"),
                  assumptions: dict = BOARD_ASSUMPTIONS) -> dict:
    """The board's three rates under the runtime's real schedule (see above), from the ARM's stage
    seconds on one core (parse, rans_z, integer_hs, rans_y, tiles, to_rgb8; `lic board-rate`),
    fabric_timing's figures and the DMA buffers' sizes; `end` 0 / 1 takes the fast / slow end of
    each assumed range.
      fabric_fps         the fabric alone in steady state (FINN's figure): never reached by a
                         runtime that starts one batch per frame
      frame_latency_ms   one frame alone, .lic bytes to image (the ARM's shared stages on all cores)
      board_fps          frames per second of decode_stream: the slowest of the fabric's period
                         (batch + restart gap), the ARM's (its work per frame over the cores, or
                         its longest thread, whichever is longer) and a buffer set's turnaround
                         (its image made and its next windows written)"""
    a = assumptions
    cores = a["cores"]
    line, ns = a["cache_line_bytes"], a["cache_ns_per_line"][end]
    clean = (input_bytes / line * ns * 1e-9 + input_bytes / (a["ddr_write_mb_s"][end] * 1e6)) * 1e3
    invalidate = output_bytes / line * ns * 1e-6
    python, restart = a["python_ms_per_frame"][end], a["restart_ms"][end]
    stages = ("parse", "rans_z", "integer_hs", "rans_y", "tiles", "to_rgb8")  # all the ARM does per frame
    ms = {k: 1e3 * float(arm_s[k]) for k in stages if isinstance(arm_s.get(k), (int, float))}
    missing = [k for k in stages if k not in ms]
    wall = lambda k: ms.get(k, 0.0) / (cores if k in shared else 1)  # a stage alone, on all cores where shared
    threads = {
        "entropy thread (parse, rans_z, integer_hs, rans_y)": sum(wall(k) for k in ("parse", "rans_z", "integer_hs", "rans_y")),
        "main thread (tiles, cache clean, start)": wall("tiles") + clean,
        "output thread (cache invalidate, to_rgb8)": invalidate + wall("to_rgb8"),
    }
    work = sum(ms.values()) + clean + invalidate + python
    arm_period = max(work / cores, *threads.values(), python)
    fabric_period = fabric["batch_ms"] + restart
    # two buffer sets: frame i+1 is written into the set frame i-1 used, once its image is made, and
    # must be ready when frame i's batch ends
    turnaround = threads["output thread (cache invalidate, to_rgb8)"] + threads["main thread (tiles, cache clean, start)"]
    period = max(arm_period, fabric_period, turnaround)
    latency = (sum(wall(k) for k in ("parse", "rans_z", "integer_hs", "rans_y", "tiles")) + clean + fabric["batch_ms"]
               + restart + invalidate + wall("to_rgb8") + python)
    return {
        "fabric_fps": {"fps": fabric["steady_fps"], "what": "fabric alone, batches back to back without fill or "
                       "drain (FINN's estimate): an upper bound the runtime does not reach"},
        "frame_latency_ms": {"ms": latency, "what": "one frame alone, .lic bytes to image: the ARM's stages in "
                             f"turn (shared ones on {cores} cores), cache clean, the fabric's batch (its fill "
                             "included), the restart gap, cache invalidate, the image"},
        "board_fps": {"fps": 1e3 / period, "limited_by": "fabric" if fabric_period >= max(arm_period, turnaround)
                      else "ARM" if arm_period >= turnaround else "buffer sets (image + windows of a set > period)",
                      "what": "decode_stream's frames per second: the slower of the fabric's period (batch + "
                              f"restart gap) and the ARM's (its work over {cores} cores, or its longest thread)"},
        "arm_ms_per_frame": {"stages": ms, "cache_clean": clean, "cache_invalidate": invalidate, "python": python,
                             "total_one_core": work, "period": arm_period, "threads": threads,
                             "buffer_set_turnaround": turnaround},
        "fabric_ms_per_frame": {"batch": fabric["batch_ms"], "restart": restart, "period": fabric_period,
                                "steady_state": 1e3 / fabric["steady_fps"]},
        "stages_missing": missing,
        "assumptions": {k: (v[end] if isinstance(v, list) else v) for k, v in a.items()},
        "end": "fast" if end == 0 else "slow",
    }


def read_host_times(path: Path) -> tuple[dict[str, float], str]:
    """Host stage times from a file: `lic demo`'s demo.json (x86-measured by the host runtime), or
    {"source": "...", "ms_per_frame": {stage: ms}} (e.g. Cortex-A9 estimates)."""
    from lic.errors import LicError

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LicError(f"{path}: cannot read host stage times ({e})") from None
    if "ms_per_frame" in d and "source" in d:
        return {k: float(v) for k, v in d["ms_per_frame"].items()}, str(d["source"])
    board = d.get("board", {})
    if "model_high" in board:
        # `lic board-rate`'s ARM model: its ARM cores are the host pipeline stages, at the slow end
        # (every simulated cache miss stalling), as `lic bench`'s board rows take it (bench/fpga.py)
        ms = {core: 1000.0 * s for core, s in board["model_high"]["cores_s"].items()}
        return ms, (f"{d['arm']['core']}-modelled (llvm-mca {d['arm']['llvm_mcpu']} + simulated cache misses, every one "
                    f"stalling: the slow end of `lic board-rate`'s model) ({path})")
    if "seconds_cpi_high" in board:
        # an older `lic board-rate`'s estimate, instructions x CPI: the slow end of the CPI range
        if "cores_s" not in board["cpi_high"]:
            raise LicError(f"{path} was written by an older `lic board-rate`: run `make board-rate` again")
        ms = {core: 1000.0 * s for core, s in board["cpi_high"]["cores_s"].items()}
        # files without "arm" predate the A53 boards: PYNQ-Z2's A9 at CPI 1.0-2.0
        arm = d.get("arm") or {"core": "Cortex-A9", "cpi_assumed": [1.0, 2.0]}
        return ms, (f"{arm['core']}-estimated at CPI {arm['cpi_assumed'][1]:g}, the slow end of `lic board-rate`'s "
                    f"range ({path})")
    stages = d.get("decode_seconds_per_image", {}).get("student_stages")
    if not stages:
        raise LicError(f"{path}: neither `lic demo`'s demo.json nor {{\"source\", \"ms_per_frame\"}}")
    return host_stages_from_runtime(stages), (f"x86-measured by the host runtime ({path}: `lic demo`, mean of "
                                              f"{len(d.get('images', []))} images of {d.get('data', '?')})")


def _read(path):
    return json.loads(path.read_text()) if path.is_file() else {}


def compute_ceiling(final_model, layers: dict, board, macs_per_tile: float, n_tiles: int,
                    extra_luts: float = 0.0) -> dict:
    """extra_luts: LUTs outside FINN's layers that the budget also pays for (FIFOs: folding.infrastructure)."""
    from qonnx.custom_op.registry import getCustomOp

    from hls.finn_workarounds import rtl_mvu_lanes

    lut_lanes = dsp_lanes = 0
    lanes_per_dsp = min((rtl_mvu_lanes(getCustomOp(n), board.part) for n in final_model.graph.node
                         if n.op_type.startswith("MVAU")), default=1)
    lut_mvau_luts, other_luts = 0.0, float(extra_luts)
    for node in final_model.graph.node:
        lut = layers.get(node.name, {}).get("LUT", 0)
        if node.op_type.startswith("MVAU"):
            inst = getCustomOp(node)
            lanes = inst.get_nodeattr("PE") * inst.get_nodeattr("SIMD")
            if inst.get_nodeattr("resType") == "dsp":
                dsp_lanes += lanes
                other_luts += lut
            else:
                lut_lanes += lanes
                lut_mvau_luts += lut
        else:
            other_luts += lut
    lut_per_lane = lut_mvau_luts / lut_lanes if lut_lanes and lut_mvau_luts else None
    lut_lane_budget = max(0.0, board.limit("LUT") - other_luts) / lut_per_lane if lut_per_lane else 0.0
    peak = lut_lane_budget + board.limit("DSP") * lanes_per_dsp
    return {"macs_per_tile": macs_per_tile, "lut_mac_lanes": lut_lanes, "dsp_mac_lanes": dsp_lanes,
            "lut_per_mac_lane": lut_per_lane, "luts_not_multipliers": other_luts,
            "budget_lut_mac_lanes": lut_lane_budget, "budget_dsp_mac_lanes": board.limit("DSP") * lanes_per_dsp,
            "mac_lanes_per_dsp": lanes_per_dsp,
            "budget_macs_per_cycle": peak,
            "roofline_fps": peak * board.clock_hz / (macs_per_tile * n_tiles) if peak else None}


def summarise(b, host: tuple[dict[str, float], str] | None = None) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    board, report = b.board, b.out / "report"
    layers = _read(report / "estimate_layer_resources.json")
    total = layers.pop("total", {})
    perf = _read(report / "estimate_network_performance.json")
    folding = b.report["folding"]
    cycles = int(perf.get("max_cycles", folding["cycles_per_tile"]))
    n_tiles = folding["tiles_per_frame"]
    fabric_fps = board.clock_hz / (cycles * n_tiles)
    latency_cycles = perf.get("critical_path_cycles")

    macs_per_tile = b.package.manifest["student"]["kmac_per_pixel"] * 1000 * (b.tile * b.package.upscale) ** 2
    final = ModelWrapper(str(b.out / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    # what `make bitstream` adds around the layers (FIFOs, IODMAs), for the folding that was chosen
    from hls.folding import infrastructure, read_fifo_sizing

    infra = infrastructure(final, board, read_fifo_sizing(b.out))
    ceiling = compute_ceiling(final, layers, board, macs_per_tile, n_tiles, extra_luts=infra["LUT"])
    ceiling["macs_per_cycle"] = macs_per_tile / cycles
    ceiling["fraction_of_roofline"] = fabric_fps / ceiling["roofline_fps"] if ceiling["roofline_fps"] else None

    resources = {r: {"used": float(total.get(r, 0)), "available": board.resources.get(r, 0),
                     "fraction": float(total.get(r, 0)) / board.resources[r] if board.resources.get(r) else 0.0,
                     "fifos_and_iodmas": infra.get(r, 0.0),
                     "used_with_fifos_and_iodmas": float(total.get(r, 0)) + infra.get(r, 0.0),
                     "budget": board.budget.get(r), "limit_for_finn_layers": board.limit(r)}
                 for r in RESOURCES if r in total}  # FINN's analytical models give no FF estimate
    resources["LUT"]["margin_not_estimated_by_finn"] = {
        "fraction_of_device": board.lut_margin, "luts": board.lut_margin * board.resources["LUT"],
        "for": "data width converters, AXI interconnect, the IODMAs' logic, reset and clock logic, estimate "
               "error (assumed, not measured); FIFOs and the IODMAs' buffers are counted in fifos_and_iodmas"}
    resources["BRAM_18K"]["margin_not_estimated_by_finn"] = {
        "fraction_of_device": board.bram_margin, "bram_18k": board.bram_margin * board.resources["BRAM_18K"],
        "for": "error of FINN's per-layer BRAM estimates and of our FIFO/IODMA model (assumed, not measured)"}
    clock = f"{board.clock_hz / 1e6:g} MHz"
    timing = fabric_timing(b.out, n_tiles, board.clock_hz)
    rates = {
        "fabric_fps": {"fps": fabric_fps, "what": f"fabric steady state: FINN's estimated cycles of the slowest "
                                                  f"layer x {n_tiles} tiles per frame at the {clock} target clock; "
                                                  f"not timing-closed"},
        "tile_latency_ms": {"ms": timing["tile_latency_ms"],
                            "finn_upper_bound_ms": latency_cycles * 1e3 / board.clock_hz if latency_cycles else None,
                            "what": f"one tile in, its last output out, at {clock}: the slowest layer's cycles plus "
                                    f"each layer's first-output delay ({timing['cycles_source']}); FINN's own "
                                    f"figure (finn_upper_bound_ms) sums every layer's cycles as if none overlapped"},
        "board_fps": ({"fps": None, "what": "no host stage times given: run `lic demo`, or pass --host-times"}
                      if host is None else {**board_rate(fabric_fps, *host, fabric=timing),
                                            "what": "the slowest of the host pipeline stages and the fabric's batch "
                                                    "per frame (fill and drain included, host/runtime.py starts "
                                                    "one batch per frame)"}),
    }
    return {
        "board": board.name, "part": board.part, "clock_mhz": board.clock_hz / 1e6, "build_dir": str(b.out),
        "tile": b.tile, "halo": b.package.halo, "tiles_per_frame": n_tiles, "frame": list(board.frame),
        "target_fps": b.target_fps, "rates": rates, "fps_at_frame": fabric_fps, "cycles_per_tile": cycles,
        "latency_cycles_per_tile": latency_cycles,
        "limited_by": folding["limited_by"], "bottleneck_layer": folding["bottleneck_layer"],
        "fits_budget": all(v["used_with_fifos_and_iodmas"] <= board.limit(r) for r, v in resources.items()
                           if r in board.budget),
        "resources": resources, "fifos_and_iodmas": {k: infra[k] for k in ("fifos", "iodmas")},
        "roofline": ceiling,
        "per_layer": layers, "folding_attempts": folding["attempts"],
        "package": b.package.name, "student": b.package.manifest["student"],
        "verification": b.report.get("verification"), "layer_sim": b.report.get("layer_sim"),
        "make_hw_seconds": b.report.get("make_hw_seconds"), "step_seconds": b.report.get("step_seconds"),
    }
