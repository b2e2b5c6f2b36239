"""Folding: PE/SIMD per layer so the accelerator decodes the board's frame at TARGET_FPS, within
the board's resource budget.

A frame of W x H pixels is decoded as the tiles host/tiling.py cuts it into, so the accelerator
must finish one tile in  clock / (fps x tiles per frame)  cycles. FINN's SetFolding raises each
layer's parallelism until it meets that cycle target; if the folded design then exceeds the budget
(LUT, BRAM, DSP as FINN estimates them), the line buffers and thresholds move from LUTRAM to block
RAM while the BRAM budget lasts, then the MVAUs that save the most LUTs within the DSP budget move
from HLS (LUT multipliers) to FINN's RTL MVU (DSP48s, several PEs per DSP), and only then is the
target lowered in 10% steps until it fits, then raised again by bisection towards the last step
that did not fit. The report says what limited the
result: the budget (which resource) or a layer at full parallelism.

Budget: FINN's layer estimates plus what FINN does not estimate before `make bitstream` inserts it,
the FIFOs between layers and the two IODMAs (infrastructure(); FINN's own FIFO sizing result,
report/fifo_sizing.json, where an earlier `make bitstream` wrote one), against the board's budget less
its LUT and BRAM margins (hls/boards.py).

SetFolding's two-pass relaxation is off: it relaxes every layer to the slowest one's cycles, and in
finn-plus 1.6.1 the slowest is always an unfolded upsample (see hls/finn_workarounds.py), which is folded
only afterwards.
"""

from __future__ import annotations

import copy

import numpy as np

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


# FIFO depth where nothing measured one (the model infrastructure() states):
SHALLOW_FIFO_DEPTH = 32   # fifo.sv builds depths <= 33 as a shift register, one SRLC32E per bit: 2..32 cost the same
# Vitis HLS's m_axi adapter buffers num_*_outstanding x max_*_burst_length words of the AXI port per used
# channel; FINN's IODMA sets neither, so the defaults hold (UG1399, "m_axi" interface: 16 and 16)
IODMA_BUFFER_WORDS = 16 * 16
IODMAS = 2  # input and output; the weights are inside the accelerator (no external-weight IODMA)


def _fifo_cost(depth: int, width: int, has_uram: bool):
    from finn.util.resource_models import _fifo_cost as finn_fifo_cost, _resolve

    style = _resolve(depth, width, "auto")
    if style == "ultra" and not has_uram:
        style = "block"  # Vivado backs a URAM request with BRAM where the part has none (resource_models._resolve)
    return finn_fifo_cost(depth, width, style), style


def infrastructure(model, board, fifo_sizing: dict | None = None) -> dict:
    """LUTs and BRAM18 of what `make bitstream` adds around FINN's layers, which FINN's layer estimates
    do not count: the FIFOs between layers and the two IODMAs.

    FIFOs: FINN's sizing result (report/fifo_sizing.json of an earlier `make bitstream`: depth and size
    per FIFO) when given, each priced by FINN's own fifo.sv cost model (finn.util.resource_models);
    otherwise this model, a stated assumption: the stream into a nearest-neighbour upsample gets a FIFO
    of one input row (finn-hlslib's UpsampleNearestNeighbour reads an input row only on every
    scale-th output row and repeats it from its row buffer in between, reading nothing, which stalls
    its producer for about one input row), every other stream SHALLOW_FIFO_DEPTH words, all at the
    producer's stream width.
    IODMAs: finn-plus has no resource estimate for IODMA_hls (it returns 0); each one's m_axi buffer is
    IODMA_BUFFER_WORDS words of the board's AXI port width (FINN's pynq_native_port_width), in RAMB18s
    as 512 x 36; their LUTs stay in the LUT margin."""
    import math

    from finn.util.basic import pynq_native_port_width
    from qonnx.custom_op.registry import getCustomOp

    has_uram = board.resources.get("URAM", 0) > 0
    fifos = []
    if fifo_sizing:
        for name, depth in fifo_sizing.get("fifo_depths", {}).items():
            width = -(-int(fifo_sizing["fifo_sizes"][name] // max(depth, 1)) // 8) * 8
            cost, style = _fifo_cost(int(depth), width, has_uram)
            fifos.append({"fifo": name, "depth": int(depth), "width": width, "style": style,
                          "LUT": cost.lut, "BRAM_18K": cost.bram, "URAM": cost.uram})
        source = "FINN's FIFO sizing of an earlier make bitstream (report/fifo_sizing.json)"
    else:
        for node in model.graph.node:
            consumer = model.find_consumer(node.output[0])
            if consumer is None:
                continue
            inst = getCustomOp(node)
            width = inst.get_outstream_width_padded()
            folded = inst.get_folded_output_shape()
            row = consumer.op_type.startswith("UpsampleNearestNeighbour")
            depth = int(np.prod(folded[2:-1])) if row else SHALLOW_FIFO_DEPTH
            cost, style = _fifo_cost(depth, width, has_uram)
            fifos.append({"fifo": f"{node.name} -> {consumer.name}", "depth": depth, "width": width, "style": style,
                          "LUT": cost.lut, "BRAM_18K": cost.bram, "URAM": cost.uram})
        source = ("model (no FIFO sizing yet): one input row before each upsample, "
                  f"{SHALLOW_FIFO_DEPTH} words elsewhere, priced by FINN's fifo.sv cost model")
    port = pynq_native_port_width.get(getattr(board, "finn_board", ""), 64)
    iodma_bram = math.ceil(IODMA_BUFFER_WORDS / 512) * math.ceil(port / 36)
    return {"LUT": float(sum(f["LUT"] for f in fifos)),
            "BRAM_18K": float(sum(f["BRAM_18K"] for f in fifos) + IODMAS * iodma_bram), "DSP": 0.0,
            # deep FIFOs go to URAM where the part has it (ZCU104, KV260); no budget is set for URAM
            "URAM": float(sum(f["URAM"] for f in fifos)),
            "fifos": {"source": source, "LUT": sum(f["LUT"] for f in fifos),
                      "BRAM_18K": sum(f["BRAM_18K"] for f in fifos), "URAM": sum(f["URAM"] for f in fifos),
                      "per_fifo": fifos},
            "iodmas": {"count": IODMAS, "BRAM_18K_each": iodma_bram, "axi_port_bits": port,
                       "source": f"{IODMA_BUFFER_WORDS}-word m_axi buffer (Vitis HLS defaults, UG1399) of the "
                                 f"{port}-bit AXI port, as 512 x 36 RAMB18s; LUTs in the LUT margin"}}


def estimate(model, part: str, board=None) -> tuple[dict[str, float], dict]:
    """Resource totals and FINN's performance analysis; with a board (one of hls/boards.py), the totals
    include infrastructure() (FIFOs, IODMAs), which is what the budget is checked against."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.analysis.fpgadataflow.res_estimation import res_estimation
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    per_layer = model.analysis(lambda m: res_estimation(m, part))
    totals = {r: float(sum(layer.get(r, 0) for layer in per_layer.values())) for r in RESOURCES}
    if getattr(board, "finn_board", None):
        extra = infrastructure(model, board, getattr(board, "fifo_sizing", None))
        totals = {r: totals[r] + extra[r] for r in RESOURCES}
    perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    return totals, perf


def _lut_memories(model) -> list[tuple[object, dict, dict]]:
    """(layer, attributes in LUTRAM, attributes in block RAM) of every memory still in LUTRAM: the
    sliding windows' line buffers (FINN's default ram_style "distributed", estimated at one LUT per
    38 bits of depth per bit of width) and the thresholds of the standalone Thresholding layers
    (depth_trigger_bram 0 leaves every search stage in LUTRAM; 1 puts all in block RAM)."""
    from qonnx.custom_op.registry import getCustomOp

    found = []
    for node in model.graph.node:
        inst = getCustomOp(node)
        if node.op_type.startswith("ConvolutionInputGenerator") and inst.get_nodeattr("ram_style") == "distributed":
            found.append((inst, {"ram_style": "distributed"}, {"ram_style": "block"}))
        elif node.op_type == "Thresholding_rtl" and inst.get_nodeattr("depth_trigger_bram") == 0:
            found.append((inst, {"depth_trigger_bram": 0, "depth_trigger_uram": 0},
                          {"depth_trigger_bram": 1, "depth_trigger_uram": 2 ** 30}))  # 7-series: no URAM
    return found


def _set(inst, attrs: dict) -> None:
    for name, value in attrs.items():
        inst.set_nodeattr(name, value)


def move_memories_to_bram(model, board, totals, perf):
    """LUTs over budget: move LUTRAM memories (_lut_memories) to block RAM, which this design barely
    uses, the most LUTs saved per BRAM first, while the BRAM budget lasts and the LUTs are over theirs."""
    candidates = _lut_memories(model)
    while totals["LUT"] > board.limit("LUT") and candidates:
        best = None
        for cand in candidates:
            inst, in_lut, in_bram = cand
            _set(inst, in_bram)
            new_totals, new_perf = estimate(model, board.part, board)
            _set(inst, in_lut)
            saved, bram = totals["LUT"] - new_totals["LUT"], new_totals["BRAM_18K"] - totals["BRAM_18K"]
            if new_totals["BRAM_18K"] > board.limit("BRAM_18K") or saved <= 0:
                continue
            per_bram = saved / max(bram, 0.5)  # a memory FINN puts in no BRAM counts as half of one
            if best is None or per_bram > best[0]:
                best = (per_bram, cand, new_totals, new_perf)
        if best is None:
            break
        _, cand, totals, perf = best
        _set(cand[0], cand[2])
        candidates.remove(cand)
    return totals, perf


def _dsp_fold(inst, part: str, wwidth_max: int) -> tuple[int, int]:
    """(PE, SIMD) of an RTL MVU with the fewest DSPs at no more cycles than its present folding: the
    RTL packs rtl_mvu_lanes PEs into each DSP, so PEs come in multiples of that where they can."""
    from finn.transformation.fpgadataflow.set_folding import divisors

    from hls.finn_workarounds import rtl_mvu_lanes

    mh, mw = inst.get_nodeattr("MH"), inst.get_nodeattr("MW")
    fold = (mh // inst.get_nodeattr("PE")) * (mw // inst.get_nodeattr("SIMD"))
    lanes, wbits = rtl_mvu_lanes(inst, part), inst.get_input_datatype(1).bitwidth()
    options = [(-(-pe // lanes) * simd, pe * simd, pe, simd) for pe in divisors(mh) for simd in divisors(mw)
               if (mh // pe) * (mw // simd) <= fold and simd * wbits <= wwidth_max]
    _, _, pe, simd = min(options)
    return pe, simd


def _implement(node, style: str) -> None:
    node.op_type = f"MVAU_{style}"
    node.domain = f"finn.custom_op.fpgadataflow.{style}"


def move_multipliers_to_dsp(model, board, totals, perf):
    """LUTs over budget: re-implement MVAUs as FINN's RTL MVU, whose multipliers are DSP48s, each
    computing several PEs at once (W4 x A8: 2), refolded for the fewest DSPs at no more cycles
    (_dsp_fold). Of the MVAUs FINN can run in RTL (narrow-range signed weights, standalone
    thresholds, operand widths within the DSP's), the set that saves the most LUTs within the DSP
    and BRAM budgets moves: DSPs left idle buy nothing, LUTs left free are margin for what FINN's
    estimates leave out. Layer estimates add up, so each MVAU is priced once and the sets are
    compared by arithmetic."""
    from itertools import combinations

    from finn.transformation.fpgadataflow.specialize_layers import _mvu_rtl_possible
    from qonnx.custom_op.registry import getCustomOp

    def cost(inst):
        return (inst.lut_estimation(board.part), inst.dsp_estimation(board.part), inst.bram_estimation(board.part))

    moves = []  # (node, RTL attributes, LUTs saved, DSPs, BRAMs added)
    for node in [n for n in model.graph.node if n.op_type == "MVAU_hls"]:
        if not _mvu_rtl_possible(node, board.part, model):
            continue
        hls = getCustomOp(node)
        before, as_hls = {a: hls.get_nodeattr(a) for a in ("PE", "SIMD", "resType")}, cost(hls)
        _implement(node, "rtl")
        rtl = getCustomOp(node)
        pe, simd = _dsp_fold(rtl, board.part, board.mvau_wwidth_max)
        after = {"PE": pe, "SIMD": simd, "resType": "dsp"}
        _set(rtl, after)
        as_rtl = cost(rtl)
        _implement(node, "hls")
        _set(getCustomOp(node), before)
        moves.append((node, after, as_hls[0] - as_rtl[0], as_rtl[1] - as_hls[1], as_rtl[2] - as_hls[2]))
    dsp_left, bram_left = board.limit("DSP") - totals["DSP"], board.limit("BRAM_18K") - totals["BRAM_18K"]
    best, best_key = (), None
    for k in range(1, len(moves) + 1):
        for subset in combinations(moves, k):
            saved, dsp, bram = (sum(m[i] for m in subset) for i in (2, 3, 4))
            if dsp > dsp_left or bram > bram_left or saved <= 0:
                continue
            key = (-saved, dsp)
            if best_key is None or key < best_key:
                best, best_key = subset, key
    if not best:
        return totals, perf
    for node, after, *_ in best:
        _implement(node, "rtl")
        _set(getCustomOp(node), after)
    return estimate(model, board.part, board)


def read_fifo_sizing(out) -> dict | None:
    """FINN's FIFO sizing result of an earlier `make bitstream` in this build folder, if any."""
    import json
    from pathlib import Path

    path = Path(out) / "report" / "fifo_sizing.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fold(model, build) -> tuple[object, dict]:
    # the board, with the FIFO depths FINN measured here before (if any) for infrastructure()
    board = copy.copy(build.board)
    board.fifo_sizing = read_fifo_sizing(build.out) if getattr(build, "out", None) else None
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
    budget, memories moved to block RAM and then multipliers to DSPs."""
    from finn.transformation.fpgadataflow.set_folding import SetFolding
    from qonnx.transformation.general import GiveUniqueNodeNames

    folded = copy.deepcopy(model).transform(SetFolding(target_cycles, mvau_wwidth_max=board.mvau_wwidth_max,
                                                       two_pass_relaxation=False))
    folded = fold_upsample_layers(folded, target_cycles).transform(GiveUniqueNodeNames())
    totals, perf = estimate(folded, board.part, board)
    if totals["LUT"] > board.limit("LUT"):
        totals, perf = move_memories_to_bram(folded, board, totals, perf)
    if totals["LUT"] > board.limit("LUT"):
        totals, perf = move_multipliers_to_dsp(folded, board, totals, perf)
    return folded, totals, perf
