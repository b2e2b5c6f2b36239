"""estimates.json: what `make hw` tells a user about the accelerator before any Vivado run.

From FINN's analytical estimates (report/estimate_layer_resources.json, estimate_network_
performance.json): resources and their share of the device, cycles per tile, fps for the board's
frame at the board clock, and a roofline: the MACs per cycle the folded design does against the
MACs per cycle the budget could buy at the same cost per MAC lane (LUT lanes + one per DSP).
"""

from __future__ import annotations

import json

RESOURCES = ("LUT", "FF", "BRAM_18K", "DSP", "URAM")


def _read(path):
    return json.loads(path.read_text()) if path.is_file() else {}


def summarise(b) -> dict:
    board, report = b.board, b.out / "report"
    layers = _read(report / "estimate_layer_resources.json")
    total = layers.pop("total", {})
    perf = _read(report / "estimate_network_performance.json")
    folding = b.report["folding"]
    cycles = int(perf.get("max_cycles", folding["cycles_per_tile"]))
    n_tiles = folding["tiles_per_frame"]
    fps = board.clock_hz / (cycles * n_tiles)

    macs_per_tile = b.package.manifest["student"]["kmac_per_pixel"] * 1000 * (b.tile * b.package.upscale) ** 2
    lanes, mvau_lut, mvau_dsp = 0, 0.0, 0.0
    from qonnx.custom_op.registry import getCustomOp

    from qonnx.core.modelwrapper import ModelWrapper
    final = ModelWrapper(str(b.out / "intermediate_models" / "hw_codegen.onnx"))
    for node in final.graph.node:
        if node.op_type.startswith("MVAU"):
            inst = getCustomOp(node)
            lanes += inst.get_nodeattr("PE") * inst.get_nodeattr("SIMD")
            mvau_lut += layers.get(node.name, {}).get("LUT", 0)
            mvau_dsp += layers.get(node.name, {}).get("DSP", 0)
    achieved = macs_per_tile / cycles
    lut_per_lane = mvau_lut / lanes if lanes and mvau_lut else None
    peak = (board.limit("LUT") / lut_per_lane if lut_per_lane else 0) + board.limit("DSP")
    roofline_fps = peak * board.clock_hz / (macs_per_tile * n_tiles) if peak else None
    resources = {r: {"used": float(total.get(r, 0)), "available": board.resources.get(r, 0),
                     "fraction": float(total.get(r, 0)) / board.resources[r] if board.resources.get(r) else 0.0,
                     "budget": board.budget.get(r)}
                 for r in RESOURCES if r in total}  # FINN's analytical models give no FF estimate
    return {
        "board": board.name, "part": board.part, "clock_mhz": board.clock_hz / 1e6, "build_dir": str(b.out),
        "tile": b.tile, "halo": b.package.halo, "tiles_per_frame": n_tiles, "frame": list(board.frame),
        "target_fps": b.target_fps, "fps_at_frame": fps, "cycles_per_tile": cycles,
        "latency_cycles_per_tile": perf.get("critical_path_cycles"),
        "limited_by": folding["limited_by"], "bottleneck_layer": folding["bottleneck_layer"],
        "fits_budget": all(v["used"] <= board.limit(r) for r, v in resources.items() if r in board.budget),
        "resources": resources,
        "roofline": {"macs_per_tile": macs_per_tile, "mac_lanes": lanes, "macs_per_cycle": achieved,
                     "lut_per_mac_lane": lut_per_lane, "budget_macs_per_cycle": peak, "roofline_fps": roofline_fps,
                     "fraction_of_roofline": fps / roofline_fps if roofline_fps else None},
        "per_layer": layers, "folding_attempts": folding["attempts"],
        "package": b.package.name, "student": b.package.manifest["student"],
        "verification": b.report.get("verification"), "cppsim": b.report.get("cppsim"),
        "make_hw_seconds": b.report.get("make_hw_seconds"), "step_seconds": b.report.get("step_seconds"),
    }
