"""`lic train-teacher`: train a ScaleHyperprior teacher from scratch (or warm-started) on random crops.

Rate-distortion loss lambda * 255^2 * MSE + bpp (CompressAI's RateDistortionLoss), a separate Adam
for the entropy bottleneck's quantiles (the aux loss), checkpoints that resume exactly, and DDP when
launched under torchrun (one process per GPU, or several CPU processes with gloo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from lic.compressai_compat import compressai  # noqa: F401
from compressai.losses import RateDistortionLoss
from compressai.models import ScaleHyperprior

from training.data import RandomCrops
from training.loop import (atomic_save, cosine_lr, set_lr, setup_distributed, teardown_distributed, wrap_ddp,
                           write_provenance)
from training.options import DEFAULT_DATA, REQUIRED, add_training_options
from training.teacher import COMPRESSAI_LAMBDAS, load_state_dict_file, save_compact



def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quality", type=int, default=3, choices=sorted(COMPRESSAI_LAMBDAS),
                   help="rate point: uses CompressAI's lambda for bmshj2018-hyperprior at this quality (default 3)")
    g.add_argument("--lambda", dest="lmbda", type=float, help="rate-distortion lambda, overrides --quality")
    add_training_options(p, data=[DEFAULT_DATA], steps=100_000, batch_size=8, crop=256, lr=1e-4, lr_final=None)
    p.add_argument("--aux-lr", type=float, default=1e-3, help="learning rate of the aux (quantile) optimiser")
    add_training_options(p, clip=1.0)
    p.add_argument("--N", type=int, default=128, help="channels of the transforms (default 128, as CompressAI q1-5)")
    p.add_argument("--M", type=int, default=192, help="latent channels (default 192, as CompressAI q1-5)")
    p.add_argument("--init", type=Path, help="start from these weights (a state dict) instead of random")
    add_training_options(p, run_dir=REQUIRED, save_every=500, export=None, seed=0, threads=None,
                         helps={"export": "at the end, write the compact CompressAI state dict here"})


def train(args) -> Path | None:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = setup_distributed()
    lmbda = args.lmbda if args.lmbda is not None else COMPRESSAI_LAMBDAS[args.quality]
    torch.manual_seed(args.seed)

    model = ScaleHyperprior(args.N, args.M)
    if args.init:
        sd = load_state_dict_file(args.init)
        model.load_state_dict({k: v.float() if torch.is_floating_point(v) else v for k, v in sd.items()})
    model.to(device)
    main_params = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux_params = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    opt = torch.optim.Adam(main_params, lr=args.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=args.aux_lr)
    criterion = RateDistortionLoss(lmbda=lmbda)

    run_dir = args.run_dir
    ckpt_path = run_dir / "checkpoint.pt"
    step, elapsed = 0, 0.0
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        aux_opt.load_state_dict(ck["aux_opt"])
        step, elapsed = ck["step"], ck["elapsed_s"]
        if rank == 0:
            print(f"resuming {ckpt_path} at step {step}", file=sys.stderr)
    # Each rank draws its own crops; the seed includes the step so a resumed run does not replay crops.
    data = RandomCrops(args.data, args.crop, seed=args.seed * 1_000_003 + rank * 7919 + step)

    net = wrap_ddp(model, world, device)

    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run_dir / "log.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, desc=f"teacher lambda={lmbda}", unit="step",
               dynamic_ncols=True)
    t0 = time.time() - elapsed
    model.train()
    while step < args.steps:
        set_lr(opt, cosine_lr(step, args.steps, args.lr, args.lr_final))
        x = data.batch(args.batch_size).to(device, non_blocking=True)
        out = net(x)
        losses = criterion(out, x)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(main_params, args.clip)
        opt.step()
        aux_loss = model.aux_loss()
        aux_opt.zero_grad(set_to_none=True)
        aux_loss.backward()
        if world > 1:  # aux_loss() runs on the unwrapped model, outside DDP's gradient all-reduce
            for p in aux_params:
                dist.all_reduce(p.grad)
                p.grad /= world
        aux_opt.step()
        step += 1
        if rank == 0:
            rec = {"step": step, "loss": losses["loss"].item(), "bpp": losses["bpp_loss"].item(),
                   "mse": losses["mse_loss"].item(), "aux": aux_loss.item(), "lr": opt.param_groups[0]["lr"]}
            bar.set_postfix(bpp=f"{rec['bpp']:.3f}", mse=f"{rec['mse']:.5f}", aux=f"{rec['aux']:.1f}")
            bar.update(1)
            if step % 50 == 0:
                log.write(json.dumps(rec) + "\n")
                log.flush()
            if step % args.save_every == 0 or step == args.steps:
                atomic_save({"model": model.state_dict(), "opt": opt.state_dict(), "aux_opt": aux_opt.state_dict(),
                             "step": step, "elapsed_s": time.time() - t0, "lambda": lmbda,
                             "args": {k: str(v) for k, v in vars(args).items()}}, ckpt_path)
    bar.close()
    out_path = None
    if rank == 0 and args.export:
        model.eval().cpu()
        model.update(force=True)
        save_compact(model, args.export)
        write_provenance(args.export, {
            "lambda": lmbda, "N": args.N, "M": args.M, "steps": step, "batch_size": args.batch_size * world,
            "crop": args.crop, "lr": args.lr, "lr_final": args.lr_final,
            "data": [str(d) for d in args.data], "init": str(args.init) if args.init else None,
        }, t0=t0, world=world, device=device)
        out_path = args.export
    del net  # free DDP's reducer before its process group goes (see training/distill.py)
    teardown_distributed(world)
    return out_path


def run(args) -> int:
    train(args)
    return 0
