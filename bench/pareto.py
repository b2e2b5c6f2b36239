"""`lic pareto`: PSNR loss against decoder MACs for a set of quantised students of one teacher (the
channels x bit-width sweep the hardware build picks from), with FPGA estimates where `make hw`
has been run for a student.

Each student decodes the teacher's own y_hat of every image; its PSNR loss is the teacher's PSNR
minus its own (mean over images). A student is on the Pareto front when no other student has both
fewer MACs and a smaller loss. Writes pareto.json, pareto.md and pareto.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.evaluate import DEFAULT_DATA, _finite, first_images, load_images
from bench.students import decode_same_files
from host.decoder_package import sha256_file
from lic.errors import LicError
from quantize.qat import load_quant_student
from training.distill import resolve_teacher
from training.student_decoder import kmac_per_pixel


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("students", type=Path, nargs="+", help="quantised students (`lic qat --export` files)")
    p.add_argument("--teacher", default=None,
                   help="the students' teacher if it is not a shipped one (found by fingerprint otherwise)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR", help="images (default Kodak)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images")
    p.add_argument("--hw", type=Path, nargs="*", default=[], metavar="DIR",
                   help="`lic hw -o DIR` build folders; their estimates are matched to students by package")
    p.add_argument("-o", "--out", type=Path, default=Path("build/pareto"), metavar="DIR",
                   help="output folder (default build/pareto)")


def label(cfg, qcfg) -> str:
    return f"{','.join(map(str, cfg.channels))} {qcfg.label()}"


def pareto_front(rows: list[dict]) -> None:
    for r in rows:
        r["pareto"] = not any(o is not r and o["kmac_per_pixel"] <= r["kmac_per_pixel"]
                              and o["psnr_loss_db"] <= r["psnr_loss_db"]
                              and (o["kmac_per_pixel"], o["psnr_loss_db"]) != (r["kmac_per_pixel"], r["psnr_loss_db"])
                              for o in rows)


def hw_estimates(dirs: list[Path]) -> dict[str, dict]:
    """sha256 of the build's quant_student.pt -> its estimates summary."""
    out = {}
    for d in dirs:
        est_path, student = d / "estimates.json", d / "package" / "quant_student.pt"
        if est_path.is_file() and student.is_file():
            e = json.loads(est_path.read_text())
            out[sha256_file(student)] = {"board": e["board"], "fps": e["fps_at_frame"], "tile": e["tile"],
                                         **{f"{k}_pct": 100 * v["fraction"] for k, v in e["resources"].items()
                                            if k in ("LUT", "BRAM_18K", "DSP")}, "limited_by": e["limited_by"]}
    return out


def run(args) -> int:
    students = [(p, *load_quant_student(p)) for p in args.students]
    teachers = {fp for *_, fp in students}
    if len(teachers) != 1:
        raise LicError("the students come from different teachers; a Pareto sweep compares students of one teacher")
    teacher = resolve_teacher(argparse.Namespace(teacher=args.teacher, quality=None), teachers.pop())
    images = load_images(first_images(args.data, args.limit))
    records = decode_same_files(teacher, {"teacher": teacher.model.g_s, **{p: m for p, m, *_ in students}},
                                images, "pareto")
    mean_psnr = {k: float(np.mean([r["psnr"] for r in v])) for k, v in records.items()}
    hw = hw_estimates(args.hw)
    t = mean_psnr["teacher"]
    rows = []
    for p, model, cfg, qcfg, _ in students:
        s = mean_psnr[p]
        rows.append({"student": str(p), "label": label(cfg, qcfg), "kmac_per_pixel": kmac_per_pixel(model),
                     "psnr_db": s, "teacher_psnr_db": t, "psnr_loss_db": t - s, "hw": hw.get(sha256_file(p))})
    pareto_front(rows)
    rows.sort(key=lambda r: r["kmac_per_pixel"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pareto.json").write_text(json.dumps(_finite({"data": str(args.data), "images": len(images),
                                                              "teacher": teacher.name, "rows": rows}), indent=1))
    lines = [f"# Student sweep: {teacher.name}, {Path(args.data).name} ({len(images)} images), teacher {t:.2f} dB", "",
             "| student | kMAC/px | PSNR dB | loss dB | Pareto | board fps | LUT % | BRAM % |",
             "|---|---:|---:|---:|:-:|---:|---:|---:|"]
    for r in rows:
        h = r["hw"] or {}
        lines.append(f"| {r['label']} | {r['kmac_per_pixel']:.3f} | {r['psnr_db']:.2f} | {r['psnr_loss_db']:.2f} | "
                     f"{'yes' if r['pareto'] else ''} | {h.get('fps', float('nan')):.1f} | "
                     f"{h.get('LUT_pct', float('nan')):.0f} | {h.get('BRAM_18K_pct', float('nan')):.0f} |")
    (args.out / "pareto.md").write_text("\n".join(lines).replace("nan", "–") + "\n")
    _plot(rows, args.out / "pareto.png", f"{teacher.name}: PSNR loss vs decoder MACs")
    print("\n".join(lines).replace("nan", "–"))
    return 0


def _plot(rows: list[dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why: matplotlib loads only when a plot is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for r in rows:
        ax.scatter(r["kmac_per_pixel"], r["psnr_loss_db"], color="C0" if r["pareto"] else "0.6", zorder=3)
        ax.annotate(r["label"], (r["kmac_per_pixel"], r["psnr_loss_db"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    front = [r for r in rows if r["pareto"]]
    ax.plot([r["kmac_per_pixel"] for r in front], [r["psnr_loss_db"] for r in front], color="C0", lw=1)
    ax.axhline(0.5, color="C3", ls="--", lw=0.8, label="0.5 dB target")
    ax.set_xscale("log")
    ax.set_xlabel("decoder kMAC per output pixel (log)")
    ax.set_ylabel("PSNR loss vs teacher (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
