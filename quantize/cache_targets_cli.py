"""`lic cache-targets`: a frozen teacher's distillation targets over whole training images, once,
for `lic distill/qat --cache` (the cache itself: training/target_cache.py). With --refine the
latents are refined for the quantised student that decodes the encoder's files, which is why this
command lives after quantize/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lic.errors import LicError
from quantize.latent_refinement import refine_steps, refinement_for
from training.data import training_images
from training.loop import full_fp32_on_gpu, require_cuda
from training.options import DEFAULT_DATA, add_training_options
from training.target_cache import build_cache
from training.teacher import load_teacher
from training.teacher_codec import EntropyModels, shipped_integer_hs


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--teacher", default=None, help="teacher spec (zoo:..., a checkpoint path, or q1..q4)")
    g.add_argument("--quality", type=int, default=None, help="use the shipped teacher of this quality (1..4)")
    add_training_options(p, data=[DEFAULT_DATA])
    p.add_argument("--size", default="320x448",
                   help="HxW every entry is cropped to, multiples of 64 (default 320x448, from BSDS500's 321x481)")
    p.add_argument("-o", "--out", type=Path, required=True,
                   help="cache folder to write (replaced atomically; one that already holds the same targets is kept, "
                        "and a second build of the same folder waits for the first)")
    add_training_options(p, threads=None)
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="refine each entry's latents for the decoder of the encoder's files, as `lic encode --refine "
                        "STEPS` does (~10 s per entry per 100 steps on one core; an interrupted build continues where "
                        "it stopped when run again). Default 0: g_a's latents")
    p.add_argument("--student", type=Path, default=None,
                   help="with --refine and a tuned encoder: refine for this quantised student (`lic qat --export`) "
                        "instead of the shipped one, as for a candidate with its own tuned encoder "
                        "(training/recipes/long_run.sh)")
    p.add_argument("--device", default="cpu",
                   help="where the teacher (and the refinement's decoder) runs: cpu (default) or cuda. A GPU "
                        "computes the same targets to within float rounding (TF32 off), so a handful of y_hat "
                        "values may round the other way")
    p.add_argument("--batch-size", type=int, default=None,
                   help="entries computed together (default 1 on the CPU, 16 on a GPU); each entry's targets are "
                        "its own, equal to one at a time to within float rounding")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise LicError(f"--size must look like 320x448, got {text!r}") from None
    if h % 64 or w % 64 or h <= 0 or w <= 0:
        raise LicError(f"--size must be positive multiples of 64 (the hyper-latent's scale), got {text}")
    return h, w


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LicError(f"--device: not a torch device: {name!r} (cpu or cuda)") from None
    if device.type == "cuda":
        require_cuda(f"--device {name}")
        full_fp32_on_gpu()
    elif device.type != "cpu":
        raise LicError(f"--device {name}: cpu or cuda only")
    return device


def _entropy_models(teacher):
    """The entropy models of the files `lic encode --refine` writes with this teacher: an encoder tuned
    for a quantised student writes v2 files with its rate point's shipped integer h_s; a teacher its own."""
    if teacher.base_fingerprint is None:
        return EntropyModels(teacher)
    if teacher.quality is None:
        raise LicError(f"{teacher.name}: a tuned encoder without a rate point, so no integer h_s to refine for")
    return EntropyModels(teacher, shipped_integer_hs(teacher.quality))


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    size = _parse_size(args.size)
    device = _device(args.device)
    teacher = load_teacher(args.teacher, quality=args.quality)
    models = refinement = None
    batch = args.batch_size if args.batch_size is not None else 1 if device.type == "cpu" else 16
    if batch < 1:
        raise LicError(f"--batch-size takes a number of entries >= 1, not {batch}")
    if args.student is not None and not args.refine:
        raise LicError("--student names the decoder latents are refined for: it needs --refine STEPS")
    if refine_steps(args.refine):
        models = _entropy_models(teacher)
        refinement = refinement_for(models, args.refine, student=args.student)
        refinement.synthesis.to(device)
    images = training_images(args.data)
    m = build_cache(teacher, images, args.out, size, device, models, refinement, batch)
    print(f"{len(m['entries'])} entries of {size[0]}x{size[1]} from {len(images)} images in {m['seconds']} s "
          f"-> {args.out} ({m['values_clipped_to_int8']} y_hat/z values clipped to int8)", file=sys.stderr)
    return 0
