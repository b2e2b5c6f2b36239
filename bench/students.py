"""`lic eval-students`: the student decoders against their teachers on Kodak, same bitstreams.

For every shipped rate point that has a student (training/students/students.json), each image is
encoded once by the teacher (.lic v1: its bpp is every decoder's bpp), its y_hat entropy-decoded,
and synthesised three ways: the teacher's float g_s, the float student, the quantised student
(Brevitas; bit-identical to the QONNX/ONNX/FINN graphs, see tests). Where the rate point ships an
encoder tuned for its quantised student (`lic tune-encoder`), each image is also encoded by that
encoder (its own files and rate) and decoded by the quantised student, and with --refine once more
with each image's latents refined for that student (quantize/latent_refinement.py). Reports PSNR / MS-SSIM per
decoder, decoder kMAC/pixel and parameters, and BD-rate / BD-PSNR of each student against the
teacher. Writes results.json, summary.md and rd.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench import metrics
from bench.evaluate import (DEFAULT_DATA, _finite, codec_curve, first_images, load_images, mean_record,
                            parse_baselines, rd_points)
from bench.rd import compare, plot_rd
from host.container import parse
from host.image_io import write_atomic
from lic.errors import LicError
from quantize.latent_refinement import Refinement, refine_steps
from quantize.qat import load_quant_student
from quantize.quant_student import QuantConfig
from quantize.ship_students import STUDENTS_MANIFEST, read_students
from training.distill import load_float_student
from training.student_decoder import count_parameters, kmac_per_pixel, teacher_gs_kmac_per_pixel
from training.teacher import load_default, load_teacher, load_tuned_default, shipped_entry
from training.teacher_codec import EntropyModels, decode_y_hat, encode, shipped_integer_hs, to_rgb8

DECODERS = ("teacher", "float_student", "quant_student")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="folder of images (default Kodak)")
    p.add_argument("--quality", default="all", metavar="LIST",
                   help="rate points with shipped students: comma list such as 1,3 or 'all' (default)")
    p.add_argument("--students", type=Path, default=STUDENTS_MANIFEST, metavar="JSON",
                   help="students manifest (default training/students/students.json)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--baselines", default="jpeg,webp", metavar="LIST",
                   help="classical codecs the deployable codec (integer h_s + quantised student) is compared "
                        "with by BD-rate: comma list of jpeg, webp, avif, heif, or 'none' (default jpeg,webp)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="also encode each image with the tuned encoder and its latents refined for the quantised "
                        "student (`lic encode --refine STEPS`); the classical codecs are then compared with that "
                        "codec. About 25 s per Kodak image at 100 steps on one x86 core (default 0: off)")
    p.add_argument("-o", "--out", type=Path, default=Path("build/eval-students"), metavar="DIR",
                   help="output folder (default build/eval-students)")


def decode_same_files(teacher, decoders: dict, images, desc: str, integer_hs=None,
                      refinement=None) -> dict[str, list[dict]]:
    """Each image encoded once by `teacher` (.lic v1; v2 when `teacher` is a Teacher + integer h_s
    EntropyModels), its y_hat entropy-decoded, then synthesised
    by every g_s in `decoders`: per decoder, per image bpp / PSNR / MS-SSIM of the same file.
    With an `integer_hs`, each image is also encoded as .lic v2 (same y_hat, so same pixels), and
    its bytes are recorded as "bytes_v2" / "bpp_v2": the rate of the deployable codec. With a
    `refinement`, each file's latents are refined for its decoder first (`lic encode --refine`)."""
    records = {k: [] for k in decoders}
    for name, rgb in tqdm(images, desc=desc, unit="img", file=sys.stderr):
        h, w = rgb.shape[:2]
        data = encode(teacher, rgb, refinement)
        v2 = {}
        if integer_hs is not None:
            n = len(encode(EntropyModels(teacher, integer_hs), rgb))
            v2 = {"bytes_v2": n, "bpp_v2": metrics.bpp(n, h, w)}
        with torch.inference_mode():
            y_hat = decode_y_hat(teacher, parse(data))
            outs = {key: to_rgb8(g_s(y_hat)[..., :h, :w]) for key, g_s in decoders.items()}
        for key, out in outs.items():
            records[key].append({"image": name, "bytes": len(data), "bpp": metrics.bpp(len(data), h, w), **v2,
                                 "psnr": metrics.psnr(rgb, out), "ms_ssim": metrics.ms_ssim(rgb, out)})
    return records


def evaluate_point(entry: dict, images, refine: int = 0, decoders: tuple[str, ...] | None = None) -> dict:
    """One rate point's decoders on `images`; only those named in `decoders` (default: all) are decoded,
    since a comparison that reads two of them should not pay for the rest (a refined one costs ~25 s
    per Kodak image)."""
    wanted = lambda key: decoders is None or key in decoders
    teacher = load_default(entry["quality"])
    float_student, cfg, fp_float = load_float_student(entry["float"])
    quant_student, _, qcfg, fp_quant = load_quant_student(entry["quant"])
    for fp, what in ((fp_float, "float"), (fp_quant, "quantised")):
        if fp != teacher.fingerprint:
            raise LicError(f"the q{entry['quality']} {what} student was distilled from another teacher")
    on_teachers_files = {k: g_s for k, g_s in (("teacher", teacher.model.g_s), ("float_student", float_student),
                                               ("quant_student", quant_student)) if wanted(k) or
                         (k == "quant_student" and wanted("deployable"))}
    try:
        integer_hs = shipped_integer_hs(entry["quality"])
    except LicError:
        integer_hs = None
    records = decode_same_files(teacher, on_teachers_files, images, f"q{entry['quality']}", integer_hs) \
        if on_teachers_files else {}
    mean = {k: mean_record(v) for k, v in records.items()}
    if integer_hs is not None and "quant_student" in records:
        q = records["quant_student"]
        # what the board decodes: the v2 file's rate, the quantised student's pixels
        mean["deployable"] = {"bpp": float(np.mean([r["bpp_v2"] for r in q])), "psnr": mean["quant_student"]["psnr"],
                              "ms_ssim": mean["quant_student"]["ms_ssim"]}
    tuned_wanted = wanted("tuned_deployable") or (refine and wanted("refined_deployable"))
    if integer_hs is not None and tuned_wanted and (entry.get("encoder") or "tuned_encoder" in shipped_entry(
            entry["quality"])):
        # the deployable codec with the encoder tuned for its student: its own .lic v2 files (a
        # candidate's own, where its manifest entry names one, else the shipped one)
        tuned = load_teacher(str(entry["encoder"])) if entry.get("encoder") else load_tuned_default(entry["quality"])
        if tuned.decoder_fingerprint != teacher.fingerprint:
            raise LicError(f"{tuned.name}, the q{entry['quality']} tuned encoder, belongs to another teacher")
        if wanted("tuned_deployable"):
            records.update(decode_same_files(EntropyModels(tuned, integer_hs), {"tuned_deployable": quant_student},
                                             images, f"q{entry['quality']} tuned encoder"))
            mean["tuned_deployable"] = mean_record(records["tuned_deployable"])
        if refine and wanted("refined_deployable"):
            records.update(decode_same_files(
                EntropyModels(tuned, integer_hs), {"refined_deployable": quant_student}, images,
                f"q{entry['quality']} tuned encoder, latents refined", refinement=Refinement(
                    quant_student, tuned.lmbda, steps=refine)))
            mean["refined_deployable"] = mean_record(records["refined_deployable"])
    return {
        "quality": entry["quality"], "teacher_fingerprint": teacher.fingerprint.hex(),
        "student_config": cfg.to_dict(), "quant_config": qcfg.to_dict(),
        "kmac_per_pixel": {"teacher": teacher_gs_kmac_per_pixel(teacher.model.N, teacher.model.M),
                           "student": kmac_per_pixel(float_student)},
        "parameters": {"teacher": count_parameters(teacher.model.g_s), "student": count_parameters(float_student)},
        "mean": mean, "images": records,
    }


def summary_markdown(results: dict) -> str:
    pts = results["points"]
    lines = [f"# Student decoders vs teacher: {results['data']} ({len(results['images'])} images, same .lic files)", "",
             "| q | bpp | teacher PSNR | float student | quant student | Δ quant dB | teacher MS-SSIM | "
             "quant MS-SSIM | kMAC/px teacher | kMAC/px student | MAC ratio | params teacher | params student |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in pts:
        m, k, n = p["mean"], p["kmac_per_pixel"], p["parameters"]
        lines.append(f"| {p['quality']} | {m['teacher']['bpp']:.4f} | {m['teacher']['psnr']:.2f} | "
                     f"{m['float_student']['psnr']:.2f} | {m['quant_student']['psnr']:.2f} | "
                     f"{m['quant_student']['psnr'] - m['teacher']['psnr']:+.2f} | {m['teacher']['ms_ssim']:.4f} | "
                     f"{m['quant_student']['ms_ssim']:.4f} | {k['teacher']:.2f} | {k['student']:.3f} | "
                     f"{k['teacher'] / k['student']:.1f}x | {n['teacher']:,} | {n['student']:,} |")
    deployable = [p for p in pts if "deployable" in p["mean"]]
    if deployable:
        lines += ["", "Deployable codec (what the board decodes): .lic v2 with the integer h_s, quantised student.", "",
                  "| q | bpp, float h_s (v1) | bpp, integer h_s (v2) | integer h_s rate cost | PSNR | MS-SSIM |",
                  "|---|---:|---:|---:|---:|---:|"]
        for p in deployable:
            m, d = p["mean"], p["mean"]["deployable"]
            lines.append(f"| {p['quality']} | {m['quant_student']['bpp']:.4f} | {d['bpp']:.4f} | "
                         f"{100 * (d['bpp'] / m['quant_student']['bpp'] - 1):+.1f}% | {d['psnr']:.2f} | "
                         f"{d['ms_ssim']:.4f} |")
    for key, before, title in (
            ("tuned_deployable", "deployable",
             "With the encoder tuned for the quantised student (`lic tune-encoder`; its own files, .lic v2):"),
            ("refined_deployable", "tuned_deployable", "With the tuned encoder and each image's latents refined for "
                                                       "the quantised student (`lic encode --refine`; .lic v2):")):
        lines += _step_table(pts, key, before, title)
    lines += ["", "| test | anchor | BD-rate % | BD-PSNR dB | PSNR overlap | note |", "|---|---|---:|---:|---:|---|"]
    for b in results["bd"]:
        rate = "–" if b["bd_rate_percent"] is None else f"{b['bd_rate_percent']:+.1f}"
        db = "–" if b["bd_psnr_db"] is None else f"{b['bd_psnr_db']:+.2f}"
        overlap = "–" if b.get("psnr_overlap") is None else f"{100 * b['psnr_overlap']:.0f}%"
        lines.append(f"| {b['test']} | {b['anchor']} | {rate} | {db} | {overlap} | {b['reason'] or ''} |")
    return "\n".join(lines) + "\n"


def _step_table(pts: list[dict], key: str, before: str, title: str) -> list[str]:
    """Markdown lines: one deployable codec's mean per rate point against the codec it improves on."""
    rows = [p for p in pts if key in p["mean"]]
    if not rows:
        return []
    what = {"deployable": "teacher's encoder", "tuned_deployable": "tuned encoder"}[before]
    lines = ["", title, "", f"| q | bpp | PSNR | MS-SSIM | bpp vs {what} | PSNR vs {what} | PSNR vs teacher codec |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in rows:
        m, t = p["mean"], p["mean"][key]
        lines.append(f"| {p['quality']} | {t['bpp']:.4f} | {t['psnr']:.2f} | {t['ms_ssim']:.4f} | "
                     f"{100 * (t['bpp'] / m[before]['bpp'] - 1):+.1f}% | "
                     f"{t['psnr'] - m[before]['psnr']:+.2f} | {t['psnr'] - m['teacher']['psnr']:+.2f} |")
    return lines


def decoder_curve(points: list[dict], key: str, metric: str = "psnr") -> list[tuple[float, float]]:
    """(bpp, metric) of one decoder over the rate points that have it."""
    return [(p["mean"][key]["bpp"], p["mean"][key][metric]) for p in points if key in p["mean"]]


def plot_students(results: dict, path: Path) -> None:
    """The RD (PSNR and MS-SSIM) plot of an `lic eval-students` results.json."""
    points = results["points"]
    curve = lambda key, metric="psnr": decoder_curve(points, key, metric)
    labels = {"teacher": "teacher g_s (float)", "float_student": "float student",
              "quant_student": f"quantised student ({QuantConfig(**points[0]['quant_config']).label()})"}
    curves = {labels[k]: curve(k) for k in DECODERS}
    if curve("deployable"):
        curves["deployable: integer h_s + quantised student"] = curve("deployable")
    if curve("tuned_deployable"):
        curves["deployable, encoder tuned for the student"] = curve("tuned_deployable")
    if curve("refined_deployable"):
        curves["deployable, tuned encoder + latents refined per image"] = curve("refined_deployable")
    curves.update({c["label"]: rd_points(c) for c in results["baselines"].values()})
    plot_rd(curves, path, title=f"Student decoders, {Path(results['data']).name}, {len(results['images'])} images",
            ms_ssim_curves={labels[k]: curve(k, "ms_ssim") for k in DECODERS})


def evaluate_students(*, data: Path = DEFAULT_DATA, quality: str = "all", students: Path = STUDENTS_MANIFEST,
                      limit: int | None = None, baselines: str = "jpeg,webp", refine: int = 0) -> dict:
    """`lic eval-students`'s measurements, returned as its results.json holds them: each rate point of
    `quality` (comma list or 'all') in the `students` manifest on the first `limit` images of `data`,
    the BD figures, and the classical `baselines` (comma list or 'none') against the deployable codec."""
    entries = read_students(students)
    if quality != "all":
        try:
            wanted = {int(q) for q in quality.split(",")}
        except ValueError:
            raise LicError(f"--quality must be a comma list of integers or 'all', got {quality!r}") from None
        entries = [e for e in entries if e["quality"] in wanted]
    if not entries:
        raise LicError("no shipped student for the rate points asked for")

    refine = refine_steps(refine)
    images = load_images(first_images(data, limit))
    points = [evaluate_point(e, images, refine) for e in sorted(entries, key=lambda e: e["quality"])]
    curve = lambda key, metric="psnr": decoder_curve(points, key, metric)
    bd = [{"test": k, "anchor": "teacher", **compare(curve("teacher"), curve(k))}
          for k in ("float_student", "quant_student", "tuned_deployable", "refined_deployable") if len(curve(k)) >= 2]
    for test, anchor in (("tuned_deployable", "deployable"), ("refined_deployable", "tuned_deployable")):
        if len(curve(test)) >= 2:
            bd.append({"test": test, "anchor": anchor, **compare(curve(anchor), curve(test))})
    # What the board decodes: with the tuned encoder where every point has one, and its latents
    # refined when asked (the same decoder; only the encoding workstation works harder)
    best = next((k for k in ("refined_deployable", "tuned_deployable") if len(curve(k)) == len(points)), "deployable")
    codecs = {}
    if len(curve(best)) >= 2:
        # BD-rate of each classical codec against the deployable codec: positive = the codec needs more bits
        for codec in parse_baselines(baselines):
            c = codec_curve(codec, images)
            codecs[codec.name] = c
            bd.append({"test": codec.label, "anchor": best, **compare(curve(best), rd_points(c))})
    return {"data": str(data), "images": [n for n, _ in images], "points": points, "bd": bd,
            "baselines": codecs}


def run(args) -> int:
    results = evaluate_students(data=args.data, quality=args.quality, students=args.students, limit=args.limit,
                                baselines=args.baselines, refine=args.refine)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_students(results, args.out / "rd.png")
    summary = summary_markdown(results)
    write_atomic(args.out / "summary.md", summary.encode())
    write_atomic(args.out / "results.json", (json.dumps(_finite(results), indent=1) + "\n").encode())
    print(summary, end="")
    return 0
