"""Would the integer h_s fit on the fabric beside the g_s? FINN's own analytical resource models
(the ones `make hw` reports) applied to the h_s's layers, folded just enough for the board's frame
rate, added to the g_s's estimates.json.

The h_s is not built through FINN here: this instantiates FINN's HW custom ops with the h_s's layer
shapes and data types (ConvolutionInputGenerator_rtl for each 3x3 window, MVAU_hls with its
thresholds for each conv, UpsampleNearestNeighbour_hls) and calls their lut/bram/dsp_estimation,
as FINN's generate_estimate_reports step does for a built graph. FIFOs and data-width converters
are not counted (FINN's estimates leave them out for the g_s too), so these are lower bounds, and
the two together are held to the same limit `make hw` holds the g_s to: the board's budget less the
LUT margin kept for what FINN does not estimate (estimates.json's `limit_for_finn_layers`).

    python -m bench.hs_fabric [--estimates fpga_projects/pynq-z2/build/estimates.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from host.decode_cli import default_package
from host.decoder_package import DecoderPackage
from host.integer_hyper import IntegerHyperSynthesis
from lic.errors import LicError

HS_DOMAIN = "finn.custom_op.fpgadataflow"


def _node(op_type: str, impl: str, **attrs):
    # why: qonnx's registry and FINN's set_folding load FINN, after run()'s prepare_finn_import
    from onnx import helper
    from qonnx.custom_op.registry import getCustomOp

    node = helper.make_node(f"{op_type}_{impl}", ["in0"] + (["w", "t"] if op_type == "MVAU" else []), ["out0"],
                            domain=f"{HS_DOMAIN}.{impl}", backend="fpgadataflow", **attrs)
    return getCustomOp(node)


def _smallest_fold(total_cycles: float, budget_cycles: float, limit: int) -> int:
    for n in range(1, limit + 1):
        if limit % n == 0 and total_cycles / n <= budget_cycles:
            return n
    return limit


def hs_layers(hs: IntegerHyperSynthesis, z_hw: tuple[int, int], cycles_budget: float) -> list[dict]:
    """FINN estimates for each h_s layer at input z size z_hw, folded to cycles_budget per frame.
    Thresholds and the windows' line buffers in block RAM (cheapest in LUTs, as `make hw` puts the
    g_s's line buffers when its LUTs run short); weights in LUTRAM when small, as FINN decides."""
    from finn.transformation.fpgadataflow.set_folding import divisors  # why: FINN, after prepare_finn_import

    part = "xc7z020clg400-1"
    h, w = z_hw
    in_bits, in_type = hs.input_bits, f"INT{hs.input_bits}"
    rows = []
    for n, layer in enumerate(hs.layers):
        o, i, k, _ = layer.weight.shape
        if layer.upsample_before:
            up = _node("UpsampleNearestNeighbour", "hls", HO=2 * h, WO=2 * w, HI=h, WI=w, NumChannels=i,
                       SIMD=1, inputDataType=in_type)
            rows.append({"layer": f"upsample{n}", "LUT": up.lut_estimation(part),
                         "BRAM_18K": up.bram_estimation(part), "DSP": 0, "cycles": up.get_exp_cycles()})
            h, w = 2 * h, 2 * w
        n_thr = layer.thresholds.shape[1]
        out_bits = math.ceil(math.log2(n_thr + 1))
        out_type = f"UINT{out_bits}"
        mw = i * k * k
        fold = _smallest_fold(h * w * mw * o, cycles_budget, mw * o)
        # split the fold over SIMD (a divisor of the input channels, as the window generator needs)
        # and PE (a divisor of the output channels)
        simd = max(d for d in divisors(i) if d <= fold)
        pe = max(1, math.ceil(fold / simd))
        while o % pe:
            pe += 1
        if k > 1:
            swg = _node("ConvolutionInputGenerator", "rtl", ConvKernelDim=[k, k], IFMChannels=i, IFMDim=[h, w],
                        OFMDim=[h, w], SIMD=min(simd, i), Stride=[1, 1], Dilation=[1, 1], inputDataType=in_type,
                        outputDataType=in_type, M=1, parallel_window=0, ram_style="block")
            rows.append({"layer": f"swg{n}", "LUT": swg.lut_estimation(part), "BRAM_18K": swg.bram_estimation(part),
                         "DSP": 0, "cycles": None})
        mvau = _node("MVAU", "hls", MW=mw, MH=o, SIMD=simd, PE=pe, inputDataType=in_type, weightDataType="INT8",
                     outputDataType=out_type, ActVal=0, binaryXnorMode=0, noActivation=0,
                     numInputVectors=[1, h, w], mem_mode="internal_decoupled", ram_style="auto",
                     ram_style_thresholds="block", resType="lut", accDataType="INT32")
        rows.append({"layer": f"mvau{n} ({i}->{o}, k{k}, {h}x{w}, SIMD {simd} PE {pe})",
                     "LUT": mvau.lut_estimation(part), "BRAM_18K": mvau.bram_estimation(part),
                     "DSP": mvau.dsp_estimation(part), "cycles": h * w * mw * o / (simd * pe)})
        in_bits, in_type = out_bits, out_type
    return rows


def run(args) -> dict:
    from hls.finn_workarounds import prepare_finn_import  # why: loads qonnx; must run before FINN is imported

    prepare_finn_import()
    if not args.estimates.is_file():
        raise LicError(f"{args.estimates} not found: run `make hw` first (the g_s's estimates)")
    gs = json.loads(args.estimates.read_text())
    package = DecoderPackage.load(args.package, verify=False)
    fw, fh = gs["frame"]
    latent = (fh // package.upscale, fw // package.upscale)
    z_hw = (latent[0] // 4, latent[1] // 4)
    budget = gs["clock_mhz"] * 1e6 / max(gs["target_fps"] or 25, 1)
    rows = hs_layers(package.integer_hs, z_hw, budget)
    total = {r: sum(x[r] for x in rows) for r in ("LUT", "BRAM_18K", "DSP")}
    both = {}
    for r in ("LUT", "BRAM_18K", "DSP"):
        g = gs["resources"].get(r, {})
        # the g_s with its FIFOs and IODMAs where estimates.json counts them (hls/folding.py infrastructure)
        g_used = g.get("used_with_fifos_and_iodmas", g.get("used", 0))
        used = g_used + total[r]
        both[r] = {"g_s": g_used, "h_s": total[r], "together": used, "available": g.get("available"),
                   "fraction": used / g["available"] if g.get("available") else None, "budget": g.get("budget"),
                   "limit_for_finn_layers": g.get("limit_for_finn_layers")}
    fits = all(v["limit_for_finn_layers"] is None or v["together"] <= v["limit_for_finn_layers"] for v in both.values())
    result = {"board": gs["board"], "frame": gs["frame"], "z": list(z_hw), "cycles_budget_per_frame": budget,
              "h_s_layers": rows, "h_s_total": total, "g_s_plus_h_s": both, "fits_budget": fits}
    print(f"h_s on {gs['board']} fabric, FINN analytical estimates, z {z_hw[0]}x{z_hw[1]} "
          f"(frame {fw}x{fh}), folded for {budget / 1e6:.1f} M cycles per frame:")
    for r in rows:
        print(f"  {r['layer']:<44} LUT {r['LUT']:>6}  BRAM18 {r['BRAM_18K']:>3}  DSP {r['DSP']:>3}")
    for r, v in both.items():
        pct = f"{100 * v['fraction']:.1f}%" if v["fraction"] is not None else "-"
        print(f"  {r:<9} g_s {v['g_s']:>7.0f} + h_s {v['h_s']:>6.0f} = {v['together']:>7.0f} of {v['available']} "
              f"({pct}; FINN's layers may use {v['limit_for_finn_layers']:.0f})")
    print(f"fits the {gs['board']} budget beside the g_s: {fits}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--estimates", type=Path, default=Path("fpga_projects/pynq-z2/build/estimates.json"))
    p.add_argument("--package", type=Path, default=None, help="decoder package (default: the shipped one)")
    p.add_argument("-o", "--out", type=Path, default=None, help="write the numbers as JSON")
    args = p.parse_args()
    args.package = args.package or default_package()
    run(args)


if __name__ == "__main__":
    main()
