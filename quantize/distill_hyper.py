"""`lic distill-hyper`: train the student hyper-synthesis that replaces the teacher's float h_s.

The teacher's encoder and entropy models stay frozen. For each batch of random crops the teacher
gives z symbols (what its EntropyBottleneck codes) and y_hat = round(y) (what its
GaussianConditional codes); the student h_s, quantisation-aware (quantize/quant_hyper.py), learns
to predict scales from the symbols, and its loss is the thing the scales are for: the bits of y_hat
under those scales, plus a small MSE between its log scales and the teacher's (a dense signal per
element, where the rate alone gives a weak one for elements whose y_hat is mostly zero). The
exported result is the integer form (quantize/integer_hyper.py), the only form ever run afterwards,
with its measured rate beside the teacher's float h_s on the same crops.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from quantize.integer_hyper import to_integer
from host.image_io import write_atomic
from lic.errors import LicError
from quantize.quant_hyper import HyperConfig, QuantHyperSynthesis, init_log_scale_bias, macs_per_latent_pixel
from quantize.quant_student import calibrate_activations
from training.data import RandomCrops
from training.loop import (atomic_save, data_provenance, cosine_lr, read_torch_file, set_lr, setup_distributed,
                           teardown_distributed, wrap_ddp, write_provenance)
from training.options import DEFAULT_DATA, REQUIRED, add_training_options
from training.target_cache import CachedTargets
from training.teacher import load_teacher


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", type=int, default=None, help="shipped teacher to distil from (default 3)")
    p.add_argument("--teacher", default=None, help="or any teacher spec: zoo:bmshj2018-hyperprior:Q, a checkpoint")
    p.add_argument("--channels", type=int, default=HyperConfig.channels,
                   help=f"hidden width of the student h_s (default {HyperConfig.channels})")
    add_training_options(p, data=[DEFAULT_DATA], steps=2000, batch_size=8, crop=256,
                         helps={"crop": "square crop size in pixels; z is crop/64 on a side (default {default})"})
    p.add_argument("--cache", type=Path, nargs="+", default=None,
                   help="teacher targets from `lic cache-targets`: whole images, no teacher run per step "
                        "(--data and --crop are not used). Several caches share each batch: the teacher's own "
                        "and those of encoders tuned from it (`--teacher qN-tuned`), so that one integer h_s "
                        "serves the files of both")
    add_training_options(p, lr=1e-3, lr_final=1e-4, run_dir=REQUIRED, save_every=250, export=None,
                         helps={"export": "at the end, write the integer h_s (.npz) here"})
    p.add_argument("--init", type=Path, default=None,
                   help="start from the weights of an earlier run's checkpoint.pt (same teacher and width), "
                        "with a fresh optimiser and schedule; ignored when --run-dir resumes")
    p.add_argument("--w-scale", type=float, default=0.05,
                   help="weight of MSE(log student scale, log teacher scale) beside the rate (default 0.05; 0 = "
                        "rate only): a dense signal that pulls the student towards the teacher's indexes")
    add_training_options(p, seed=0, threads=None)


@torch.no_grad()
def teacher_latents(teacher, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z symbols, y_hat) exactly as the teacher's entropy coders see them."""
    m = teacher.model
    y = m.g_a(x)
    z = m.h_a(torch.abs(y))
    q = m.entropy_bottleneck.quantize(z, "symbols", m.entropy_bottleneck._get_medians())
    return q.float(), torch.round(y)


def latent_source(args, teacher, seed: int, device: torch.device):
    """batch size -> (z symbols, y_hat): from the teacher on random crops, or from a --cache."""
    if args.cache is not None:
        caches = [CachedTargets(c, teacher.fingerprint, None, seed=seed + 104729 * i, of_decoder=True)
                  for i, c in enumerate(args.cache)]

        def batch(n):
            # An equal share of every batch from each cache (the first ones take the remainder).
            parts = [c.hyper(n // len(caches) + (i < n % len(caches))) for i, c in enumerate(caches)]
            return tuple(torch.cat([p[j] for p in parts if len(p[j])]).to(device) for j in (0, 1))
        return batch
    data = RandomCrops(args.data, args.crop, seed=seed)
    return lambda n: teacher_latents(teacher, data.batch(n).to(device))


def teacher_scales(teacher, q: torch.Tensor) -> torch.Tensor:
    """The teacher's own float h_s on the same symbols: the rate the student is measured against."""
    m = teacher.model
    return m.h_s(q + m.entropy_bottleneck._get_medians())


def y_bits(gaussian_conditional, y_hat: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Bits of y_hat under zero-mean Gaussians of these scales (CompressAI's likelihood, bounded)."""
    gc = gaussian_conditional
    lik = gc.likelihood_lower_bound(gc._likelihood(y_hat, gc.lower_bound_scale(scales)))
    return -torch.log2(lik).sum()


def _init_weights(path: Path, teacher, cfg: HyperConfig) -> dict:
    try:
        init = read_torch_file(path, "--init checkpoint")
        weights, fingerprint, config = init["model"], init["teacher_fingerprint"], init["config"]
    except (LicError, KeyError, TypeError) as e:
        raise LicError(f"--init {path}: not a `lic distill-hyper` checkpoint ({e})") from None
    if fingerprint != teacher.fingerprint.hex():
        raise LicError(f"--init {path} was trained against another teacher ({fingerprint})")
    if config != cfg.to_dict():
        raise LicError(f"--init {path} has another shape ({config}) than this run's ({cfg.to_dict()})")
    return weights


def train(args) -> Path | None:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed()
    torch.manual_seed(args.seed)
    teacher = load_teacher(args.teacher, quality=args.quality)
    tm = teacher.model.to(device)
    gc = tm.gaussian_conditional
    cfg = HyperConfig(in_channels=tm.h_a[-1].out_channels, out_channels=tm.g_a[-1].out_channels,
                      channels=args.channels)
    model = QuantHyperSynthesis(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    ckpt_path = args.run_dir / "checkpoint.pt"
    step, elapsed = 0, 0.0
    ck = torch.load(ckpt_path, map_location=device, weights_only=False) if ckpt_path.is_file() else None
    if ck is not None:
        if ck["teacher_fingerprint"] != teacher.fingerprint.hex():
            raise LicError(f"{ckpt_path} was trained against another teacher; use a new --run-dir")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed_s"]
    elif args.init is not None:
        model.load_state_dict(_init_weights(args.init, teacher, cfg))
    # The seed includes the step so a resumed run does not replay crops.
    latents = latent_source(args, teacher, args.seed * 1_000_003 + rank * 7919 + step, device)
    if ck is None and args.init is None:
        # Activation scales from data, and outputs starting near the teacher's typical scale.
        q, _ = latents(args.batch_size)
        init_log_scale_bias(model, float(teacher_scales(teacher, q).clamp_min(0.11).mean()))
        calibrate_activations(model, [latents(args.batch_size)[0] for _ in range(4)])
    net = wrap_ddp(model, world, device)
    if rank == 0:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(args.run_dir / "log.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, desc="integer h_s", unit="step", dynamic_ncols=True)
    t0 = time.time() - elapsed
    model.train()
    while step < args.steps:
        set_lr(opt, cosine_lr(step, args.steps, args.lr, args.lr_final))
        q, y_hat = latents(args.batch_size)
        pixels = y_hat.shape[0] * y_hat.shape[2] * y_hat.shape[3] * 256
        log_scales = net(q)
        bpp = y_bits(gc, y_hat, torch.exp(log_scales)) / pixels
        loss = bpp
        if args.w_scale:
            with torch.no_grad():
                target = torch.log(gc.lower_bound_scale(teacher_scales(teacher, q)))
            loss = loss + args.w_scale * F.mse_loss(log_scales, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if rank == 0:
            bar.update(1)
            if step % 25 == 0 or step == args.steps:
                with torch.no_grad():
                    ref = y_bits(gc, y_hat, teacher_scales(teacher, q)) / pixels
                rec = {"step": step, "y_bpp": bpp.item(), "teacher_y_bpp": ref.item()}
                bar.set_postfix(y_bpp=f"{rec['y_bpp']:.4f}", teacher=f"{rec['teacher_y_bpp']:.4f}")
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % args.save_every == 0 or step == args.steps:
                atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                             "elapsed_s": time.time() - t0, "config": cfg.to_dict(),
                             "teacher_fingerprint": teacher.fingerprint.hex()}, ckpt_path)
    bar.close()
    out = None
    if rank == 0 and args.export:
        integer_hs = to_integer(model.cpu(), gc.scale_table)
        integer_hs.meta["teacher_fingerprint"] = teacher.fingerprint.hex()
        args.export.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.export, integer_hs.to_bytes())
        write_provenance(args.export, {
            "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint.hex(),
            "integer_hs_fingerprint": integer_hs.fingerprint.hex(), "config": cfg.to_dict(),
            "macs_per_z_pixel": macs_per_latent_pixel(cfg), "steps": step, "batch_size": args.batch_size * world,
            "w_scale": args.w_scale, "crop": args.crop if args.cache is None else "whole cached images", "lr": args.lr,
            "lr_final": args.lr_final,
            **data_provenance(args),
            **({"init": str(args.init)} if args.init is not None else {}),
        }, t0=t0, world=world, device=device)
        out = args.export
    del net  # free DDP's reducer before its process group goes (see training/distill.py)
    teardown_distributed(world)
    return out


def run(args) -> int:
    train(args)
    return 0
