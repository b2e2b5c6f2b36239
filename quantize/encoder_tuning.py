"""`lic tune-encoder`: fine-tune the teacher's analysis transform g_a for the quantised student that
decodes its files (the asymmetric step of DESIGN.md: a heavy encoder on the workstation carries
complexity the board's small decoder cannot).

Only g_a trains. h_a, the entropy models, the float h_s (whose integer twin the files use) and the
student stay frozen, so the decoder package keeps every table and weight it has: a tuned encoder
changes which latents a file carries, never how they are decoded. Loss, per step on training crops:

    lambda * 255^2 * MSE(student(round(g_a(x))), x)  +  bits(y | h_s(z)) + bits(z)  per pixel

with the teacher's own lambda: the rate-distortion objective the teacher was trained with, but
with the board's decoder in place of the teacher's g_s. The rate is priced with the float h_s on z
rounded as it is coded (the EntropyBottleneck's torch.round: no gradient reaches g_a through z, only
through y); pricing y under the integer h_s's scales instead (the files' own rate) gave 2-4% larger
v2 files on Kodak at the same PSNR (README, ablation). Rounding passes gradients straight through to g_a (the student sees integers, as on the
board); the rate of y uses additive noise, as in CompressAI's training.

The export holds g_a alone (fp16 like the shipped teachers) and its teacher's fingerprint;
`load_teacher` puts it into that teacher, and the result has its own fingerprint, so files of the
tuned encoder and of the teacher never get confused (training/teacher.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from host.decoder_package import sha256_file
from lic.errors import LicError
from quantize.qat import load_quant_student
from training.data import RandomCrops
from training.distill import psnr, resolve_teacher
from training.loop import (TimeBox, atomic_save, cosine_lr, data_provenance, init_provenance, set_lr, setup_distributed,
                           write_provenance)
from training.options import DEFAULT_DATA, add_run_arguments, add_training_options
from training.target_cache import CachedTargets
from training.teacher import TUNED_ENCODER_KIND as ENCODER_KIND
from training.teacher import load_default, load_teacher



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", type=Path, required=True,
                   help="the quantised student the encoder is tuned for (`lic qat --export`); its teacher, a shipped "
                        "one, provides g_a, h_a, h_s and the entropy models")
    p.add_argument("--cache", type=Path, default=None,
                   help="that teacher's `lic cache-targets` folder: its whole training images are used (only the "
                        "images; the teacher runs nowhere else here). Without it, random crops from --data")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this tuned encoder (`lic tune-encoder --export`) instead of the teacher's g_a")
    add_training_options(p, data=[DEFAULT_DATA], crop=256, batch_size=4, steps=1000, lr=5e-5, lr_final=5e-6,
                         helps={"crop": "square crop size in pixels, a multiple of 64 (default {default})"})
    p.add_argument("--lmbda", type=float, default=None,
                   help="rate-distortion trade-off (default: the teacher's own lambda)")
    add_training_options(p, clip=1.0)
    add_run_arguments(p, save_every=100, log_every=20, export_what="the tuned g_a")


def _round_ste(y: torch.Tensor) -> torch.Tensor:
    return y + (torch.round(y) - y).detach()


def rd_terms(model, student, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(student's image before clamping, bits per pixel of y and z) for a batch of images in [0, 1]."""
    y = model.g_a(x)
    z = model.h_a(torch.abs(y))
    z_hat, z_likelihoods = model.entropy_bottleneck(z, training=False)
    _, y_likelihoods = model.gaussian_conditional(y, model.h_s(z_hat), training=True)
    x_student = student(_round_ste(y))
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -(torch.log2(y_likelihoods).sum() + torch.log2(z_likelihoods).sum()) / pixels
    return x_student, bpp


def _images(args, teacher_fingerprint: bytes, seed: int):
    if args.cache is not None:
        cached = CachedTargets(args.cache, teacher_fingerprint, args.crop, seed=seed)
        return lambda size: cached(size)[0]

    crops = RandomCrops(args.data, args.crop, seed=seed)
    return crops.batch


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.crop % 64 or args.crop <= 0:
        raise LicError(f"--crop must be a positive multiple of 64 (the hyper-latent's scale), got {args.crop}")
    student, cfg, qcfg, fingerprint = load_quant_student(args.student)
    teacher = resolve_teacher(argparse.Namespace(teacher=None, quality=None), fingerprint)
    lmbda = args.lmbda if args.lmbda is not None else teacher.lmbda
    if lmbda is None or lmbda <= 0:
        raise LicError(f"{teacher.name} records no lambda: pass --lmbda")
    _, _, device = setup_distributed()
    model = teacher.model.to(device)
    student.to(device).eval()  # frozen, with Brevitas' straight-through quantisers
    for p in list(model.parameters()) + list(student.parameters()):
        p.requires_grad_(False)
    for p in model.g_a.parameters():
        p.requires_grad_(True)
    if args.init is not None:
        init = load_teacher(str(args.init))
        if init.decoder_fingerprint != teacher.fingerprint:
            raise LicError(f"--init {args.init} was tuned from another teacher than {args.student}'s")
        model.g_a.load_state_dict(init.model.g_a.state_dict())
    # read now: the file a run starts from may be replaced (shipped over) before the run exports
    init_fields = init_provenance(args.init) if args.init else {"init": None}
    setup = {"kind": ENCODER_KIND, "teacher_fingerprint": teacher.fingerprint.hex(),
             "student_sha256": sha256_file(args.student), "lambda": lmbda,
             "init_sha256": init_fields.get("init_sha256")}

    ckpt_path = args.run_dir / "checkpoint.pt"
    step, elapsed = 0, 0.0
    opt = torch.optim.Adam(model.g_a.parameters(), lr=args.lr)
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck.get("setup") != setup:
            raise LicError(f"{ckpt_path} was made for another student, teacher or lambda; use another --run-dir")
        model.g_a.load_state_dict(ck["g_a"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed_s"]
        print(f"resuming {ckpt_path} at step {step}", file=sys.stderr)
    images = _images(args, teacher.fingerprint, args.seed * 1_000_003 + step)

    args.run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - elapsed
    budget = TimeBox(args.minutes)
    model.g_a.train()
    with open(args.run_dir / "log.jsonl", "a" if step else "w") as log, \
            tqdm(total=args.steps, initial=step, desc=f"tune g_a for {args.student.name}", unit="step",
                 dynamic_ncols=True) as bar:
        while step < args.steps:
            set_lr(opt, cosine_lr(step, args.steps, args.lr, args.lr_final))
            x = images(args.batch_size).to(device)
            x_student, bpp = rd_terms(model, student, x)
            mse = torch.nn.functional.mse_loss(x_student, x)  # unclamped, as in distillation
            loss = lmbda * 255 ** 2 * mse + bpp
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.g_a.parameters(), args.clip)
            opt.step()
            step += 1
            rec = {"step": step, "loss": loss.item(), "bpp": bpp.item(), "psnr_student": psnr(x_student.detach(), x),
                   "lr": opt.param_groups[0]["lr"]}
            bar.set_postfix(loss=f"{rec['loss']:.4f}", bpp=f"{rec['bpp']:.3f}", psnr=f"{rec['psnr_student']:.2f}")
            bar.update(1)
            if step % args.log_every == 0 or step == args.steps:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            out_of_time = budget.expired()
            if step % args.save_every == 0 or step == args.steps or out_of_time:
                atomic_save({"g_a": model.g_a.state_dict(), "opt": opt.state_dict(), "step": step,
                             "elapsed_s": time.time() - t0, "setup": setup}, ckpt_path)
            if out_of_time:
                break
    if step < args.steps:
        print(f"--minutes {args.minutes:g} spent: stopped at step {step} of {args.steps}, checkpoint "
              f"{ckpt_path}; the same command resumes it", file=sys.stderr)
    elif args.export:
        save_encoder(model, teacher, args.export)
        write_provenance(args.export, {
            "kind": ENCODER_KIND, "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint.hex(),
            "student": str(args.student), "student_sha256": setup["student_sha256"], "lambda": lmbda,
            **init_fields,
            "steps": step, "batch_size": args.batch_size, "crop": args.crop, "lr": args.lr, "lr_final": args.lr_final,
            **data_provenance(args), "seed": args.seed}, t0=t0, world=1, device=device)
        print(f"{args.export}: g_a tuned for {args.student} ({step} steps)", file=sys.stderr)
    return 0


def save_encoder(model, teacher, path: Path) -> None:
    """The tuned g_a as its change from the teacher's: conv weights as int8 steps with one scale per
    output channel (a quarter of fp32, half of the fp16 a whole teacher is shipped in), the rest
    (biases, GDN) as fp32. Lossy, but what the file holds *is* the encoder: its fingerprint and
    every evaluation are taken on the loaded weights (training/teacher.py, from_tuned_encoder)."""
    base = load_default(teacher.quality).model.g_a.state_dict()
    steps, scales, exact = {}, {}, {}
    for k, v in model.g_a.state_dict().items():
        if k.endswith(".weight") and v.ndim == 4:
            delta = (v - base[k]).float()
            scale = delta.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12) / 127
            steps[k] = torch.round(delta / scale[:, None, None, None]).to(torch.int8)
            scales[k] = scale
        else:
            exact[k] = v.float().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"kind": ENCODER_KIND, "teacher_fingerprint": teacher.fingerprint.hex(),
                 "g_a_delta_int8": steps, "g_a_delta_scale": scales, "g_a_other": exact}, path)
