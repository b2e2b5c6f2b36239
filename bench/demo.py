"""`lic demo` (`make demo`): the main job, end to end, with the shipped default models.

  1. encode every image for the default decoder package (.lic v2, the files a board decodes): with the
     encoder tuned for its student where the package was exported for one, else the teacher's, and
     each image's latents refined for that student (--refine); and with the teacher + integer h_s
     for the teacher's row (not refined: its g_s has 10x the MACs to run backwards through)
  2. decode: the teacher's files with its float g_s (torch), the board's files with the quantised
     student through the torch-free host runtime (onnx backend here; pynq on a board), entropy
     decoding overlapped
  3. check on one image that whole-frame, tiled, and (after step 4) FINN-graph decodes are identical
  4. `make hw BOARD=pynq-z2`: FINN build up to HLS code, with resource / fps estimates
  5. report: build/demo/report.md (table), rd.png (per-image rate-distortion), crops.png
     (original / teacher / student side by side)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import metrics
from bench.evaluate import DEFAULT_DATA, _finite, first_images, load_images
from board import rate as board_rate
from hls.estimates import host_stages_from_runtime
from host.backends import make_backend
from host.decode_cli import default_package
from host.decoder_package import DecoderPackage
from host.image_io import save_png, write_atomic
from host.runtime import HostDecoder, StageTimes
from lic.errors import LicError
from quantize.latent_refinement import refinement_for
from training.teacher import load_default
from training.teacher_codec import EntropyModels, decode, encode, package_encoder

CROP = 192


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="images (default Kodak)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--board", default="pynq-z2", help="board for the hardware estimates (default pynq-z2)")
    p.add_argument("--no-hw", action="store_true", help="skip the FINN build (step 4)")
    p.add_argument("--refine", type=int, default=100, metavar="STEPS",
                   help="refine each board file's latents for the package's student (`lic encode --refine`): "
                        "better pictures for the bits, 15-18 s per Kodak image on 2 x86 cores at 100 steps "
                        "(default 100; 0: g_a's latents as they are, the 1-minute demo)")
    p.add_argument("-o", "--out", type=Path, default=Path("build/demo"), metavar="DIR",
                   help="output folder (default build/demo)")


def run(args) -> int:
    out = args.out
    (out / "lic").mkdir(parents=True, exist_ok=True)
    package = DecoderPackage.load(default_package())
    models = package_encoder(package)
    teacher_models = models
    if models.teacher.base_fingerprint is not None:
        # The package decodes the files of an encoder tuned for its student; the teacher is compared
        # on its own files (same integer h_s), each codec at its own rate.
        teacher_models = EntropyModels(load_default(models.teacher.quality), models.integer_hs)
    refinement = refinement_for(models, args.refine)
    images = load_images(first_images(args.data, args.limit))

    files, teacher_files = {}, {}
    refined = f", latents refined {args.refine} steps" if refinement else ""
    for name, rgb in tqdm(images, desc=f"encode ({models.name}{refined})", unit="img", file=sys.stderr):
        data = encode(models, rgb, refinement)
        write_atomic(out / "lic" / (Path(name).stem + ".lic"), data)
        files[name] = data
        teacher_files[name] = data if teacher_models is models else encode(teacher_models, rgb)

    rows, teacher_out = [], {}
    t0 = time.perf_counter()
    for name, rgb in tqdm(images, desc="decode (teacher)", unit="img", file=sys.stderr):
        teacher_out[name] = decode(teacher_models, teacher_files[name], name)
    teacher_s = time.perf_counter() - t0

    decoder = HostDecoder(package, make_backend("onnx", package))
    totals = StageTimes()
    student_out = {}
    t0 = time.perf_counter()
    for name, rgb_s, times in tqdm(decoder.decode_stream((n, files[n]) for n, _ in images), total=len(images),
                                   desc="decode (student, host runtime)", unit="img", file=sys.stderr):
        if isinstance(rgb_s, LicError):
            raise rgb_s
        student_out[name] = rgb_s
        totals += times
    student_s = time.perf_counter() - t0
    for name, rgb in images:
        h, w = rgb.shape[:2]
        rows.append({"image": name, "bpp": metrics.bpp(len(files[name]), h, w),
                     "teacher_bpp": metrics.bpp(len(teacher_files[name]), h, w),
                     "teacher_psnr": metrics.psnr(rgb, teacher_out[name]),
                     "student_psnr": metrics.psnr(rgb, student_out[name]),
                     "teacher_ms_ssim": metrics.ms_ssim(rgb, teacher_out[name]),
                     "student_ms_ssim": metrics.ms_ssim(rgb, student_out[name])})

    # Same file, same student: whole frame vs accelerator-sized tiles vs the FINN HW-layer graph.
    check_name = images[-1][0]
    exact = {"image": check_name}
    tiled = HostDecoder(package, make_backend("onnx", package), tile=package.tile).decode(files[check_name])[0]
    exact["onnx_tiled_equals_whole_frame"] = bool(np.array_equal(tiled, student_out[check_name]))

    hw = None
    if not args.no_hw:
        from hls.build import run_build  # why: loads FINN, which reads its settings on import (not with --no-hw)

        # run_build prefers the board's own ARM estimate (`make board-rate`); else this run's x86 times
        host = None if board_rate.result_path(args.board).is_file() else (
            host_stages_from_runtime({k: v / len(images) for k, v in totals.seconds.items()}),
            f"x86-measured by the host runtime (lic demo, mean of {len(images)} images of {args.data})")
        hw = run_build(args.board, package.root, host=host)
        sim = HostDecoder(package, make_backend("finn-sim", package, hw_dir=Path(hw["build_dir"])))
        t = time.perf_counter()
        exact["finn_sim_equals_onnx"] = bool(np.array_equal(sim.decode(files[check_name])[0], student_out[check_name]))
        exact["finn_sim_seconds"] = time.perf_counter() - t

    summary = {"data": str(args.data), "package": package.name, "encoder": models.name, "teacher": teacher_models.name,
               "refine_steps": args.refine,
               "images": rows, "mean": {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"},
               "decode_seconds_per_image": {"teacher_torch": teacher_s / len(images),
                                            "student_host_onnx": student_s / len(images),
                                            "student_stages": {k: v / len(images) for k, v in totals.seconds.items()}},
               "student": package.manifest["student"], "bit_exact": exact, "hw": hw and {
                   k: hw[k] for k in ("board", "tile", "rates", "fps_at_frame", "target_fps", "limited_by", "resources",
                                      "roofline", "fits_budget", "make_hw_seconds")}}
    write_atomic(out / "demo.json", (json.dumps(_finite(summary), indent=1) + "\n").encode())
    _rd_plot(rows, out / "rd.png")
    crop = _crops(images[-1][1], teacher_out[check_name], student_out[check_name])
    save_png(out / "crops.png", crop)
    report = _report(summary, package)
    write_atomic(out / "report.md", report.encode())
    print(report, end="")
    if not all(v for k, v in exact.items() if isinstance(v, bool)):
        raise LicError(f"bit-exactness check failed: {exact}")
    return 0


def _rd_plot(rows, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why: matplotlib loads only when a plot is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    same_files = all(r["bpp"] == r["teacher_bpp"] for r in rows)
    for key, rate, label, color in (("teacher_psnr", "teacher_bpp", "teacher codec (float g_s, torch)", "C0"),
                                    ("student_psnr", "bpp", "board codec (quantised student, host runtime)", "C1")):
        bpp = [r[rate] for r in rows]
        ax.scatter(bpp, [r[key] for r in rows], s=14, color=color, label=label, alpha=0.8)
        ax.scatter([np.mean(bpp)], [np.mean([r[key] for r in rows])], s=120, marker="*", color=color,
                   edgecolor="k", zorder=4)
    ax.set_xlabel("bpp (same .lic file for both decoders)" if same_files else
                  "bpp (each codec's own .lic files; the board's encoder is tuned for its student)")
    ax.set_ylabel("PSNR (dB, RGB)")
    ax.set_title("Kodak, one point per image; stars: means", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _crops(original, teacher, student) -> np.ndarray:
    h, w = original.shape[:2]
    y, x = max(0, h // 2 - CROP // 2), max(0, w // 2 - CROP // 2)
    parts = [a[y:y + CROP, x:x + CROP] for a in (original, teacher, student)]
    gap = np.full((parts[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)


def _report(s: dict, package) -> str:
    m, d = s["mean"], s["decode_seconds_per_image"]
    st = d["student_stages"]
    lines = [f"# lic-fpga demo: {Path(s['data']).name}, {len(s['images'])} images", "",
             f"Encoders: {s['teacher']} for the teacher, {s['encoder']} for the board (.lic v2"
             + (f"; each image's latents refined for the student, {s['refine_steps']} steps" if s['refine_steps'] else "")
             + "). Student package: "
             f"`{package.root}` ({s['student']['kmac_per_pixel']} kMAC/px, {s['student']['parameters']:,} parameters).",
             "", "| decoder | bpp | PSNR dB | MS-SSIM | decode s/img (this machine) |", "|---|---:|---:|---:|---:|",
             f"| teacher g_s, float, torch | {m['teacher_bpp']:.4f} | {m['teacher_psnr']:.2f} | "
             f"{m['teacher_ms_ssim']:.4f} | {d['teacher_torch']:.3f} |",
             f"| quantised student, host runtime, onnx | {m['bpp']:.4f} | {m['student_psnr']:.2f} | "
             f"{m['student_ms_ssim']:.4f} | {d['student_host_onnx']:.3f} |", "",
             "Student decode stages (mean s/img): " + ", ".join(f"{k} {v:.4f}" for k, v in st.items()), "",
             "Bit-exact checks on " + s["bit_exact"]["image"] + ": "
             + ", ".join(f"{k} = {v}" for k, v in s["bit_exact"].items() if isinstance(v, bool)), ""]
    hw = s["hw"]
    if hw:
        r = hw["resources"]
        lines += [f"## FPGA estimate ({hw['board']}, `make hw`, {hw['make_hw_seconds']:.0f} s)", "",
                  f"Tile {hw['tile']}x{hw['tile']} latents, 768x512 frames (target {hw['target_fps']} fps); folding "
                  f"limited by {hw['limited_by']}; fits budget: {hw['fits_budget']}.", "",
                  *[f"- {k}: {v.get('fps', v.get('ms')) or 0:.3g} ({v['what']}"
                    + (f"; limited by {v['limited_by']}, host times {v['host_times_source']}" if "limited_by" in v else "")
                    + ")" for k, v in hw["rates"].items()], "",
                  "| resource | used | device | % |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['used']:.0f} | {v['available']} | {100 * v['fraction']:.1f} |" for k, v in r.items()
                  if v["available"]]
        rf = hw["roofline"]
        if rf.get("roofline_fps"):
            lines += ["", f"Compute ceiling: {rf['macs_per_cycle']:.0f} MAC/cycle of {rf['budget_macs_per_cycle']:.0f} "
                          f"the budget's LUT-multiplier and DSP lanes allow ({100 * rf['fraction_of_roofline']:.0f}%)."]

    lines += ["", "## Board rate (ARM stages + fabric: the slowest stage sets it)", ""]
    lines += board_rate.report_lines(hw["fps_at_frame"] if hw else None, hw["board"] if hw else "pynq-z2")
    lines += ["", "Files: rd.png (per-image RD), crops.png (original | teacher | student), demo.json, lic/*.lic"]
    return "\n".join(lines) + "\n"
