"""`lic prune`: structured channel pruning of a wider float student down to a width or MAC budget.

The third of the method beside distillation (`lic distill`) and quantisation (`lic qat`): a float
student (a `lic distill --export` file) loses whole output channels of its convs until it has the
target widths, is fine-tuned from the distillation cache under `lic distill`'s own loss and loop
(training/distill.py train_kd), and is exported as a float student `lic qat --student` takes.

Target: `--channels 96,64,32,16` (one width per stage, each at most the source's), or `--kmac N`
(kMAC per output pixel): the source's widths scaled by one common factor, each rounded down to a
multiple of `--multiple` (FINN's folding wants widths with divisors: a PE / SIMD must divide them),
the largest factor whose student costs at most N. Which stage gives how much is then fixed by the
source's proportions, not by importance; an importance-driven split across stages is not built.

Importance (`--criterion taylor`, the default): first-order Taylor, measured on real data (Molchanov
et al., "Pruning convolutional neural networks for resource efficient inference", ICLR 2017). For
every conv but the last, per output channel c, over `--importance-batches` batches of the run's
own data (the teacher-target cache, or the teacher on crops of --data):

    importance_c = mean over images n of | sum over pixels (h, w) of a[n, c, h, w] * dL/da[n, c, h, w] |

(a figure to rank the channels of one conv by: it scales with the loss's averaging over batch and
pixels, so runs of other --batch-size or --crop give other magnitudes), where a is the channel's
activation after its ReLU (what the next conv reads) and L the distillation
loss `lic distill` trains with (w_image x MSE to the image + w_teacher x MSE to the teacher's
image). Removing channel c sets a[., c] to zero, and -sum a * dL/da is the first-order change of the
image's loss when that happens: the criterion estimates what the removal costs the loss the student
is judged by, per image (the absolute value, so that images whose loss would go up and down do not
cancel), rather than what a weight's size suggests. Why not weight magnitude: the size of a filter
says nothing about how large its input is, nor whether what follows ignores it (a large filter
feeding a dead ReLU, or one the next conv weights by ~0, costs nothing to remove); the Taylor figure
sees both, at the cost of N forward and backward passes (seconds). A channel whose filter and bias
are zero has a = 0 everywhere and importance exactly 0. `--criterion l1` ranks by the L1 norm of
each output channel's filter instead (weight magnitude, Li et al. ICLR 2017; no data), for
comparison only.

Surgery: the student is a plain chain (conv, ReLU, nearest upsample; no residuals), so each conv's
output channels are independent of every other conv's: conv k keeps the `width` most important of
its output channels (the new config's width at that position of layer_plan), in their original
order, and conv k+1 keeps the matching input channels. ReLU and nearest upsample act per channel, so
the kept channels compute exactly what they did (tests/test_prune.py: with the removed channels'
filters zeroed, the pruned student's output equals the original's). The result is a StudentConfig
like any other: `lic qat`, `lic export` and `lic hw` take it unchanged.

The run's folder keeps pruning.json (what was kept, the importance figures); a run stopped by
--minutes resumes its fine-tuning from the checkpoint without measuring again. The export's
provenance holds the command, the source's path, sha256 and own provenance (as `lic distill --init`
records them), and "pruning": the criterion, the widths before and after, kMAC/px before and after,
per conv the kept channels and every channel's importance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from host.decoder_package import sha256_file
from lic.errors import LicError
from training.distill import (FLOAT_KIND, KDWeights, TeacherTargets, add_training_arguments, batch_source, kd_loss,
                              load_float_student, resolve_teacher, train_kd)
from training.loop import full_fp32_on_gpu, init_provenance
from training.options import options_namespace
from training.student_decoder import StudentConfig, StudentSynthesis, conv_layers, kmac_per_pixel, layer_plan

CRITERIA = ("taylor", "l1")
RECORD = "pruning.json"


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", type=Path, required=True,
                   help="the wider float student to prune, from `lic distill --export`")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--channels", default=None,
                        help="target width of each stage, comma-separated, each at most the student's, "
                             "e.g. 96,64,32,16")
    target.add_argument("--kmac", type=float, default=None,
                        help="target kMAC per output pixel: the student's widths scaled by one common factor "
                             "(each a multiple of --multiple), the largest that costs at most this")
    p.add_argument("--multiple", type=int, default=4,
                   help="with --kmac, every width a multiple of this (FINN's folding wants divisors; default 4)")
    p.add_argument("--criterion", choices=CRITERIA, default="taylor",
                   help="taylor: |activation x gradient of the distillation loss| per channel and image, measured "
                        "on the run's data (default); l1: the L1 norm of each filter (weight magnitude, no data)")
    p.add_argument("--importance-batches", type=int, default=16,
                   help="batches (of --batch-size, from --cache or --data) the taylor importance is averaged over "
                        "(default 16)")
    add_training_arguments(p, steps=2_000, lr=2e-4, lr_final=1e-6,
                           teacher_help="the student's teacher, if it is not a shipped one (found by its "
                                        "fingerprint otherwise): zoo:bmshj2018-hyperprior:Q or a checkpoint path")
    for a in p._actions:  # a pruned student is only worth its file
        if a.dest == "export":
            a.required = True
            a.help = "write the pruned, fine-tuned float student here (+ .provenance.json)"


def prune(**options) -> Path | None:
    """`lic prune` as a function: keyword arguments are its options by their dest names (student=...,
    channels="96,64,32,16" or kmac=4.3, cache=..., run_dir=..., export=..., steps=...), the others at
    the command's defaults. Returns the export's path (None when minutes= stopped the run first)."""
    return prune_student(options_namespace(add_arguments, **options))


def run(args) -> int:
    prune_student(args)
    return 0


# ---------------------------------------------------------------------------------------------
# Targets


def target_channels(text: str, cfg: StudentConfig) -> tuple[int, ...]:
    """--channels as one width per stage, each 1..the source's width; LicError saying what is wrong."""
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise LicError(f"--channels must be comma-separated ints, one per stage, got {text!r}") from None
    if len(widths) != cfg.stages:
        raise LicError(f"--channels has {len(widths)} entries, the student has {cfg.stages} stages "
                       f"({','.join(map(str, cfg.channels))})")
    for i, (w, have) in enumerate(zip(widths, cfg.channels)):
        if w < 1:
            raise LicError(f"--channels: stage {i} must keep at least one channel, got {w}")
        if w > have:
            raise LicError(f"--channels: stage {i} has {have} channels, cannot keep {w} (pruning only removes)")
    return widths


def config_kmac(cfg: StudentConfig) -> float:
    return kmac_per_pixel(StudentSynthesis(cfg), in_channels=cfg.latent_channels)


def with_channels(cfg: StudentConfig, channels) -> StudentConfig:
    return StudentConfig(**{**cfg.to_dict(), "channels": list(channels)})


def channels_for_kmac(cfg: StudentConfig, kmac: float, multiple: int) -> tuple[int, ...]:
    """The source's widths times the largest common factor (each rounded down to a multiple of
    `multiple`, at least `multiple`) whose student costs at most `kmac` kMAC/px."""
    if multiple < 1:
        raise LicError(f"--multiple must be at least 1, got {multiple}")
    if kmac <= 0:
        raise LicError(f"--kmac must be positive, got {kmac:g}")
    seen = set()
    for step in range(1000, 0, -1):  # factor 1.000 down to 0.001
        widths = tuple(min(c, max(multiple, int(c * step / 1000) // multiple * multiple)) for c in cfg.channels)
        if widths in seen:
            continue
        seen.add(widths)
        if config_kmac(with_channels(cfg, widths)) <= kmac:
            return widths
    smallest = tuple(min(c, multiple) for c in cfg.channels)
    raise LicError(f"--kmac {kmac:g}: even {','.join(map(str, smallest))} costs "
                   f"{config_kmac(with_channels(cfg, smallest)):.3f} kMAC/px")


# ---------------------------------------------------------------------------------------------
# Importance


def _relus(student: nn.Module) -> list[nn.Module]:
    """The ReLU after each conv that has one (every conv but the last), in layer_plan's order."""
    layers = list(student.layers)
    out = []
    for k, m in enumerate(layers):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and k + 1 < len(layers) and isinstance(layers[k + 1], nn.ReLU):
            out.append(layers[k + 1])
    return out


def l1_importance(student: StudentSynthesis) -> list[torch.Tensor]:
    """Per conv but the last, the L1 norm of each output channel's filter (weight magnitude)."""
    out = []
    for conv in conv_layers(student)[:-1]:
        w = conv.weight.detach()
        out.append(w.abs().sum(dim=(0, 2, 3)) if isinstance(conv, nn.ConvTranspose2d) else w.abs().sum(dim=(1, 2, 3)))
    return out


def taylor_importance(student: StudentSynthesis, batches, n_batches: int, batch_size: int,
                      weights: KDWeights) -> list[torch.Tensor]:
    """Per conv but the last, per output channel: the mean over images of |sum over pixels of
    activation x d(distillation loss)/d(activation)|, the activation taken after the conv's ReLU
    (see the module's docstring). `batches(size)` -> (x, y_hat, x_teacher, features)."""
    relus = _relus(student)
    sums = [None] * len(relus)
    images = 0
    hooks = []

    def hook(i):
        def forward(module, inp, out):
            def backward(grad):
                t = (out.detach() * grad).sum(dim=(2, 3)).abs().sum(dim=0)  # per channel, summed over images
                sums[i] = t if sums[i] is None else sums[i] + t
            out.register_hook(backward)
        return forward

    for i, relu in enumerate(relus):
        hooks.append(relu.register_forward_hook(hook(i)))
    was_training = student.training
    student.train()
    try:
        for p in student.parameters():
            p.requires_grad_(True)
        for _ in range(n_batches):
            x, y_hat, x_teacher, _ = batches(batch_size)
            x_student = student(y_hat)
            loss = kd_loss(x, x_student, x_teacher, [], [], weights)["loss"]
            student.zero_grad(set_to_none=True)
            loss.backward()
            images += x.shape[0]
    finally:
        for h in hooks:
            h.remove()
        student.zero_grad(set_to_none=True)
        student.train(was_training)
    return [s.cpu() / images for s in sums]


def keep_most_important(importance: list[torch.Tensor], cfg: StudentConfig, target: StudentConfig) -> list[list[int]]:
    """Per conv but the last, the indexes (ascending) of the `width` most important output channels,
    `width` being the target config's at that position of layer_plan. Ties go to the lower index."""
    plan, new = layer_plan(cfg), layer_plan(target)
    keep = []
    for spec, spec_new, imp in zip(plan[:-1], new[:-1], importance):
        if imp.numel() != spec.out_ch:
            raise ValueError(f"{spec.name}: {imp.numel()} importance figures for {spec.out_ch} channels")
        order = sorted(range(spec.out_ch), key=lambda c: (-float(imp[c]), c))
        keep.append(sorted(order[:spec_new.out_ch]))
    return keep


# ---------------------------------------------------------------------------------------------
# Surgery


def apply_pruning(student: StudentSynthesis, target: StudentConfig, keep: list[list[int]]) -> StudentSynthesis:
    """A new student of config `target` whose conv k holds conv k's output channels keep[k] (and, for
    k > 0, the input channels keep[k-1]) of `student`; the last conv keeps all its outputs."""
    cfg = student.cfg
    plan, new_plan = layer_plan(cfg), layer_plan(target)
    if len(plan) != len(new_plan) or len(keep) != len(plan) - 1:
        raise ValueError("the target config must differ from the student's in its widths only")
    pruned = StudentSynthesis(target)
    with torch.no_grad():
        for k, (old, new, spec) in enumerate(zip(conv_layers(student), conv_layers(pruned), new_plan)):
            out_idx = torch.tensor(keep[k]) if k < len(keep) else torch.arange(spec.out_ch)
            in_idx = torch.tensor(keep[k - 1]) if k > 0 else torch.arange(spec.in_ch)
            if len(out_idx) != spec.out_ch or len(in_idx) != spec.in_ch:
                raise ValueError(f"{spec.name}: keeps {len(in_idx)} -> {len(out_idx)} channels, the target "
                                 f"config has {spec.in_ch} -> {spec.out_ch}")
            w = old.weight
            if isinstance(old, nn.ConvTranspose2d):  # weight (in, out, k, k)
                w = w.index_select(0, in_idx).index_select(1, out_idx)
            else:  # weight (out, in, k, k)
                w = w.index_select(0, out_idx).index_select(1, in_idx)
            new.weight.copy_(w)
            new.bias.copy_(old.bias.index_select(0, out_idx))
    return pruned.eval()


# ---------------------------------------------------------------------------------------------
# The command


def _summary(imp: torch.Tensor, kept: list[int]) -> dict:
    removed = sorted(set(range(imp.numel())) - set(kept))
    total = float(imp.sum()) or 1.0
    return {"kept": kept, "importance": [float(f"{float(v):.4g}") for v in imp],
            "removed_share_of_importance": round(float(imp[removed].sum()) / total, 4) if removed else 0.0,
            "largest_removed": float(f"{float(imp[removed].max()):.4g}") if removed else None,
            "smallest_kept": float(f"{float(imp[kept].min()):.4g}")}


def prune_student(args) -> Path | None:
    """The work of `lic prune` for parsed options (see prune())."""
    source, cfg, fingerprint = load_float_student(args.student)
    teacher = resolve_teacher(args, fingerprint)
    if (args.channels is None) == (args.kmac is None):
        raise LicError("give the target as one of --channels (widths per stage) or --kmac (kMAC per pixel)")
    if args.importance_batches < 1:
        raise LicError(f"--importance-batches must be at least 1, got {args.importance_batches}")
    if args.crop % 16:
        raise LicError(f"--crop must be a multiple of 16 (the teacher's and student's scale), got {args.crop}")
    if args.channels is not None:
        widths = target_channels(args.channels, cfg)
    else:
        widths = channels_for_kmac(cfg, args.kmac, args.multiple)
    target = with_channels(cfg, widths)
    source_sha = sha256_file(args.student)
    what = {"source": str(args.student), "source_sha256": source_sha, "criterion": args.criterion,
            "source_channels": list(cfg.channels), "channels": list(widths)}
    if args.criterion == "taylor":
        what |= {"importance_batches": args.importance_batches, "batch_size": args.batch_size, "crop": args.crop,
                 "seed": args.seed, "loss_weights": {"image": args.w_image, "teacher": args.w_teacher}}

    record_path = args.run_dir / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if record is not None and record.get("what") != what:
        raise LicError(f"{record_path} records another pruning ({record.get('what')}); use another --run-dir")
    if record is None and (args.run_dir / "checkpoint.pt").is_file():
        raise LicError(f"{args.run_dir} holds a checkpoint but no {RECORD}; use another --run-dir")
    if record is not None:
        keep = record["keep"]
        print(f"{record_path}: the channels chosen before ({','.join(map(str, widths))}); not measured again",
              file=sys.stderr)
    else:
        t0 = time.time()
        if args.criterion == "taylor":
            if args.threads:
                torch.set_num_threads(args.threads)
            full_fp32_on_gpu()
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            targets = TeacherTargets(teacher.model.to(device), features=False)
            # batches of their own: the fine-tuning's are seeded from args.seed * 1_000_003 + step
            batches = batch_source(args, targets, teacher.fingerprint, args.seed * 1_000_003 + 999_983, device)
            importance = taylor_importance(source.to(device), batches, args.importance_batches, args.batch_size,
                                           KDWeights(args.w_image, args.w_teacher, 0.0))  # no --w-feature term
            source.cpu()
            targets.close()
        else:
            importance = l1_importance(source)
        keep = keep_most_important(importance, cfg, target)
        plan = layer_plan(cfg)
        record = {"what": what, "keep": keep, "seconds": round(time.time() - t0, 1),
                  "kmac_per_pixel": {"before": round(config_kmac(cfg), 3), "after": round(config_kmac(target), 3)},
                  "convs": {spec.name: _summary(imp, kept) for spec, imp, kept in zip(plan, importance, keep)}}
        args.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(record_path)
        for name, s in record["convs"].items():
            print(f"{name}: keeps {len(s['kept'])} of {len(s['importance'])} channels, the removed held "
                  f"{100 * s['removed_share_of_importance']:.1f}% of the {args.criterion} importance", file=sys.stderr)
        print(f"{','.join(map(str, cfg.channels))} -> {','.join(map(str, widths))}: "
              f"{record['kmac_per_pixel']['before']} -> {record['kmac_per_pixel']['after']} kMAC/px "
              f"({record['seconds']} s)", file=sys.stderr)

    student = apply_pruning(source, target, keep).train()
    meta = {"config": target.to_dict(), "teacher_fingerprint": teacher.fingerprint.hex()}
    # the source's path, sha256 and own provenance as `lic distill --init` records them; then what was pruned
    provenance = {**init_provenance(args.student), "init_teacher_fingerprint": fingerprint.hex(),
                  "pruning": {**{k: v for k, v in what.items() if k not in ("source", "source_sha256")},
                              "importance_seconds": record["seconds"], "kmac_per_pixel": record["kmac_per_pixel"],
                              "convs": record["convs"]}}
    torch.manual_seed(args.seed)
    return train_kd(args, teacher, student, kind=FLOAT_KIND, meta=meta,
                    desc=f"prune {','.join(map(str, cfg.channels))} -> {','.join(map(str, widths))}",
                    provenance=provenance)
