"""`lic bench` (`make bench`): FPGA vs GPU vs CPU, frames per second and joules per frame, for the
same .lic files, every figure labelled measured / estimated / published with its method.

  lic bench                    CPU rows measured here, FPGA rows estimated from `make hw` (built when
                               missing), published anchors, GPU rows merged from a results file;
                               writes build/bench/{bench.json, report.md, *.png}
  lic bench --device cuda      on a GPU machine: GPU rows measured (torch fp32/fp16/bf16, onnxruntime
                               CUDA when installed; NVML energy) -> build/bench/gpu.json, which a later
                               `lic bench` (anywhere: copy the file) merges into the report
  lic bench SUBCOMMAND ...     other benchmarks living in bench/ (e.g. `lic bench entropy`), each a
                               module with add_arguments/run listed in BENCH_SUBCOMMANDS
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import bench_report
from bench.energy import rapl_counter
from bench.evaluate import DEFAULT_DATA, _finite, first_images, load_images
from bench.fpga import POWER_MODEL, fpga_rows, load_estimates, pynq_rails_watts
from bench.frames import HD_SIZES, frame_sets
from bench.gpu import GpuSession, gpu_rows
from bench.measure import cpu_rows, encode_frames, entropy_half, load_models
from bench.students import evaluate_point
from hls.boards import load_board
from lic.errors import LicError
from quantize.ship_students import STUDENTS_MANIFEST, read_students
from training.loop import require_cuda

DEFAULT_BOARDS = "pynq-z2,zcu104,kv260"
GPU_RESULTS = "gpu.json"
# The GPU rows measured on a lent H100 (see its "command", "models" and "note"): what `lic bench`
# merges when OUT holds no gpu.json of its own, so a report made without a GPU still has GPU rows.
SHIPPED_GPU_RESULTS = Path(__file__).resolve().parent / "data" / "gpu_h100.json"
# Other `lic bench` benchmarks: name -> (module with add_arguments/run, help). Listed only when the
# module exists, so each can land on its own.
BENCH_SUBCOMMANDS = {
    "entropy": ("bench.entropy", "C rANS decoder vs CompressAI's on the same Kodak streams: ms per image, speed ratio"),
    "substreams": ("bench.substreams", "format v3 tile substreams vs v2: rate overhead on Kodak, y decode time "
                                       "with 1 and 2 threads"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (default): the full report; cuda: measure this machine's GPU and write "
                        f"OUT/{GPU_RESULTS} for a later `lic bench` to merge")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="Kodak folder (default shipped)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N Kodak images in the Kodak frame set (quick runs)")
    p.add_argument("--sizes", default="kodak," + ",".join(HD_SIZES), metavar="LIST",
                   help="frame sets: kodak, 720p, 1080p (default all three)")
    p.add_argument("--hd-frames", type=int, default=4, metavar="N",
                   help="frames per HD size, mosaics of Kodak images (default 4)")
    p.add_argument("--boards", default=DEFAULT_BOARDS, metavar="LIST",
                   help=f"boards for the FPGA rows, or 'none' (default {DEFAULT_BOARDS})")
    p.add_argument("--no-build", action="store_true",
                   help="do not run `lic hw` for a board whose estimates are missing (skip the board)")
    p.add_argument("--board-watts", action="append", default=[], metavar="BOARD=WATTS|rails",
                   help="measured board power for the fpga-board row: an external meter's mean reading in "
                        "watts, or 'rails' to read PYNQ's rails (on a ZCU104/KV260 board)")
    p.add_argument("--arm-stages", action="append", default=[], metavar="BOARD=FILE",
                   help="ARM stage times for a board (default fpga_projects/BOARD/build/arm_stages.json)")
    p.add_argument("--power-model", type=Path, default=None, metavar="JSON",
                   help="FPGA resource power model (default bench/data/fpga_power_model.json)")
    p.add_argument("--gpu-results", type=Path, default=None, metavar="JSON",
                   help=f"GPU results to merge (default OUT/{GPU_RESULTS} if present)")
    p.add_argument("--rd-limit", type=int, default=8, metavar="N",
                   help="first N Kodak images for the rate-distortion curves q1..q4 (default 8, to keep `make "
                        "bench` short; `lic eval-students` does all 24; 0 skips them)")
    p.add_argument("--window", type=float, default=10.0, metavar="S",
                   help="GPU: seconds of repeated work per energy measurement (default 10)")
    p.add_argument("--idle", type=float, default=10.0, metavar="S", help="GPU: seconds of idle power (default 10)")
    p.add_argument("-o", "--out", type=Path, default=Path("build/bench"), metavar="DIR",
                   help="output folder (default build/bench)")
    extra = {n: v for n, v in BENCH_SUBCOMMANDS.items() if importlib.util.find_spec(v[0]) is not None}
    if extra:
        sub = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
        for name, (module, help_text) in extra.items():
            sp = sub.add_parser(name, help=help_text, description=help_text)
            importlib.import_module(module).add_arguments(sp)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        board, sep, value = item.partition("=")
        if not sep or not board or not value:
            raise LicError(f"{flag} takes BOARD=VALUE, got {item!r}")
        out[board] = value
    return out


def _boards(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    if names == ["none"]:
        return []
    for n in names:
        load_board(n)  # unknown board: one line now, not after the CPU runs
    return names


def run(args) -> int:
    sub = getattr(args, "bench_command", None)
    if sub:
        return importlib.import_module(BENCH_SUBCOMMANDS[sub][0]).run(args)
    if args.hd_frames < 1:
        raise LicError(f"--hd-frames must be at least 1, got {args.hd_frames}")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if args.device == "cuda":
        return run_gpu(args, sizes)
    return run_report(args, sizes)


def _frames(args, sizes):
    """--limit shortens the Kodak set; the HD mosaics always draw on the whole folder."""
    images = load_images(first_images(args.data, None))
    return frame_sets(images, sizes, args.hd_frames, args.limit)


def run_report(args, sizes: list[str]) -> int:
    boards = _boards(args.boards)
    board_watts = _pairs(args.board_watts, "--board-watts")
    arm_files = {b: Path(f) for b, f in _pairs(args.arm_stages, "--arm-stages").items()}
    if args.gpu_results:
        if not args.gpu_results.is_file():
            raise LicError(f"--gpu-results: no such file {args.gpu_results}")
        gpu_file = args.gpu_results
    else:
        gpu_file = next((f for f in (args.out / GPU_RESULTS, SHIPPED_GPU_RESULTS) if f.is_file()),
                        args.out / GPU_RESULTS)
    t_start = time.time()
    models = load_models()
    sets = _frames(args, sizes)
    counter, energy_how = rapl_counter()
    print(f"lic bench: CPU energy: {energy_how}", file=sys.stderr)
    rows, notes = [], [f"CPU energy: {energy_how}"]
    for fs in sets:
        files = encode_frames(models, fs)
        rows += cpu_rows(models, fs, files, counter, energy_how)
    quant_quality = {r["frame_set"]: {**{k: r[k] for k in ("bpp", "psnr", "ms_ssim", "vif")},
                                      "precision": r["precision"],
                                      "from": "the CPU onnxruntime decode of the same files (the FINN graph is "
                                              "bit-exact with it: tests/test_host_runtime.py)"}
                     for r in rows if r["decoder"] == "quant_student"}
    frame_sizes = [(fs.name, fs.width, fs.height) for fs in sets]
    for board in boards:
        rows += board_rows(board, models, frame_sizes, quant_quality, board_watts, arm_files, args, notes)
    rows += bench_report.published_rows()
    gpu_meta = None
    if gpu_file.is_file():
        gpu_meta, gpu_rows = bench_report.read_gpu_results(gpu_file)
        rows += gpu_rows
        notes.append(gpu_note(gpu_file, gpu_meta, len(gpu_rows), models.info))
    else:
        line = (f"GPU: no rows: no GPU results at {gpu_file}. Run `lic bench --device cuda` on a machine with an "
                f"NVIDIA GPU and copy its {GPU_RESULTS} here (or pass --gpu-results FILE).")
        print(line, file=sys.stderr)
        notes.append(line)
    rd = rd_curves(args) if args.rd_limit else None
    result = bench_report.assemble(rows, notes=notes, models=models.info, frame_sets=[
        {"name": fs.name, "width": fs.width, "height": fs.height, "frames": len(fs.frames), "how": fs.how}
        for fs in sets], rd=rd, gpu=gpu_meta, seconds=time.time() - t_start)
    bench_report.write_all(result, args.out)
    print(f"lic bench: {len(result['rows'])} rows -> {args.out}/bench.json, report.md "
          f"({time.time() - t_start:.0f} s)", file=sys.stderr)
    return 0


def board_rows(board, models, frame_sizes, quality, board_watts, arm_files, args, notes) -> list[dict]:
    est = load_estimates(board, models.package)
    if est is None:
        if args.no_build:
            notes.append(f"{board}: no estimates.json for package {models.package.name} and --no-build: no rows")
            print(f"lic bench: {notes[-1]}", file=sys.stderr)
            return []
        print(f"lic bench: {board}: no estimates for this package; running `lic hw --board {board}`", file=sys.stderr)
        done = subprocess.run([sys.executable, "-m", "lic.cli", "hw", "--board", board], stdout=sys.stderr)
        if done.returncode != 0:
            raise LicError(f"`lic hw --board {board}` failed (exit {done.returncode}); see its output above")
        est = load_estimates(board, models.package)
        if est is None:
            raise LicError(f"`lic hw --board {board}` left no estimates for package {models.package.name}")
    watts, how = None, ""
    if board in board_watts:
        value = board_watts[board]
        if value == "rails":
            watts, how = pynq_rails_watts(), "PYNQ power rails (pynq.get_rails), 5 s mean"
        else:
            try:
                watts = float(value)
            except ValueError:
                raise LicError(f"--board-watts {board}={value}: not a number of watts or 'rails'") from None
            how = "external power meter (mean reading passed as --board-watts)"
    return fpga_rows(board, est, frame_sizes, quality, models.complexity["quant_student"], watts, how,
                     args.power_model or POWER_MODEL, arm_files.get(board))


def rd_curves(args) -> dict:
    """Rate-distortion of each decoder over the shipped rate points (the teacher's own .lic v1 files:
    only q3 has an integer h_s), through eval-students' loop."""
    images = load_images(first_images(args.data, args.rd_limit))
    points = [evaluate_point(e, images) for e in sorted(read_students(STUDENTS_MANIFEST), key=lambda e: e["quality"])]
    return {"images": len(images), "files": ".lic v1 (teacher's float h_s), one per image and rate point",
            "points": [{"quality": p["quality"], **{k: {m: p["mean"][k][m] for m in ("bpp", "psnr", "ms_ssim")}
                                                   for k in p["mean"]}} for p in points]}


def gpu_note(path: Path, meta: dict, n: int, models: dict) -> str:
    """Where the merged GPU rows come from, and whether they decoded the files this report decodes."""
    line = f"GPU rows merged from {path} ({n} rows, measured on {meta['machine']}"
    line += f", {meta['created']})" if meta.get("created") else ")"
    if meta.get("command"):
        line += f" by `{meta['command']}`"
    theirs = meta.get("models")
    if theirs and theirs != models:
        def which(m):
            return (f"{m.get('teacher')} files, quant student {str(m.get('quant_student_sha256'))[:12]}, "
                    f"float student {str(m.get('float_student_sha256'))[:12]}")
        line += (f"; they decoded other weights ({which(theirs)}) than this report ({which(models)}): their fps "
                 f"and joules hold for the same architectures, their quality columns are the older files'")
    if meta.get("note"):
        line += f". {meta['note']}"
    return line


def run_gpu(args, sizes: list[str]) -> int:
    require_cuda("--device cuda", "; run it on a machine with an NVIDIA GPU, a CUDA build of torch and nvidia-ml-py")

    t_start = time.time()
    models = load_models()
    sets = _frames(args, sizes)
    session = GpuSession(args.idle)  # idle power first, before this process has run any work
    rows = []
    for fs in sets:
        files = encode_frames(models, fs)
        entropy, _ = entropy_half(models, fs, files)
        rows += gpu_rows(models, fs, files, entropy, args.window, session)
    out = args.out / GPU_RESULTS
    bench_report.write_gpu_results(out, rows, session.machine, models.info, "lic " + " ".join(sys.argv[1:]))
    print(f"lic bench: {len(rows)} GPU rows -> {out} ({time.time() - t_start:.0f} s); "
          f"run `lic bench` with that file in {args.out}/ to merge them into the report", file=sys.stderr)
    return 0
