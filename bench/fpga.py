"""Estimated FPGA rows of `lic bench`, from `make hw`'s estimates.json per board.

Two rows per board and frame size, both for the quantised student (the only decoder the fabric runs):
  fpga-fabric  the synthesis alone: steady-state rate of the FINN dataflow pipeline, one tile per
               initiation interval (FINN's max cycles per layer), every tile of the frame counted with
               its halo, at the board clock (not timing-closed: no Vivado run)
  fpga-board   the whole decode: the slowest of the fabric and the ARM stages (parse, rANS z, h_s,
               rANS y, stitch). The ARM stages come from an ARM estimate or board measurement
               through `arm_stages()`; until one exists the board rate is unknown (null).
Power, in order of preference: a board measurement (--board-watts: an external meter, or PYNQ's
rails on a ZCU104/KV260), Vivado report_power of a routed design in the build folder, else the
resource model in bench/data/fpga_power_model.json (labelled estimated, its assumptions stated).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from board import rate as board_rate
from hls.boards import load_board
from hls.folding import tiles_per_frame
from lic.errors import LicError

POWER_MODEL = Path(__file__).resolve().parent / "data" / "fpga_power_model.json"
ARM_STAGES_FILE = "arm_stages.json"
ARM_STAGE_NAMES = ("parse", "rans_z", "h_s", "rans_y", "stitch")


def estimates_path(board: str) -> Path:
    return load_board(board).folder / "build" / "estimates.json"


def load_estimates(board: str, package) -> dict | None:
    """estimates.json of `make hw BOARD=board` if it was built for this package, else None."""
    path = estimates_path(board)
    if not path.is_file():
        return None
    est = json.loads(path.read_text())
    if est.get("package") != package.name or est.get("student") != package.manifest["student"]:
        return None
    return est


# --- ARM stages: the interface to the ARM estimate / board measurement (issue 10) -------------------

def from_board_rate(path: Path, board: str) -> dict | None:
    """`lic board-rate`'s result (issue 10: the ARM stages modelled under qemu, core by llvm-mca plus
    simulated cache misses, or --on-board wall times) as an ARM stage file, when it is for this board.
    Of the modelled range the slow end (every miss stalling) is taken; the method says so and gives
    the other end. Files from before the model hold only instructions x an assumed CPI range, whose
    slow end (CPI 2.0) is taken instead."""
    try:
        d = json.loads(path.read_text())
        if (d.get("arm") or d.get("fabric") or {}).get("board") != board:
            return None
        b = d["board"]
        if "seconds_model_high" in b:
            seconds, rate, other = b["seconds_model_high"], b["model_high"], b["model_low"]
            source = "estimated"
            method = (f"{b['model_method']}; the slow end taken, every miss stalling (ARM "
                      f"{rate['arm_fps_all_cores']:.1f} fps on {rate['cores']} cores; {other['arm_fps_all_cores']:.1f} "
                      f"fps with no miss stalling); {path.name}")
        elif "seconds_cpi_high" in b:
            seconds, rate, other = b["seconds_cpi_high"], b["cpi_high"], b["cpi_low"]
            source = "estimated"
            method = (f"{b['method']}; CPI-high end taken (ARM {rate['arm_fps_all_cores']:.1f} fps on "
                      f"{rate['cores']} cores; {other['arm_fps_all_cores']:.1f} fps at the low end); {path.name}")
        else:
            seconds, rate, source = d["measured_here"]["seconds"], b, "measured"
            method = f"{b['method']}; {path.name}"
        ms = lambda *keys: (1e3 * sum(seconds[k] for k in keys)
                            if all(isinstance(seconds.get(k), (int, float)) for k in keys) else None)
        # the runtime's schedule modelled (hls/estimates.py pipeline_rate), at the same end of the range
        pipeline = (d.get("pipeline") or {}).get("modelled, slow end" if "seconds_model_high" in b else "CPI high end")
        return {"board": board, "frame": [768, 512], "source": source, "method": method,
                "stages_ms": {"parse": ms("parse"), "rans_z": ms("rans_z"), "h_s": ms("integer_hs"),
                              "rans_y": ms("rans_y"), "stitch": ms("tiles", "to_rgb8")},
                "arm_fps": rate.get("arm_fps_all_cores"),
                "pipeline_board_fps": pipeline["board_fps"]["fps"] if pipeline else None,
                "pipeline_limited_by": pipeline["board_fps"]["limited_by"] if pipeline else None}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def arm_stages(board: str, path: Path | None = None) -> dict | None:
    """The ARM's per-stage cost for this board, or None when nobody has estimated or measured it.

    Read from `path`, else fpga_projects/<board>/build/arm_stages.json, else `lic board-rate --board
    <board>`'s result (from_board_rate; board/rate.py: result_path). An ARM stage file is:
      {"board": "pynq-z2", "frame": [768, 512], "stages_ms": {"parse": .., "rans_z": .., "h_s": ..,
       "rans_y": .., "stitch": ..}, "source": "estimated" | "measured", "method": "how",
       "arm_fps": optional, the ARM's pipeline rate if its stages overlap (e.g. two cores)}
    Stage times scale with the frame's pixel count (entropy decoding and stitching are per-pixel
    work); a stage missing from the file stays unknown.
    """
    if path is None:
        path = load_board(board).folder / "build" / ARM_STAGES_FILE
        if not path.is_file():
            rate_file = board_rate.result_path(board)
            return from_board_rate(rate_file, board) if rate_file.is_file() else None
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        ok = d["source"] in ("estimated", "measured") and isinstance(d["stages_ms"], dict) and d["method"]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise LicError(f"{path}: not an ARM stage file (needs frame, stages_ms, source estimated|measured, method)")
    return d


def _arm_at(arm: dict, width: int, height: int) -> tuple[dict, float | None]:
    fw, fh = arm.get("frame", [768, 512])
    k = (width * height) / (fw * fh)
    stages = {s: (arm["stages_ms"][s] * k if arm["stages_ms"].get(s) is not None else None) for s in ARM_STAGE_NAMES}
    if arm.get("arm_fps"):
        return stages, arm["arm_fps"] / k
    if any(v is None for v in stages.values()):
        return stages, None
    return stages, 1000.0 / sum(stages.values())


# --- power -------------------------------------------------------------------------------------------

def model_power(est: dict, board: str, model_path: Path = POWER_MODEL) -> dict:
    """PS + PL static + PL dynamic from the resource model, with every term written out."""
    m = json.loads(model_path.read_text())
    if board not in m["boards"]:
        raise LicError(f"{model_path} has no entry for board {board!r}")
    b = m["boards"][board]
    fam = m["families"][b["family"]]
    mhz, toggle = est["clock_mhz"], m["toggle_rate"]
    dynamic = {r: est["resources"].get(r, {}).get("used", 0.0) * c * 1e-6 * mhz * toggle / 0.125
               for r, c in fam["dynamic_uw_per_mhz"].items()}
    pl = b["pl_static_watts"] + sum(dynamic.values())
    return {"ps_watts": fam["ps_watts"], "pl_static_watts": b["pl_static_watts"], "pl_dynamic_watts": dynamic,
            "pl_watts": pl, "chip_watts": fam["ps_watts"] + pl, "toggle_rate": toggle, "clock_mhz": mhz,
            "model": str(model_path), "coefficient_source": m["coefficient_source"]}


_TOTAL_ON_CHIP = re.compile(r"Total On-Chip Power \(W\)\s*\|\s*([0-9.]+)")


def vivado_power(build_dir: Path) -> tuple[float, Path] | None:
    """Total on-chip power from a Vivado report_power file in the build folder, if one exists."""
    for rpt in sorted(build_dir.rglob("*power*.rpt")):
        found = _TOTAL_ON_CHIP.search(rpt.read_text(errors="replace"))
        if found:
            return float(found.group(1)), rpt
    return None


def pynq_rails_watts(seconds: float = 5.0) -> float:
    """Sum of the board's rail powers sampled over `seconds` (on a ZCU104 / KV260 running PYNQ)."""
    try:
        import pynq  # why: exists only on a board running PYNQ
    except ImportError:
        raise LicError("--board-watts BOARD=rails reads PYNQ's power rails: run it on the board, where pynq "
                       "is installed") from None
    rails = {n: r for n, r in pynq.get_rails().items() if getattr(r, "power", None) is not None}
    if not rails:
        raise LicError("this board exposes no power rails through pynq.get_rails() (PYNQ-Z2 has none): "
                       "pass an external meter's reading as --board-watts BOARD=WATTS")
    samples, t0 = [], time.time()
    while time.time() - t0 < seconds:
        samples.append(sum(r.power.value for r in rails.values()))
        time.sleep(0.1)
    return sum(samples) / len(samples)


# --- rows -------------------------------------------------------------------------------------------

def fpga_rows(board: str, est: dict, frame_sizes: list[tuple[str, int, int]], quality: dict[str, dict],
              complexity, board_watts: float | None = None, board_watts_how: str = "",
              power_model: Path = POWER_MODEL, arm_path: Path | None = None) -> list[dict]:
    b = load_board(board)
    clock_hz = est["clock_mhz"] * 1e6
    cycles, latency = est["cycles_per_tile"], est.get("latency_cycles_per_tile")
    tile, halo = est["tile"], est["halo"]
    device = f"{board} {b.part} @ {est['clock_mhz']:.0f} MHz"
    power = model_power(est, board, power_model)
    routed = vivado_power(Path(est["build_dir"]))
    if routed:
        pl_w, pl_how = routed[0], f"Vivado report_power of the routed design ({routed[1].name})"
    else:
        pl_w, pl_how = power["pl_watts"], "resource power model (PL static + dynamic)"
    if board_watts is not None:
        board_w, board_how, board_src = board_watts, board_watts_how, "measured"
    else:
        board_w = (power["ps_watts"] + pl_w) if not routed else routed[0]
        board_how = ("Vivado report_power (PS + PL)" if routed else
                     "resource power model: PS + PL static + PL dynamic (chip only; DDR, regulators excluded)")
        board_src = "estimated"
    arm = arm_stages(board, arm_path)
    rows = []
    for name, width, height in frame_sizes:
        n_tiles = tiles_per_frame((width, height), tile, halo)
        fabric_fps = clock_hz / (cycles * n_tiles)
        tile_px = (tile * 16) ** 2
        cx = complexity.row_fields(width, height)
        gmac = complexity.kmac_per_pixel * 1e3 * tile_px * n_tiles / 1e9
        mem = {"parameters": cx["parameters"], "weights_bytes": cx["weights_bytes"],
               "activation_peak_bytes": None,
               "on_chip_memory_bytes": int(est["resources"].get("BRAM_18K", {}).get("used", 0) * 18 * 1024 / 8)}
        q = quality.get(name, {})
        common = {"device": device, "decoder": "quant_student", "precision": q.get("precision"),
                  "runtime": "FINN dataflow (finn-plus estimate)", "batch": 1, "frame_set": name,
                  "width": width, "height": height, "tiles": n_tiles, "kmac_per_pixel": complexity.kmac_per_pixel,
                  "gmac_per_frame": gmac, **mem,
                  **{k: q.get(k) for k in ("bpp", "psnr", "ms_ssim", "vif")},
                  "quality_from": q.get("from")}
        fabric = {"platform": "fpga-fabric", "scope": "synthesis", "fps": fabric_fps,
                  "latency_ms": None if latency is None else
                  1e3 * (latency + (n_tiles - 1) * cycles) / clock_hz,
                  "watts": pl_w, "stages_ms": {"synthesis": 1e3 / fabric_fps},
                  "source": "estimated",
                  "method": f"FINN analytical cycle estimate: {cycles:,} cycles per {tile}x{tile}-latent tile "
                            f"(initiation interval of the slowest layer) x {n_tiles} tiles with a {halo}-latent "
                            f"halo, at {est['clock_mhz']:.0f} MHz (not timing-closed); power: {pl_how}, PL only",
                  **common}
        stages, arm_fps = _arm_at(arm, width, height) if arm else ({s: None for s in ARM_STAGE_NAMES}, None)
        # the pipelined runtime's rate where `lic board-rate` modelled it for this build (768x512 only:
        # its fill, cache maintenance and Python are per frame); else the older upper bound
        pipelined = arm.get("pipeline_board_fps") if arm and [width, height] == list(arm.get("frame", [])) else None
        board_fps = pipelined or (min(fabric_fps, arm_fps) if arm_fps else None)
        arm_how = (f"ARM stages {arm['source']} ({arm['method']})" if arm else
                   "ARM stages unknown: no ARM estimate or board measurement yet "
                   f"(fpga_projects/{board}/build/{ARM_STAGES_FILE}), so the board rate is unknown")
        board_row = {"platform": "fpga-board", "scope": "full decode", "fps": board_fps,
                     "watts": board_w, "stages_ms": {**stages, "synthesis": 1e3 / fabric_fps},
                     "source": "estimated" if board_src == "estimated" or not arm or arm["source"] != "measured"
                     else "measured",
                     "method": ("the pipelined runtime modelled (hls/estimates.py pipeline_rate: fabric batch + "
                                "restart gap vs ARM work incl. cache maintenance and Python, slow end)" if pipelined else
                                "slowest pipeline stage: fabric (as the fpga-fabric row) vs ARM, an upper bound")
                               + f"; {arm_how}; power: {board_how}",
                     "limited_by": arm["pipeline_limited_by"] if pipelined else
                     None if board_fps is None else ("fabric" if board_fps == fabric_fps else "ARM"),
                     **common}
        rows += [fabric, board_row]
    for r in rows:
        r["power_model"] = power if not routed else None
    return rows
