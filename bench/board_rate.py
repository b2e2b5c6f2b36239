"""`lic board-rate`: the board's frame rate is its slowest pipeline stage, ARM or fabric.

Per ARM stage (bench/board_stages.py) on one 768x512 Kodak file:

  estimated   (default) Cortex-A9 time = ARM instructions x CPI / clock. Instructions are counted
              exactly by running Debian's armhf Python + numpy + Pillow and our cross-compiled C
              under qemu-arm with a TCG plugin (bench/armhf/insn_count.c), each stage run 1 and
              1 + K times and differenced, so start-up and input loading cancel. CPI is an
              assumption, given as a range (--cpi): qemu counts instructions, not cycles, and the
              A9's cache misses, branch mispredictions and NEON pipeline stalls are not modelled.
  measured    --on-board: wall time of the same stage functions on the machine running the command
              (a PYNQ board once one is available; on x86 it measures x86, and says so).

Always also measured: the same stages on this machine (x86 here), single thread.
The fabric's rate comes from `make hw`'s estimates.json (FINN's analytical estimate).
Board rate = min(fabric fps, 1 / slowest ARM core's time per frame), the ARM stages split over the
A9's two cores as two consecutive groups (decode side, output side) with the smallest maximum.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
# Stages the ARM runs per frame, .lic bytes to an RGB frame in memory, in pipeline order (rans_y is
# entropy - rans_z - integer_hs). Writing a PNG file is listed but not part of the frame rate, as
# for every other decoder this project times (GPU, CPU): a frame goes to a display or a consumer.
ARM_STAGES = ("parse", "rans_z", "integer_hs", "rans_y", "tiles", "stitch", "to_rgb8")
NOT_IN_RATE = {"png": "(png: file write, not in the frame rate)",
               "integer_hs_numpy": "(integer_hs in numpy float64: the fallback, not used)"}
COUNTED = ("parse", "rans_z", "integer_hs", "integer_hs_numpy", "entropy", "tiles", "stitch", "to_rgb8", "png")
A9_CLOCK_MHZ = 650.0  # PYNQ-Z2: Zynq XC7Z020-1, Cortex-A9 at 650 MHz (TUL PYNQ-Z2 reference manual)
CPI_RANGE = (1.0, 2.0)


def _plugin(out_dir: Path) -> Path:
    so = out_dir / "insn_count.so"
    src = REPO / "bench" / "armhf" / "insn_count.c"
    if not so.is_file() or so.stat().st_mtime < src.stat().st_mtime:
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(so), str(src)], check=True)
    return so


def count_instructions(root: Path, libs: dict, package: Path, refs: Path, name: str, stage: str,
                       repeat: int) -> int | str:
    """ARM instructions one run of `stage` executes, or the reason it cannot run on armhf."""
    from bench.arm_check import qemu_command, qemu_env

    plugin = _plugin(REPO / "build" / "armhf")
    counts = []
    for n in (1, 1 + repeat):
        with tempfile.NamedTemporaryFile("r", suffix=".insns") as f:
            cmd = qemu_command(root, f"{plugin},out={f.name}") + [
                "-m", "bench.board_stages", "count", "--package", str(package), "--refs", str(refs),
                "--stage", stage, "--repeat", str(n), name]
            proc = subprocess.run(cmd, env=qemu_env(libs), cwd=REPO, capture_output=True, text=True)
            if proc.returncode == 3:
                return proc.stdout.strip().removeprefix("unavailable: ")
            if proc.returncode:
                raise LicError(f"counting {stage} under qemu failed: {proc.stderr.strip().splitlines()[-1:]}")
            counts.append(int(f.read()))
    return max(0, (counts[1] - counts[0]) // repeat)


def time_stages(package, refs: Path, name: str, repeat: int) -> dict[str, float | str]:
    """Median wall seconds per stage on this machine (one thread: the stages are called in turn)."""
    from bench.board_stages import Unavailable, load_refs, stage_runner

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


def two_core_split(seconds: list[float]) -> tuple[int, float]:
    """Split the ordered stages into core 0 = [:k], core 1 = [k:]; the k with the smallest max."""
    best = min(range(len(seconds) + 1), key=lambda k: max(sum(seconds[:k]), sum(seconds[k:])))
    return best, max(sum(seconds[:best]), sum(seconds[best:]))


# Stages the runtime runs on both cores at once (host/runtime.py, `threads`): the integer h_s by
# rows, and a version-3 file's y substreams. Each counts half on each core (an even split: a bound).
SHARED_STAGES = ("integer_hs", "rans_y")


def board_rate(arm_seconds: dict, fabric_fps: float | None, shared: tuple[str, ...] = SHARED_STAGES) -> dict:
    """Frame rate of the ARM + fabric pipeline from per-stage ARM seconds (None where unknown): the
    `shared` stages half on each core, the others split between the cores in pipeline order."""
    known = {k: v for k, v in arm_seconds.items() if isinstance(v, (int, float))}
    missing = [k for k in ARM_STAGES if k not in known]
    serial = [k for k in ARM_STAGES if k not in shared]
    seconds = [known.get(k, 0.0) for k in serial]
    both = sum(known.get(k, 0.0) for k in ARM_STAGES if k in shared)
    k, slowest_serial = two_core_split(seconds)
    slowest_core = slowest_serial + both / 2
    total = sum(seconds) + both
    arm_fps_one_core = 1 / total if total else None
    arm_fps = 1 / slowest_core if slowest_core else None
    rates = [r for r in (arm_fps, fabric_fps) if r]
    halves = [s for s in shared if s in known]
    cores = {f"ARM core {i} ({', '.join(part + [f'half of {h}' for h in halves])})": sum(seconds_part) + both / 2
             for i, (part, seconds_part) in enumerate(((serial[:k], seconds[:k]), (serial[k:], seconds[k:])))}
    return {"arm_one_core_s": total, "arm_fps_one_core": arm_fps_one_core, "both_cores": halves, "cores_s": cores,
            "core0": serial[:k], "core1": serial[k:], "arm_two_core_s": slowest_core,
            "arm_fps_two_cores": arm_fps, "fabric_fps": fabric_fps, "board_fps": min(rates) if rates else None,
            "limited_by": None if not rates else ("fabric" if fabric_fps and fabric_fps <= (arm_fps or 1e9) else "ARM"),
            "stages_missing": missing}


def ensure_refs(refs: Path, package) -> str:
    """The first Kodak image (768x512) as .lic + x86 stage outputs, made if absent."""
    from bench.arm_check import make_lic_files, x86_references
    from bench.evaluate import DEFAULT_DATA

    from host.container import parse

    existing = sorted(refs.glob("*.x86.npz"))
    if existing:
        name = existing[0].name.removesuffix(".x86.npz")
        lic = refs / f"{name}.lic"
        # references made for another package (an older student or integer h_s) are made again
        if lic.is_file() and parse(lic.read_bytes()).fingerprint == package.file_fingerprint:
            return name
        for f in refs.iterdir():
            f.unlink()
    refs.mkdir(parents=True, exist_ok=True)
    names = make_lic_files(refs, DEFAULT_DATA, 1, package)
    x86_references(refs, names, package)
    return names[0]


DEFAULT_OUT = REPO / "build" / "board-rate.json"


def report_lines(fabric_fps: float | None, path: Path = DEFAULT_OUT) -> list[str]:
    """The board rate beside the fabric's, for `make demo`, from the last `make board-rate`."""
    fab = f"{fabric_fps:.1f} fps (FINN estimate)" if fabric_fps else "unknown (no `make hw`)"
    if not path.is_file():
        return [f"Fabric alone: {fab}. Board rate: not estimated yet, run `make board-rate` (ARM stages under "
                "qemu); the fabric's rate alone is not the board's."]
    r = json.loads(path.read_text())
    b = r["board"]
    if "cpi_low" in b:
        hi, lo = b["cpi_low"], b["cpi_high"]
        arm = f"ARM stages {lo['arm_fps_two_cores']:.1f}-{hi['arm_fps_two_cores']:.1f} fps ({b['method']})"
        rates = [x["board_fps"] for x in (lo, hi) if x["board_fps"]]
        board = f"{min(rates):.1f}-{max(rates):.1f} fps, limited by {hi['limited_by']}" if rates else "unknown"
    else:
        arm = f"ARM stages {b['arm_fps_two_cores']:.1f} fps ({b['method']})"
        board = f"{b['board_fps']:.1f} fps, limited by {b['limited_by']}"
    missing = (b.get("cpi_high") or b).get("stages_missing")
    return [f"Fabric alone: {fab}. {arm}. **Board rate: {board}**"
            + (f" (stages not counted: {', '.join(missing)})" if missing else "") + f". Source: {path}."]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--on-board", action="store_true",
                   help="measure the ARM stages here (run it on the board) instead of estimating them under qemu")
    p.add_argument("--root", type=Path, default=REPO / "build" / "armhf-root",
                   help="armhf userland from bench/armhf/setup_root.sh (estimates)")
    p.add_argument("--refs", type=Path, default=REPO / "build" / "arm-check" / "refs",
                   help="NAME.lic + NAME.x86.npz (made from Kodak if absent; copy them to a board for --on-board)")
    p.add_argument("--estimates", type=Path, default=REPO / "fpga_projects" / "pynq-z2" / "build" / "estimates.json",
                   help="the fabric's estimates.json from `make hw`")
    p.add_argument("--cpi", type=float, nargs=2, default=CPI_RANGE, metavar=("LOW", "HIGH"),
                   help=f"assumed Cortex-A9 cycles per instruction (default {CPI_RANGE[0]} {CPI_RANGE[1]})")
    p.add_argument("--clock-mhz", type=float, default=A9_CLOCK_MHZ, help="ARM clock (PYNQ-Z2: 650)")
    p.add_argument("--repeat", type=int, default=2, help="extra runs per stage for the count difference / timing")
    p.add_argument("--package", type=Path, default=None, help="decoder package (default: the shipped one)")
    p.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="JSON result")


def run(args) -> int:
    from hls.build import default_package
    from host.decoder_package import DecoderPackage

    package = DecoderPackage.load(args.package or default_package())
    if args.on_board and not any(args.refs.glob("*.x86.npz")):
        raise LicError(f"no reference files in {args.refs}: run `make arm-check` on a workstation and copy "
                       f"build/arm-check/refs to the board (encoding needs the teacher, which the board lacks)")
    name = ensure_refs(args.refs, package)
    from host.container import FORMAT_V3, parse

    # the runtime shares y between the cores only where the file has one substream per tile
    shared = SHARED_STAGES if parse((args.refs / f"{name}.lic").read_bytes()).version >= FORMAT_V3 else ("integer_hs",)
    fabric = json.loads(args.estimates.read_text()) if args.estimates.is_file() else None
    fabric_fps = fabric["fps_at_frame"] if fabric else None
    here = f"{platform.machine()} ({platform.processor() or platform.node()}), 1 thread"
    result = {"file": name, "package": package.name, "fabric": fabric and {
        "board": fabric["board"], "fps": fabric_fps, "frame": fabric["frame"], "clock_mhz": fabric["clock_mhz"],
        "source": f"{args.estimates} (FINN analytical estimate, `make hw`)"}}

    measured = with_rans_y(time_stages(package, args.refs, name, max(3, args.repeat)))
    result["measured_here"] = {"machine": here, "seconds": measured}
    lines = []
    if args.on_board:
        result["board"] = {"method": f"measured: wall time on {here}", **board_rate(measured, fabric_fps, shared)}
        columns = []
    else:
        from bench.arm_check import cross_compile

        libs = cross_compile(REPO / "build" / "armhf")
        insns = {}
        for stage in COUNTED:
            print(f"counting ARM instructions: {stage}", file=sys.stderr)
            insns[stage] = count_instructions(args.root, libs, package.root, args.refs, name, stage, args.repeat)
        insns = with_rans_y(insns)
        lo, hi = args.cpi
        est = {c: {k: (v * c / (args.clock_mhz * 1e6) if isinstance(v, (int, float)) else v) for k, v in insns.items()}
               for c in (lo, hi)}
        result["arm_instructions"] = insns
        result["board"] = {
            "method": f"estimated: ARM instructions (qemu-arm TCG plugin, Debian armhf userland, C built with "
                      f"-mcpu=cortex-a9 -mfpu=neon) x CPI {lo}..{hi} (assumed) / {args.clock_mhz:.0f} MHz",
            "cpi_low": board_rate(est[lo], fabric_fps, shared), "cpi_high": board_rate(est[hi], fabric_fps, shared),
            "seconds_cpi_low": est[lo], "seconds_cpi_high": est[hi]}
        columns = [("ARM Minsn", {k: (v / 1e6 if isinstance(v, (int, float)) else v) for k, v in insns.items()}),
                   (f"A9 ms (CPI {lo})", {k: v for k, v in est[lo].items()}),
                   (f"A9 ms (CPI {hi})", {k: v for k, v in est[hi].items()})]
        lines.append(result["board"]["method"])
    columns.append((f"{'board' if args.on_board else 'x86'} ms (measured, {platform.machine()})", measured))

    def cell(v, scale):
        return f"{v * scale:.1f}" if isinstance(v, (int, float)) else "n/a"

    lines += ["", f"| stage ({name}, {package.name}) | " + " | ".join(c for c, _ in columns) + " |",
              "|---|" + "---:|" * len(columns)]
    for stage in ARM_STAGES + tuple(NOT_IN_RATE):
        label = NOT_IN_RATE.get(stage, stage)
        lines.append(f"| {label} | " + " | ".join(cell(vals.get(stage), 1 if "Minsn" in c else 1000)
                                                   for c, vals in columns) + " |")
    unavailable = {k: v for k, v in (result.get("arm_instructions") or measured).items() if isinstance(v, str)}
    for k, v in unavailable.items():
        lines.append(f"not counted: {k}: {v}")
    lines.append("")
    boards = ([("estimated, CPI %g" % args.cpi[0], result["board"]["cpi_low"]),
               ("estimated, CPI %g" % args.cpi[1], result["board"]["cpi_high"])] if not args.on_board
              else [("measured", result["board"])])
    fab = f"{fabric_fps:.1f} fps ({fabric['board']}, FINN estimate)" if fabric else \
        f"unknown ({args.estimates} missing: run `make hw`)"
    lines.append(f"fabric: {fab}")
    for label, b in boards:
        if b["arm_fps_two_cores"] is None:
            continue
        lines.append(f"ARM ({label}): one core {1000 * b['arm_one_core_s']:.1f} ms/frame = {b['arm_fps_one_core']:.1f} fps; "
                     f"two cores [{', '.join(b['core0'])}] | [{', '.join(b['core1'])}]"
                     + (f" + {', '.join(b['both_cores'])} shared by rows/substreams " if b["both_cores"] else " ")
                     + f"{1000 * b['arm_two_core_s']:.1f} ms = {b['arm_fps_two_cores']:.1f} fps"
                     + (f"; board rate {b['board_fps']:.1f} fps, limited by {b['limited_by']}" if fabric else "")
                     + (f" (without {', '.join(b['stages_missing'])})" if b["stages_missing"] else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(lines))
    return 0
