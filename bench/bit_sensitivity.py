"""Which ReLU of a shipped quantised student loses most at its bit width? Each ReLU in turn is raised
to --bits (the others kept), re-calibrated on teacher latents of training photos, and the student
decodes the teacher's y_hat of Kodak images: PSNR per variant, no retraining. It ranks where extra
activation bits are worth their fabric cost; `lic hw` prices each candidate (README, "What was tried").

    python -m bench.bit_sensitivity --quality 3 --limit 8
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench.evaluate import DEFAULT_DATA, first_images, load_images
from lic.errors import LicError
from quantize.qat import MAX_BITS, load_quant_student
from quantize.quant_student import calibrate_activations, n_relu, with_quantisers
from quantize.ship_students import STUDENTS_MANIFEST, read_students
from training.data import training_images
from training.distill import load_float_student
from training.loop import DEFAULT_DATA as TRAINING_DATA
from training.teacher import load_default
from training.teacher_codec import to_tensor


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", type=int, default=3, help="shipped rate point (default 3)")
    p.add_argument("--bits", type=int, default=8, help="bit width tried at each ReLU (default 8)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images decoded (default Kodak)")
    p.add_argument("--limit", type=int, default=8, help="only the first N images (default 8)")
    p.add_argument("--calib-images", type=int, default=8,
                   help="training photos whose teacher latents set the re-calibrated scales (default 8)")
    p.add_argument("-o", "--out", type=Path, default=None, help="write the results as JSON here")


@torch.inference_mode()
def _psnr(model, pairs) -> float:
    values = []
    for x, y_hat in pairs:
        mse = float(((model(y_hat).clamp(0, 1) - x) ** 2).mean())
        values.append(10 * np.log10(1 / mse))
    return float(np.mean(values))


def sensitivity(quality: int, bits: int, images, calib_images) -> dict:
    if not 2 <= bits <= MAX_BITS:
        raise LicError(f"--bits must be 2..{MAX_BITS}")
    entry = next((e for e in read_students(STUDENTS_MANIFEST) if e["quality"] == quality), None)
    if entry is None:
        raise LicError(f"no shipped student for q{quality}")
    teacher = load_default(quality).model.eval()
    quant, cfg, qcfg, _ = load_quant_student(entry["quant"])
    float_student, _, _ = load_float_student(entry["float"])
    with torch.inference_mode():
        # the teacher's files decode to round(y): its hyperprior has no means
        pairs = [(x, torch.round(teacher.g_a(x))) for x in (to_tensor(rgb) for _, rgb in images)]
        calib = [torch.round(teacher.g_a(to_tensor(rgb))) for _, rgb in calib_images]
    shipped_bits = qcfg.act_bits_list(n_relu(cfg))
    rows = [{"variant": "float student", "psnr": _psnr(float_student.eval(), pairs)},
            {"variant": f"shipped A{'/'.join(map(str, shipped_bits))}", "psnr": _psnr(quant, pairs)}]
    for i in range(len(shipped_bits)):
        if shipped_bits[i] == bits:
            continue
        trial = list(shipped_bits)
        trial[i] = bits
        model, carried = with_quantisers(quant, replace(qcfg, act_bits=trial))
        calibrate_activations(model, calib, keep=carried)
        rows.append({"variant": f"ReLU {i} at {bits} bits", "act_bits": trial, "psnr": _psnr(model.eval(), pairs)})
    base = rows[1]["psnr"]
    for r in rows:
        r["delta_db"] = r["psnr"] - base
    return {"quality": quality, "images": len(images), "calibration_images": len(calib_images), "rows": rows}


def run(args) -> int:
    images = load_images(first_images(args.data, args.limit))
    calib = load_images(training_images([TRAINING_DATA])[:args.calib_images])
    result = sensitivity(args.quality, args.bits, images, calib)
    print(f"q{result['quality']}, {result['images']} images of {args.data}, no retraining:")
    for r in result["rows"]:
        print(f"  {r['variant']:<24} {r['psnr']:6.2f} dB  ({r['delta_db']:+.2f})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bit_sensitivity", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except LicError as e:
        print(f"bit_sensitivity: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
