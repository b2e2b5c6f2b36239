"""`lic board-rate`: the board's frame rate is its slowest pipeline stage, ARM or fabric.

Per ARM stage (board/stages.py) on one 768x512 Kodak file:

  estimated   (default) ARM time = ARM instructions x CPI / clock, for the board's ARM (board.json's
              "arm": PYNQ-Z2's Cortex-A9 = armhf, ZCU104's / KV260's Cortex-A53 = arm64). Instructions
              are counted exactly by running Debian's Python + numpy + Pillow for that architecture
              and our cross-compiled C under qemu-arm / qemu-aarch64 with a TCG plugin
              (board/armhf/block_profile.c), each stage run 1 and 1 + K times and differenced, so
              start-up and input loading cancel. CPI is an assumption, given as a range (--cpi).
  modelled    (default, beside it) the same runs' basic blocks priced by LLVM's scheduling model of
              the core, and their memory accesses through a simulated L1 / L2 (board/arm_cycles.py):
              core cycles at the low end, plus every cache miss at an assumed latency at the high end.
  measured    --on-board: wall time of the same stage functions on the machine running the command
              (a PYNQ board once one is available; on x86 it measures x86, and says so).

Always also measured: the same stages on this machine (x86 here), single thread.
The fabric's rate comes from `make hw`'s estimates.json (FINN's analytical estimate).

Three rates, kept apart (hls/estimates.py pipeline_rate, "pipeline" in the JSON; the headline):
  fabric steady state  the fabric alone, batches back to back (FINN's fps): an upper bound
  frame latency        one frame alone, .lic bytes to image
  board                host/runtime.py decode_stream's frames per second: the slower of the fabric's
                       period (one batch per frame: fill + tiles x the slowest layer, and the restart
                       gap) and the ARM's (its stages, the DMA buffers' cache clean and invalidate and
                       per-frame Python over the cores, or its longest thread); assumptions in the JSON
The older figure beside it, min(fabric steady state, 1 / slowest ARM core's time per frame) with
the shared stages (SHARED_STAGES) at 1/N on each of N cores and the others split over the cores in
pipeline order, counts neither fill and drain, cache maintenance nor Python: an upper bound.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from board.arm_check import cross_compile, make_lic_files, qemu_command, x86_references
from board.arm_cycles import check_llvm_mca, model, profile_stage, stall_cycles
from board.stages import Unavailable, load_refs, stage_runner
from hls.boards import available_boards, load_board
from hls.boards import board_rate_path as result_path
from hls.estimates import fabric_timing, pipeline_rate
from host.backends import make_backend
from host.container import FORMAT_V3, parse
from host.decode_cli import default_package
from host.decoder_package import DecoderPackage
from host.runtime import HostDecoder, latent_shape, y_regions
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
# Stages the ARM runs per frame, .lic bytes to an RGB frame in memory, in pipeline order (rans_y is
# entropy - rans_z - integer_hs). Writing a PNG file is listed but not part of the frame rate, as
# for every other decoder this project times (GPU, CPU): a frame goes to a display or a consumer.
ARM_STAGES = ("parse", "rans_z", "integer_hs", "rans_y", "tiles", "to_rgb8")
NOT_IN_RATE = {"png": "(png: file write, not in the frame rate)",
               "integer_hs_numpy": "(integer_hs in numpy float64: the fallback, not used)"}
COUNTED = ("parse", "rans_z", "integer_hs", "integer_hs_numpy", "entropy", "tiles", "to_rgb8", "png")


def arm_cpu(board: str) -> dict:
    """board.json's "arm": core, arch, cores, clock_mhz, clock_source, cpi_assumed, llvm_mcpu, caches,
    miss_cycles."""
    arm = load_board(board).arm
    if not arm:
        raise LicError(f"fpga_projects/{board}/board.json has no \"arm\" entry (core, arch, cores, clock_mhz, "
                       f"clock_source, cpi_assumed, llvm_mcpu, caches, miss_cycles): add the board's ARM to estimate its stages")
    return arm


def time_stages(package, refs: Path, name: str, repeat: int) -> dict[str, float | str]:
    """Median wall seconds per stage on this machine (one thread: the stages are called in turn)."""
    data = (refs / f"{name}.lic").read_bytes()
    ref = load_refs(refs / f"{name}.x86.npz")
    out: dict[str, float | str] = {}
    for stage in COUNTED:
        try:
            run = stage_runner(package, stage, data, ref)
        except Unavailable as e:
            out[stage] = str(e)
            continue
        run()  # warm caches, first-call allocations
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            run()
            samples.append(time.perf_counter() - t)
        out[stage] = statistics.median(samples)
    return out


def with_rans_y(per_stage: dict) -> dict:
    """rans_y from the runtime's whole entropy stage minus its other two parts."""
    per_stage = dict(per_stage)
    parts = [per_stage.get(k) for k in ("entropy", "rans_z", "integer_hs")]
    if all(isinstance(v, (int, float)) for v in parts):
        per_stage["rans_y"] = max(0, parts[0] - parts[1] - parts[2])
    else:
        per_stage["rans_y"] = next((v for v in parts if isinstance(v, str)), "not measured")
    return per_stage


def core_split(seconds: list[float], cores: int) -> tuple[list[int], float]:
    """Split the ordered stages into `cores` consecutive groups (some may be empty): the cut points
    [k1 <= k2 <= ...] with the smallest maximum group sum, and that maximum."""
    n = len(seconds)

    def slowest(cuts):
        edges = (0, *cuts, n)
        return max(sum(seconds[a:b]) for a, b in zip(edges, edges[1:]))

    best = min(itertools.combinations_with_replacement(range(n + 1), cores - 1), key=slowest)
    return list(best), slowest(best)


# Stages the runtime runs on all cores at once (host/runtime.py, `threads`): the integer h_s by
# rows, a version-3 file's y substreams, the windows in and the image out by bands of rows. Each
# counts the busiest core's share on every core. Where a stage's parts are known (y: the substreams'
# sizes), that share is what host/parallel.py's pool gives them, handed out in order to whichever core
# is free first; otherwise the stage splits evenly (a bound: no scheduling loss).
SHARED_STAGES = ("integer_hs", "rans_y", "tiles", "to_rgb8")


def busiest_share(parts: list[float], cores: int) -> float:
    """The share of a stage's work on its busiest core when its parts (their sizes, in the order the
    runtime lists them) go one by one to the core with least work so far."""
    loads = [0.0] * cores
    for size in parts:
        loads[loads.index(min(loads))] += size
    return max(loads) / sum(parts)


def board_rate(arm_seconds: dict, fabric_fps: float | None, shared: tuple[str, ...] = SHARED_STAGES,
               cores: int = 2, pieces: dict[str, list[float]] | None = None) -> dict:
    """Frame rate of the ARM + fabric pipeline from per-stage ARM seconds (None where unknown): each
    `shared` stage's busiest-core share on every core (pieces: the sizes of the independent parts the
    runtime splits a stage into; 1/cores where not given), the others split over the cores in pipeline order."""
    known = {k: v for k, v in arm_seconds.items() if isinstance(v, (int, float))}
    missing = [k for k in ARM_STAGES if k not in known]
    serial = [k for k in ARM_STAGES if k not in shared]
    seconds = [known.get(k, 0.0) for k in serial]
    share = {k: busiest_share((pieces or {}).get(k, [1.0] * cores), cores) for k in shared}
    every = sum(known.get(k, 0.0) * share[k] for k in ARM_STAGES if k in shared)
    cuts, slowest_serial = core_split(seconds, cores)
    slowest_core = slowest_serial + every
    total = sum(seconds) + sum(known.get(k, 0.0) for k in ARM_STAGES if k in shared)
    arm_fps_one_core = 1 / total if total else None
    arm_fps = 1 / slowest_core if slowest_core else None
    rates = [r for r in (arm_fps, fabric_fps) if r]
    parts = [f"{share_text(share[h])} of {h}" for h in shared if h in known]
    edges = (0, *cuts, len(serial))
    groups = [serial[a:b] for a, b in zip(edges, edges[1:])]
    cores_s = {f"ARM core {i} ({', '.join(group + parts)})": sum(seconds[a:b]) + every
               for i, (group, a, b) in enumerate(zip(groups, edges, edges[1:]))}
    return {"arm_one_core_s": total, "arm_fps_one_core": arm_fps_one_core, "cores": cores,
            "on_every_core": [s for s in shared if s in known], "shared_share": share, "core_stages": groups,
            "cores_s": cores_s, "arm_all_cores_s": slowest_core, "arm_fps_all_cores": arm_fps,
            "fabric_fps": fabric_fps, "board_fps": min(rates) if rates else None,
            "limited_by": None if not rates else ("fabric" if fabric_fps and fabric_fps <= (arm_fps or 1e9) else "ARM"),
            "stages_missing": missing}


def share_text(share: float) -> str:
    n = round(1 / share)
    return f"1/{n}" if abs(share * n - 1) < 1e-9 else f"{share:.0%}"


def ensure_refs(refs: Path, package) -> str:
    """The first Kodak image (768x512) as .lic + x86 stage outputs, made if absent."""
    from training.data import KODAK as DEFAULT_DATA  # why: training/ loads torch, which a board (--on-board) lacks

    existing = sorted(refs.glob("*.x86.npz"))
    if existing:
        name = existing[0].name.removesuffix(".x86.npz")
        lic = refs / f"{name}.lic"
        # references made for another package (an older student or integer h_s) are made again
        with np.load(existing[0]) as ref:
            current = "fabric_windows" in ref.files  # older references stitched NCHW tiles
        if current and lic.is_file() and parse(lic.read_bytes()).fingerprint == package.file_fingerprint:
            return name
        for f in refs.iterdir():
            f.unlink()
    refs.mkdir(parents=True, exist_ok=True)
    names = make_lic_files(refs, DEFAULT_DATA, 1, package)
    x86_references(refs, names, package)
    return names[0]


DEFAULT_OUT = REPO / "build" / "board-rate.json"
MS = "{:.1f}"

# How the host's C code is built for each architecture (host/csrc/Makefile), for the method line.
C_FLAGS = {"armhf": "-mcpu=cortex-a9 -mfpu=neon", "arm64": "-mcpu=cortex-a53"}
QEMU = {"armhf": "qemu-arm", "arm64": "qemu-aarch64"}


def estimated_seconds(insns: dict, cpi: float, clock_mhz: float) -> dict:
    """Instructions x CPI / clock per stage; a stage that could not run keeps its reason."""
    return {k: (v * cpi / (clock_mhz * 1e6) if isinstance(v, (int, float)) else v) for k, v in insns.items()}


def estimate_method(cpu: dict, lo: float, hi: float, clock_mhz: float) -> str:
    arch = cpu["arch"]
    return (f"estimated: {arch} instructions ({QEMU[arch]} TCG plugin, Debian {arch} userland, C built with "
            f"{C_FLAGS[arch]}) x CPI {lo}..{hi} (assumed) / {clock_mhz:.0f} MHz {cpu['core']} "
            f"(clock: {cpu['clock_source']}), stages over {cpu['cores']} cores")


def model_method(cpu: dict, clock_mhz: float) -> str:
    c, m = cpu["caches"], cpu["miss_cycles"]
    return (f"modelled: {cpu['arch']} basic blocks (qemu TCG plugin) x LLVM's {cpu['llvm_mcpu']} model (llvm-mca: "
            f"every load an L1 hit, every branch predicted) / {clock_mhz:.0f} MHz, up to + simulated misses "
            f"(L1 {c['l1d_bytes'] >> 10}+{c['l1i_bytes'] >> 10} KiB, L2 {c['l2_bytes'] >> 10} KiB, {c['line']}-byte lines: "
            f"{c['source']}): {m['l2_hit']} cycles per L2 hit and {m['dram']} per DRAM access, sequential ones "
            f"free from L2 and at {m['dram_mb_s']} MB/s from DRAM ({m['source']}), none overlapped")


# The stage seconds each pipeline estimate is modelled from, and which end of the assumed ranges
# (hls/estimates.py BOARD_ASSUMPTIONS) goes with it: the fast stage estimate with the fast end.
PIPELINE_INPUTS = (("modelled, fast end", "seconds_model_low", 0), ("modelled, slow end", "seconds_model_high", 1),
                   ("CPI low end", "seconds_cpi_low", 0), ("CPI high end", "seconds_cpi_high", 1))


def fabric_inputs(build_dir: Path, fabric: dict, package) -> dict | None:
    """fabric_timing of a `make hw` build and the DMA buffers' bytes per frame (int8 windows in,
    int8 RGB windows out), or None where the build folder lacks its models."""
    if not (build_dir / "intermediate_models" / "step_generate_estimate_reports.onnx").is_file():
        return None
    from hls.finn_workarounds import prepare_finn_import  # why: loads qonnx/FINN, only with a `make hw` build

    prepare_finn_import()
    n, tile = fabric["tiles_per_frame"], fabric["tile"]
    timing = fabric_timing(build_dir, n, fabric["clock_mhz"] * 1e6)
    return {"timing": timing, "input_bytes": n * tile * tile * package.latent_channels,
            "output_bytes": n * (tile * package.upscale) ** 2 * 3}


def pipeline_section(board: dict, fab: dict, measured: bool) -> dict:
    """pipeline_rate for each stage estimate in `board` (or the measured stages)."""
    rate = lambda secs, end: pipeline_rate(secs, fab["timing"], fab["input_bytes"], fab["output_bytes"], end)
    if measured:
        return {"measured, fast end": rate(board["seconds"], 0), "measured, slow end": rate(board["seconds"], 1)}
    return {label: rate(board[key], end) for label, key, end in PIPELINE_INPUTS if key in board}


def measure_pipeline(decoder, data: bytes, frames: int) -> dict:
    """decode_stream over `frames` copies of one file, timed: frames per second between the first
    and the last image finished (the pipeline full), one frame alone (decode), and from the
    runtime's trace the share of that time the accelerator was busy."""
    decoder.decode(data)  # warm: buffers allocated, the driver's batch duration known
    t = time.perf_counter()
    decoder.decode(data)
    alone = time.perf_counter() - t
    decoder.trace = []
    for name, rgb, _ in decoder.decode_stream((f"frame{i}", data) for i in range(frames)):
        if not isinstance(rgb, np.ndarray):
            raise LicError(f"{name}: {rgb}")
    # images finished (the output thread's ends), not handed back: the generator hands them in bursts
    done = sorted(b for stage, _, a, b in decoder.trace if stage == "to_rgb8")
    span = done[-1] - done[0]
    busy = sum(min(b, done[-1]) - max(a, done[0]) for stage, _, a, b in decoder.trace
               if stage == "fabric" and b > done[0] and a < done[-1])
    return {"frames": frames, "fps": (frames - 1) / span if span > 0 else None, "frame_alone_ms": 1e3 * alone,
            "accelerator_busy_share": busy / span if span > 0 else None,
            "what": f"measured: decode_stream over {frames} copies of the file, frames per second between the first and "
                    f"the last image finished; one frame alone by decode()"}


def pipeline_lines(pipeline: dict, timing: dict) -> list[str]:
    """The three rates, for the printed report."""
    out = [f"fabric (FINN's cycles): steady state {timing['steady_fps']:.1f} fps; one batch of {timing['tiles']} tiles "
           f"{timing['batch_ms']:.1f} ms (fill {timing['fill_cycles'] / timing['clock_mhz'] / 1e3:.1f} ms); tile latency "
           f"{timing['tile_latency_ms']:.1f} ms (FINN's sum of every layer's cycles, {timing['finn_latency_upper_bound_ms']:.0f} "
           f"ms, is an upper bound); {timing['cycles_source']}"]
    for label, r in pipeline.items():
        arm, fab = r["arm_ms_per_frame"], r["fabric_ms_per_frame"]
        out.append(f"board, pipelined runtime ({label}): **{r['board_fps']['fps']:.1f} fps**, limited by "
                   f"{r['board_fps']['limited_by']} (ARM {arm['period']:.1f} ms per frame: {arm['total_one_core']:.1f} ms "
                   f"of work incl. cache clean {arm['cache_clean']:.1f} + invalidate {arm['cache_invalidate']:.1f} + Python "
                   f"{arm['python']:.1f}; fabric {fab['period']:.1f} ms); one frame alone {r['frame_latency_ms']['ms']:.1f} ms"
                   + (f" (without {', '.join(r['stages_missing'])})" if r["stages_missing"] else ""))
    return out


def report_lines(fabric_fps: float | None, board: str = "pynq-z2") -> list[str]:
    """The board rate beside the fabric's, for `make demo`, from the last `make board-rate`."""
    path = result_path(board)
    fab = f"{fabric_fps:.1f} fps (FINN estimate)" if fabric_fps else "unknown (no `make hw`)"
    if not path.is_file():
        return [f"Fabric alone: {fab}. Board rate: not estimated yet, run `make board-rate BOARD={board}` (ARM "
                "stages under qemu); the fabric's rate alone is not the board's."]
    r = json.loads(path.read_text())
    b = r["board"]
    if r.get("pipeline"):
        rates = {k: v["board_fps"]["fps"] for k, v in r["pipeline"].items() if "CPI" not in k}
        lat = [v["frame_latency_ms"]["ms"] for k, v in r["pipeline"].items() if "CPI" not in k]
        t = r["fabric_timing"]
        return [f"Fabric alone: {fab} (steady state: an upper bound the runtime does not reach). **Board rate: "
                f"{min(rates.values()):.1f}-{max(rates.values()):.1f} fps, estimated** for host/runtime.py's pipeline "
                f"(one batch per frame, fill and drain {t['fill_cycles'] / t['clock_mhz'] / 1e3:.1f} ms; cache "
                f"maintenance, Python and the restart gap assumed; ARM stages modelled), one frame alone "
                f"{min(lat):.0f}-{max(lat):.0f} ms. Source: {path}."]
    if "arm_fps_all_cores" not in (b.get("cpi_high") or b):
        return [f"Fabric alone: {fab}. Board rate: {path} was written by an older `lic board-rate`: run "
                f"`make board-rate BOARD={board}` again."]
    missing = (b.get("cpi_high") or b).get("stages_missing")
    if "model_low" in b:
        # the model first: the slow end of its range is what `make hw` and `make bench` report
        fast, slow, lo, hi = b["model_low"], b["model_high"], b["cpi_high"], b["cpi_low"]
        arm = (f"ARM stages {slow['arm_fps_all_cores']:.1f}-{fast['arm_fps_all_cores']:.1f} fps, modelled (core: "
               f"llvm-mca's {r['arm'].get('llvm_mcpu')} model; cache misses simulated, from every one stalling to none)")
        board = f"{slow['board_fps']:.1f}-{fast['board_fps']:.1f} fps, modelled, limited by {slow['limited_by']} at the slow end"
        also = (f" By instructions x an assumed CPI ({b['method']}): ARM stages {lo['arm_fps_all_cores']:.1f}-"
                f"{hi['arm_fps_all_cores']:.1f} fps, board {lo['board_fps']:.1f}-{hi['board_fps']:.1f} fps.")
    elif "cpi_low" in b:
        hi, lo = b["cpi_low"], b["cpi_high"]
        arm = f"ARM stages {lo['arm_fps_all_cores']:.1f}-{hi['arm_fps_all_cores']:.1f} fps ({b['method']})"
        rates = [x["board_fps"] for x in (lo, hi) if x["board_fps"]]
        board = f"{min(rates):.1f}-{max(rates):.1f} fps, limited by {hi['limited_by']}" if rates else "unknown"
        also = ""
    else:
        arm = f"ARM stages {b['arm_fps_all_cores']:.1f} fps ({b['method']})"
        board = f"{b['board_fps']:.1f} fps, limited by {b['limited_by']}"
        also = ""
    return [f"Fabric alone: {fab}. {arm}. **Board rate: {board}**"
            + (f" (stages not counted: {', '.join(missing)})" if missing else "") + f".{also} Source: {path}."]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", choices=available_boards(), default="pynq-z2",
                   help="whose ARM and fabric: pynq-z2 (2x Cortex-A9, armhf; default), zcu104 / kv260 "
                        "(4x Cortex-A53, arm64); clock, cores and CPI from its board.json \"arm\"")
    p.add_argument("--hw-dir", type=Path, default=None,
                   help="--on-board: the board build (bitstream, driver/settings.json, tile.json); with it the pipelined "
                        "runtime is also timed end to end on the fabric (default fpga_projects/<board>/build)")
    p.add_argument("--frames", type=int, default=30, help="--on-board: frames decode_stream is timed over")
    p.add_argument("--on-board", action="store_true",
                   help="measure the ARM stages here (run it on the board) instead of estimating them under qemu")
    p.add_argument("--root", type=Path, default=None,
                   help="the ARM userland from board/armhf/setup_root.sh (default build/<arch>-root)")
    p.add_argument("--refs", type=Path, default=REPO / "build" / "arm-check" / "refs",
                   help="NAME.lic + NAME.x86.npz (made from Kodak if absent; copy them to a board for --on-board)")
    p.add_argument("--estimates", type=Path, default=None,
                   help="the fabric's estimates.json (default fpga_projects/<board>/build/estimates.json, `make hw`)")
    p.add_argument("--cpi", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="assumed cycles per instruction of the instructions x CPI estimate (default the board's "
                        "cpi_assumed: 1.0 2.0); the cycle model (llvm-mca + simulated caches) is reported beside it")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="ARM clock (default the board's: PYNQ-Z2 650, ZCU104 1200, KV260 1333)")
    p.add_argument("--repeat", type=int, default=2, help="extra runs per stage for the count difference / timing")
    p.add_argument("--package", type=Path, default=None, help="decoder package (default: the shipped one)")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="JSON result (default build/board-rate.json for pynq-z2, build/board-rate-<board>.json)")


def run(args) -> int:
    cpu = arm_cpu(args.board)
    arch, cores = cpu["arch"], cpu["cores"]
    root = args.root or REPO / "build" / f"{arch}-root"
    estimates = args.estimates or REPO / "fpga_projects" / args.board / "build" / "estimates.json"
    lo, hi = args.cpi or cpu["cpi_assumed"]
    clock_mhz = args.clock_mhz or cpu["clock_mhz"]
    out = args.out or result_path(args.board)
    if not args.on_board:
        qemu_command(root, "plugin", arch)  # a missing root or emulator: say so before encoding anything
        check_llvm_mca()
        libs = cross_compile(REPO / "build" / arch, arch)
    package = DecoderPackage.load(args.package or default_package())
    if args.on_board and not any(args.refs.glob("*.x86.npz")):
        raise LicError(f"no reference files in {args.refs}: run `make arm-check` on a workstation and copy "
                       f"build/arm-check/refs to the board (encoding needs the teacher, which the board lacks)")
    name = ensure_refs(args.refs, package)

    # the runtime shares y between the cores only where the file has substreams (version 3), each
    # substream's work about its number of symbols
    lic = parse((args.refs / f"{name}.lic").read_bytes())
    shared = SHARED_STAGES if lic.version >= FORMAT_V3 else tuple(k for k in SHARED_STAGES if k != "rans_y")
    if lic.version >= FORMAT_V3:
        regions = y_regions(lic, *latent_shape(package, lic.height, lic.width), name)
        pieces = {"rans_y": [(r.stop - r.start) * (c.stop - c.start) for r, c in regions]}
    else:
        pieces = {}
    fabric = json.loads(estimates.read_text()) if estimates.is_file() else None
    if fabric and fabric.get("board") != args.board:
        raise LicError(f"{estimates} is the fabric estimate of {fabric.get('board')}, not {args.board}")
    fabric_fps = fabric["fps_at_frame"] if fabric else None
    here = f"{platform.machine()} ({platform.processor() or platform.node()}), 1 thread"
    result = {"file": name, "package": package.name,
              "arm": {"board": args.board, **cpu, "clock_mhz": clock_mhz, "cpi_assumed": [lo, hi]},
              "fabric": fabric and {
                  "board": fabric["board"], "fps": fabric_fps, "frame": fabric["frame"], "clock_mhz": fabric["clock_mhz"],
                  "source": f"{estimates} (FINN analytical estimate, `make hw`)"}}

    measured = with_rans_y(time_stages(package, args.refs, name, max(3, args.repeat)))
    result["measured_here"] = {"machine": here, "seconds": measured}
    lines = []
    if args.on_board:
        result["board"] = {"method": f"measured: wall time on {here}",
                           **board_rate(measured, fabric_fps, shared, cores, pieces)}
        columns = []
        try:
            backend = make_backend("pynq", package, hw_dir=args.hw_dir or estimates.parent)
            result["measured_pipeline"] = measure_pipeline(HostDecoder(package, backend, threads=cores),
                                                           (args.refs / f"{name}.lic").read_bytes(), args.frames)
            mp = result["measured_pipeline"]
            lines.append(f"board, pipelined runtime, measured on the fabric: **{mp['fps']:.1f} fps** over {mp['frames']} "
                         f"frames (accelerator busy {mp['accelerator_busy_share']:.0%} of the time); one frame alone "
                         f"{mp['frame_alone_ms']:.1f} ms")
        except LicError as e:
            result["measured_pipeline"] = f"not measured: {e}"
            lines.append(f"pipelined runtime not timed on the fabric: {e}")
    else:
        insns, models = {}, {}
        for stage in COUNTED:
            modelled = stage not in NOT_IN_RATE
            print(f"profiling {arch} blocks{' and caches' if modelled else ''}: {stage}", file=sys.stderr)
            prof = profile_stage(root, libs, package.root, args.refs, name, stage, args.repeat, arch,
                                 cpu["caches"] if modelled else None)
            insns[stage] = prof if isinstance(prof, str) else round(prof.instructions)
            if modelled:
                models[stage] = prof if isinstance(prof, str) else model(prof, arch, cpu["llvm_mcpu"])
        insns = with_rans_y(insns)
        core_cycles = with_rans_y({k: m if isinstance(m, str) else m["core_cycles"] for k, m in models.items()})
        stalls = with_rans_y({k: m if isinstance(m, str) else stall_cycles(m, {**cpu, "clock_mhz": clock_mhz})
                              for k, m in models.items()})
        est = {c: estimated_seconds(insns, c, clock_mhz) for c in (lo, hi)}
        fast = estimated_seconds(core_cycles, 1, clock_mhz)
        slow = {k: (v + stalls[k] / (clock_mhz * 1e6) if isinstance(v, float) else v) for k, v in fast.items()}
        result["arm_instructions"] = insns
        result["arm_model"] = models
        result["board"] = {
            "method": estimate_method(cpu, lo, hi, clock_mhz),
            "model_method": model_method(cpu, clock_mhz),
            "cpi_low": board_rate(est[lo], fabric_fps, shared, cores, pieces),
            "cpi_high": board_rate(est[hi], fabric_fps, shared, cores, pieces),
            "seconds_cpi_low": est[lo], "seconds_cpi_high": est[hi],
            "model_low": board_rate(fast, fabric_fps, shared, cores, pieces),
            "model_high": board_rate(slow, fabric_fps, shared, cores, pieces),
            "seconds_model_low": fast, "seconds_model_high": slow}
        core = cpu["core"].removeprefix("Cortex-")
        cpi = {k: (core_cycles[k] / v if isinstance(v, (int, float)) and isinstance(core_cycles.get(k), float) and v
                   else "not modelled") for k, v in insns.items()}
        misses = with_rans_y({k: m if isinstance(m, str) else m["l1d_misses"] + m["l1i_misses"] for k, m in models.items()})
        columns = [(f"{arch} Minsn", insns, "{:.1f}", 1e-6), (f"{core} ms (CPI {lo})", est[lo], MS, 1e3),
                   (f"{core} ms (CPI {hi})", est[hi], MS, 1e3), ("core CPI (llvm-mca)", cpi, "{:.2f}", 1),
                   ("L1 misses (k)", misses, "{:.0f}", 1e-3), (f"{core} ms (model: core)", fast, MS, 1e3),
                   (f"{core} ms (model: + misses)", slow, MS, 1e3)]
        lines += [result["board"]["method"], result["board"]["model_method"]]
    columns.append((f"{'board' if args.on_board else 'x86'} ms (measured, {platform.machine()})", measured, MS, 1e3))

    def cell(v, fmt, scale):
        return fmt.format(v * scale) if isinstance(v, (int, float)) else "n/a"

    lines += ["", f"| stage ({name}, {package.name}) | " + " | ".join(c[0] for c in columns) + " |",
              "|---|" + "---:|" * len(columns)]
    for stage in ARM_STAGES + tuple(NOT_IN_RATE):
        label = NOT_IN_RATE.get(stage, stage)
        lines.append(f"| {label} | " + " | ".join(cell(vals.get(stage), fmt, scale)
                                                   for _, vals, fmt, scale in columns) + " |")
    unavailable = {k: v for k, v in (result.get("arm_instructions") or measured).items() if isinstance(v, str)}
    for k, v in unavailable.items():
        lines.append(f"not counted: {k}: {v}")
    lines.append("")
    boards = ([("estimated, CPI %g" % lo, result["board"]["cpi_low"]),
               ("estimated, CPI %g" % hi, result["board"]["cpi_high"]),
               ("modelled, core only", result["board"]["model_low"]),
               ("modelled, + every miss's latency", result["board"]["model_high"])] if not args.on_board
              else [("measured", result["board"])])
    fab = f"{fabric_fps:.1f} fps ({fabric['board']}, FINN estimate)" if fabric else \
        f"unknown ({estimates} missing: run `make hw BOARD={args.board}`)"
    lines.append(f"fabric: {fab}")
    for label, b in boards:
        if b["arm_fps_all_cores"] is None:
            continue
        lines.append(f"ARM ({label}): one core {1000 * b['arm_one_core_s']:.1f} ms/frame = {b['arm_fps_one_core']:.1f} fps; "
                     f"{cores} cores " + " | ".join(f"[{', '.join(g)}]" for g in b["core_stages"])
                     + (" + " + ", ".join(f"{share_text(b['shared_share'][k])} of {k}" for k in b["on_every_core"])
                        + " on every core (shared by rows / substreams) " if b["on_every_core"] else " ")
                     + f"{1000 * b['arm_all_cores_s']:.1f} ms = {b['arm_fps_all_cores']:.1f} fps"
                     + (f"; board rate {b['board_fps']:.1f} fps, limited by {b['limited_by']}" if fabric else "")
                     + (f" (without {', '.join(b['stages_missing'])})" if b["stages_missing"] else ""))
    fab = fabric_inputs(estimates.parent, fabric, package) if fabric else None
    if fab:
        result["fabric_timing"] = {k: v for k, v in fab["timing"].items() if k != "layers"}
        result["fabric_timing"]["layers"] = fab["timing"]["layers"]
        result["pipeline"] = pipeline_section(result["board"] if not args.on_board else
                                              {"seconds": measured}, fab, args.on_board)
        lines += ["", *pipeline_lines(result["pipeline"], fab["timing"]),
                  "(the min-of-stages figures above leave out fill and drain, cache maintenance and Python: upper bounds)"]
    else:
        lines.append(f"no pipeline estimate: {estimates.parent} has no intermediate_models (run `make hw BOARD={args.board}`)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))
    return 0
