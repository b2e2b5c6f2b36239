"""estimates.json: what `make hw` tells a user about the accelerator before any Vivado run.

From FINN's analytical estimates (report/estimate_layer_resources.json, estimate_network_
performance.json), three rates, each labelled with what it is:

  fabric_fps         steady-state frames per second of the fabric alone: FINN's cycles per tile of
                     the slowest layer x tiles per frame, at the board's target clock. Estimated,
                     not timing-closed (no Vivado run).
  tile_latency_ms    FINN's single-tile latency estimate (critical path cycles, summed over its
                     layers) at the target clock.
  board_fps          min(fabric, each host pipeline stage): the board's frame rate, from host stage
                     times that say where they come from (x86-measured or A9-estimated).

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


def board_rate(fabric_fps: float, host_ms: dict[str, float], source: str) -> dict:
    """The board's frames per second: the slowest of the fabric and the host pipeline stages.

    host_ms: ms per frame of each host stage that runs concurrently with the others and with the
    fabric; source: what those times are, e.g. "x86-measured (make demo, 1 core)" or
    "Cortex-A9-estimated (...)"."""
    rates = {"fabric": fabric_fps, **{k: 1000.0 / v for k, v in host_ms.items() if v > 0}}
    slowest = min(rates, key=rates.get)
    return {"fps": rates[slowest], "limited_by": slowest, "host_ms_per_frame": dict(host_ms),
            "host_times_source": source}


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
    rates = {
        "fabric_fps": {"fps": fabric_fps, "what": f"fabric steady state: FINN's estimated cycles of the slowest "
                                                  f"layer x {n_tiles} tiles per frame at the {clock} target clock; "
                                                  f"not timing-closed"},
        "tile_latency_ms": {"ms": latency_cycles * 1e3 / board.clock_hz if latency_cycles else None,
                            "what": f"FINN's single-tile latency estimate at {clock}: the cycles of the layers on "
                                    f"the critical path, summed (layers overlap when streaming, so the fabric's "
                                    f"latency is lower)"},
        "board_fps": ({"fps": None, "what": "no host stage times given: run `lic demo`, or pass --host-times"}
                      if host is None else {**board_rate(fabric_fps, *host),
                                            "what": "min(fabric, host pipeline stages)"}),
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
        "verification": b.report.get("verification"), "cppsim": b.report.get("cppsim"),
        "make_hw_seconds": b.report.get("make_hw_seconds"), "step_seconds": b.report.get("step_seconds"),
    }
