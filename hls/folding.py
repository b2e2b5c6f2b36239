"""Folding: PE/SIMD per layer so the accelerator decodes the board's frame at TARGET_FPS, within
the board's resource budget.

A frame of W x H pixels is decoded as the tiles host/tiling.py cuts it into, so the accelerator
must finish one tile in  clock / (fps x tiles per frame)  cycles. FINN's SetFolding raises each
layer's parallelism until it meets that cycle target; if the folded design then exceeds the budget
(LUT, BRAM, DSP as FINN estimates them), the sliding windows' line buffers move from LUTRAM to block
RAM while the BRAM budget lasts, then the widest MVAUs move their multipliers from LUTs to DSPs
while the DSP budget lasts, and only then is the target lowered in 10% steps until it fits, then
raised again by bisection towards the last step that did not fit. The report says what limited the
result: the budget (which resource) or a layer at full parallelism.

SetFolding's two-pass relaxation is off: it relaxes every layer to the slowest one's cycles, and in
finn-plus 1.6.1 the slowest is always an unfolded upsample (see hls/finn_workarounds.py), which is folded
only afterwards.
"""

from __future__ import annotations

import copy

from hls.finn_workarounds import fold_upsample_layers
from host.tiling import TilePlan
from lic.errors import LicError

RESOURCES = ("LUT", "BRAM_18K", "DSP")
BACKOFF = 0.9
MAX_TRIES = 60
REFINE_STEPS = 4  # bisection steps between the last target over budget and the first that fits


def tiles_per_frame(frame: tuple[int, int], tile: int, halo: int, upscale: int = 16, multiple: int = 64) -> int:
    w, h = frame
    hp, wp = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    return len(TilePlan(hp // upscale, wp // upscale, tile, halo).windows())


def estimate(model, part: str) -> tuple[dict[str, float], dict]:
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    per_layer = model.analysis(lambda m: res_estimation(m, part))
    totals = {r: float(sum(layer.get(r, 0) for layer in per_layer.values())) for r in RESOURCES}
    perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    return totals, perf


def move_line_buffers_to_bram(model, board, totals, perf):
    """LUTs over budget: move the sliding-window generators' line buffers from LUTRAM (FINN's
    default ram_style "distributed", which FINN estimates at one LUT per 38 bits of depth per bit of
    width) to block RAM, which this design barely uses, the most LUTs saved per BRAM first, while
    the BRAM budget lasts and the LUTs are over theirs."""
    from qonnx.custom_op.registry import getCustomOp

    candidates = [getCustomOp(n) for n in model.graph.node if n.op_type.startswith("ConvolutionInputGenerator")]
    candidates = [c for c in candidates if c.get_nodeattr("ram_style") == "distributed"]
    while totals["LUT"] > board.limit("LUT") and candidates:
        best = None
        for inst in candidates:
            inst.set_nodeattr("ram_style", "block")
            new_totals, new_perf = estimate(model, board.part)
            inst.set_nodeattr("ram_style", "distributed")
            saved, bram = totals["LUT"] - new_totals["LUT"], new_totals["BRAM_18K"] - totals["BRAM_18K"]
            if new_totals["BRAM_18K"] > board.limit("BRAM_18K") or saved <= 0:
                continue
            per_bram = saved / max(bram, 0.5)  # a buffer FINN puts in no BRAM counts as half of one
            if best is None or per_bram > best[0]:
                best = (per_bram, inst, new_totals, new_perf)
        if best is None:
            break
        _, inst, totals, perf = best
        inst.set_nodeattr("ram_style", "block")
        candidates.remove(inst)
    return totals, perf


def move_multipliers_to_dsp(model, board, totals, perf):
    """LUTs over budget: give the widest MVAUs DSP multipliers (HLS resType "dsp", one DSP per MAC
    lane at these bit widths) while the DSP budget lasts, widest first, until the LUTs fit."""
    from qonnx.custom_op.registry import getCustomOp

    mvaus = sorted((getCustomOp(n) for n in model.graph.node if n.op_type == "MVAU_hls"),
                   key=lambda m: -m.get_nodeattr("PE") * m.get_nodeattr("SIMD"))
    for inst in mvaus:
        if totals["LUT"] <= board.limit("LUT"):
            break
        if inst.get_nodeattr("resType") == "dsp":
            continue
        inst.set_nodeattr("resType", "dsp")
        new_totals, new_perf = estimate(model, board.part)
        if new_totals["DSP"] > board.limit("DSP"):
            inst.set_nodeattr("resType", "lut")
            continue
        totals, perf = new_totals, new_perf
    return totals, perf


def fold(model, build) -> tuple[object, dict]:
    board = build.board
    n_tiles = tiles_per_frame(board.frame, build.tile, build.package.halo, build.package.upscale)
    tried: list[dict] = []

    def attempt(fps: float):
        target_cycles = max(1, int(board.clock_hz / (fps * n_tiles)))
        folded, totals, perf = _fold_at(model, board, target_cycles)
        over = [r for r in RESOURCES if totals[r] > board.limit(r)]
        achieved = board.clock_hz / (perf["max_cycles"] * n_tiles)
        tried.append({"target_fps": round(fps, 2), "target_cycles_per_tile": target_cycles,
                      "max_cycles": int(perf["max_cycles"]), "fps": round(achieved, 2),
                      **{r: round(totals[r]) for r in RESOURCES}, "over_budget": over})
        return (folded, perf, target_cycles) if not over else None

    fps, fit = float(build.target_fps), None
    for _ in range(MAX_TRIES):
        fit = attempt(fps)
        if fit:
            break
        fps *= BACKOFF
    if fit is None:
        raise LicError(f"no folding of this student fits {board.name}'s budget even at {fps / BACKOFF:.3f} fps "
                       f"(last try over budget in {', '.join(tried[-1]['over_budget'])}); choose a smaller student")
    if fps < build.target_fps:
        # The 10% steps skip whatever fits between the last target over budget and this one: bisect it.
        lo, hi = fps, fps / BACKOFF
        for _ in range(REFINE_STEPS):
            mid = (lo + hi) / 2
            better = attempt(mid)
            if not better:
                hi = mid
                continue
            lo = mid
            if better[1]["max_cycles"] < fit[1]["max_cycles"]:
                fit = better
    folded, perf, target_cycles = fit
    if perf["max_cycles"] > target_cycles:
        limited_by = f"layer {perf['max_cycles_node_name']} at full parallelism"
    elif tried[0]["over_budget"]:
        limited_by = "resource budget: " + ", ".join(tried[0]["over_budget"])
    else:
        limited_by = "target fps reached"
    return folded, {"tiles_per_frame": n_tiles, "target_fps": build.target_fps,
                    "fps": board.clock_hz / (perf["max_cycles"] * n_tiles), "limited_by": limited_by,
                    "bottleneck_layer": perf["max_cycles_node_name"], "cycles_per_tile": int(perf["max_cycles"]),
                    "attempts": tried}


def _fold_at(model, board, target_cycles: int):
    """(folded model, resource totals, performance) for one cycle target; if the LUTs are over
    budget, line buffers moved to block RAM and then multipliers to DSPs."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from qonnx.transformation.general import GiveUniqueNodeNames

    folded = copy.deepcopy(model).transform(SetFolding(target_cycles, mvau_wwidth_max=board.mvau_wwidth_max,
                                                       two_pass_relaxation=False))
    folded = fold_upsample_layers(folded, target_cycles).transform(GiveUniqueNodeNames())
    totals, perf = estimate(folded, board.part)
    if totals["LUT"] > board.limit("LUT"):
        totals, perf = move_line_buffers_to_bram(folded, board, totals, perf)
    if totals["LUT"] > board.limit("LUT"):
        totals, perf = move_multipliers_to_dsp(folded, board, totals, perf)
    return folded, totals, perf
