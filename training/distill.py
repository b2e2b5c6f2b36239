"""`lic distill`: decoder-only knowledge distillation of a student synthesis transform g_s.

The teacher (a ScaleHyperprior) is frozen. Per batch of random crops x:

  y_hat     = round(teacher.g_a(x))          the integers a .lic file carries (CompressAI's
                                             GaussianConditional with means=None codes round(y))
  x_teacher = teacher.g_s(y_hat).clamp(0, 1)
  x_student = student(y_hat)
  loss      = w_image * MSE(x_student, x) + w_teacher * MSE(x_student, x_teacher)
              + w_feature * mean over stages of MSE(adapter_i(student stage i), teacher IGDN i)

Feature matching pairs the output activation of student stage i with the output of the teacher's
i-th inverse GDN, both at 2^(i+1) x the latent resolution; a trainable 1x1 conv adapter maps the
student's width to the teacher's. Adapters train with the student and are never exported.

The same loss and loop serve `lic qat` (quantize/qat.py), which starts from this command's export.
A student is tied to the teacher whose y_hat it learned to decode: checkpoints and exports carry
that teacher's fingerprint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from lic.errors import LicError
from training.data import RandomCrops
from training.loop import (TimeBox, WeightAverage, atomic_save, broadcast_flag, cosine_lr, data_provenance,
                           init_provenance, read_torch_file, set_lr, setup_distributed, teardown_distributed,
                           wrap_ddp, write_provenance)
from training.options import DEFAULT_DATA, add_run_arguments, add_training_options, options_namespace
from training.student_decoder import UPSAMPLE_MODES, StudentConfig, StudentSynthesis, grow_latent_convs, layer_plan
from training.target_cache import CachedTargets

FLOAT_KIND = "float-student"


# ---------------------------------------------------------------------------------------------
# Command line


def add_training_arguments(p: argparse.ArgumentParser, *, steps: int, lr: float, lr_final: float | None,
                           teacher_help: str) -> None:
    """The flags `lic distill` and `lic qat` share: teacher, data, schedule, loss weights, run dir."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--teacher", default=None, help=teacher_help)
    g.add_argument("--quality", type=int, default=None, help="use the shipped teacher of this quality (1..4)")
    add_training_options(p, data=[DEFAULT_DATA], steps=steps, batch_size=8, crop=256, helps={
        "crop": "square crop size in pixels, a multiple of 16 (default {default}); with --cache, a latent-aligned "
                "window capped at the cached image size (e.g. 512 = whole images)"})
    p.add_argument("--cache", type=Path, default=None,
                   help="teacher targets precomputed by `lic cache-targets` (whole images): a step then costs "
                        "the student alone; --data is not read")
    add_training_options(p, lr=lr, lr_final=lr_final, clip=1.0)
    p.add_argument("--w-image", type=float, default=1.0, help="weight of MSE(student, original crop) (default 1)")
    p.add_argument("--w-teacher", type=float, default=1.0,
                   help="weight of MSE(student, teacher reconstruction) (default 1)")
    p.add_argument("--w-feature", type=float, default=0.0,
                   help="weight of feature matching against the teacher's IGDN outputs (default 0 = off)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="export an exponential moving average of the weights with this decay, e.g. 0.999 "
                        "(the average is checkpointed too; default 0 = export the last step's weights)")
    add_run_arguments(p, save_every=500, log_every=50, export_what="the student")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_training_arguments(p, steps=20_000, lr=1e-3, lr_final=1e-5,
                           teacher_help="teacher spec: zoo:bmshj2018-hyperprior:Q, a CompressAI checkpoint path, "
                                        "or q1..q4 (default: the shipped q3)")
    p.add_argument("--channels", default="64",
                   help="student width: one int, or one per stage comma-separated, e.g. 96,64,48,32 (default 64)")
    p.add_argument("--convs-per-stage", default="1",
                   help="convs per x2 stage: one int, or one per stage comma-separated (default 1)")
    p.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest",
                   help="x2 operator: nearest+conv3x3 (the one `lic hw` builds), deconv4, deconv5 (float/quality "
                        "references) (default nearest)")
    p.add_argument("--head-kernel", type=int, choices=(0, 1, 3), default=3,
                   help="kernel of the conv before the first upsample, 0 = none (default 3)")
    p.add_argument("--latent-convs", type=int, default=0,
                   help="3x3 convs after the head at the latents' resolution, where a conv costs 1/256 of its "
                        "MACs per output pixel; with --init, more than the init's grows it by identity convs "
                        "(default 0)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this float student (its architecture replaces --channels etc.; "
                        "--latent-convs may add convs), e.g. to fine-tune a student of one rate point for the "
                        "teacher of another")


def parse_int_list(text: str, flag: str) -> int | tuple[int, ...]:
    """"8" -> 8, "8,6,4" -> (8, 6, 4)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise LicError(f"{flag} must be an int or a comma-separated list of ints, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def resolve_teacher(args, fingerprint: bytes | None = None):
    """The teacher the flags name; with none, the shipped teacher that has `fingerprint` (when given)
    or the default shipped teacher. A teacher other than `fingerprint`'s is refused."""
    # why: the teacher loads compressai (~5 s); `lic decode --backend torch` imports this module (through
    # quantize/qat.py) and needs no teacher
    from training.teacher import load_teacher
    from training.teacher_codec import find_shipped

    if args.teacher is None and args.quality is None and fingerprint is not None:
        shipped = find_shipped(fingerprint)
        teacher = shipped.teacher if shipped is not None and shipped.integer_hs is None else None
        if teacher is None:
            raise LicError(f"the student was distilled from teacher {fingerprint.hex()}, which is not a shipped "
                           f"teacher; pass it with --teacher")
        return teacher
    teacher = load_teacher(args.teacher, quality=args.quality)
    if fingerprint is not None and teacher.decoder_fingerprint != fingerprint:
        raise LicError(f"the student was distilled from teacher {fingerprint.hex()}, but {teacher.name} is "
                       f"{teacher.fingerprint.hex()}: a student only decodes its own teacher's bitstreams")
    return teacher


# ---------------------------------------------------------------------------------------------
# Loss


@dataclass
class KDWeights:
    image: float = 1.0
    teacher: float = 1.0
    feature: float = 0.0


def _value(t):
    return getattr(t, "value", t)  # Brevitas activations return QuantTensors


def _is_igdn(m: nn.Module) -> bool:
    from lic.compressai_compat import compressai  # noqa: F401  (why: compressai only with a teacher, as above)
    from compressai.layers import GDN

    return isinstance(m, GDN) and m.inverse


class TeacherTargets:
    """The frozen teacher's half of a batch: x -> (y_hat, x_teacher, teacher features)."""

    def __init__(self, model: nn.Module, features: bool):
        self.model = model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self._feats: list[torch.Tensor] = []
        self._hooks = []
        self.feature_channels: list[int] = []
        if features:
            for m in model.g_s:
                if _is_igdn(m):
                    self._hooks.append(m.register_forward_hook(lambda m, i, o: self._feats.append(o)))
                    self.feature_channels.append(m.beta.numel())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor):
        self._feats = []
        y_hat = torch.round(self.model.g_a(x))
        x_teacher = self.model.g_s(y_hat).clamp_(0, 1)
        return y_hat, x_teacher, self._feats

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def stage_outputs(student: nn.Module) -> list[tuple[nn.Module, int]]:
    """(activation module, channels) at the end of each student stage that has one (all but the
    last), for the float student and the Brevitas one alike: both are `layers` built from layer_plan."""
    cfg = student.cfg
    plan = layer_plan(cfg)
    ends = {f"s{i}c{cfg.convs_per_stage[i] - 1}" for i in range(cfg.stages - 1)}
    out, conv_i = [], 0
    layers = list(student.layers)
    for k, m in enumerate(layers):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            spec = plan[conv_i]
            conv_i += 1
            if spec.name in ends:
                out.append((layers[k + 1], spec.out_ch))
    return out


class TeacherOnTheFly:
    """Batches (x, y_hat, x_teacher, teacher features) with the teacher run on fresh random crops."""

    def __init__(self, targets: TeacherTargets, crops: RandomCrops, device: torch.device):
        self.targets, self.crops, self.device = targets, crops, device

    def __call__(self, size: int):
        x = self.crops.batch(size).to(self.device, non_blocking=True)
        y_hat, x_teacher, feats = self.targets(x)
        return x, y_hat, x_teacher, feats


def batch_source(args, targets: TeacherTargets, teacher_fingerprint: bytes, seed: int, device: torch.device):
    """Where a run's batches come from: the teacher-target cache (--cache) or the teacher on the fly."""
    if args.cache is None:
        return TeacherOnTheFly(targets, RandomCrops(args.data, args.crop, seed=seed), device)

    if targets.feature_channels:
        raise LicError("--w-feature needs the teacher's features, which a --cache does not hold")
    cached = CachedTargets(args.cache, teacher_fingerprint, args.crop, seed=seed)
    return lambda size: tuple(t.to(device) if torch.is_tensor(t) else t for t in cached(size))


class DistillNet(nn.Module):
    """Student plus feature adapters: the one module the optimiser trains and DDP wraps.
    forward(y_hat) -> (x_student pre-clamp, adapted student features)."""

    def __init__(self, student: nn.Module, teacher_channels: list[int]):
        super().__init__()
        self.student = student
        stages = stage_outputs(student)[:len(teacher_channels)]
        self.adapters = nn.ModuleList(nn.Conv2d(c, t, 1) for (_, c), t in zip(stages, teacher_channels))
        self._feats: list[torch.Tensor] = []
        self._hooks = [m.register_forward_hook(lambda m, i, o: self._feats.append(_value(o))) for m, _ in stages]

    def forward(self, y_hat: torch.Tensor):
        self._feats = []
        x = self.student(y_hat)
        return x, [a(f) for a, f in zip(self.adapters, self._feats)]

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def kd_loss(x, x_student, x_teacher, student_feats, teacher_feats, w: KDWeights) -> dict[str, torch.Tensor]:
    # The student output is compared unclamped: the targets lie in [0, 1], so this MSE bounds the
    # clamped one from above and, unlike it, still has a gradient for pixels out of range.
    mse_image = F.mse_loss(x_student, x)
    mse_teacher = F.mse_loss(x_student, x_teacher)
    if student_feats:
        feature = torch.stack([F.mse_loss(s, t) for s, t in zip(student_feats, teacher_feats)]).mean()
    else:
        feature = x_student.new_zeros(())
    loss = w.image * mse_image + w.teacher * mse_teacher + w.feature * feature
    return {"loss": loss, "mse_image": mse_image, "mse_teacher": mse_teacher, "feature": feature}


@torch.no_grad()
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over the batch of per-image PSNR (dB, peak 1) of a clamped to [0, 1] against b."""
    mse = (a.clamp(0, 1) - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return float((-10 * torch.log10(mse)).mean())


# ---------------------------------------------------------------------------------------------
# Loop shared with `lic qat`


def train_kd(args, teacher, student: nn.Module, *, kind: str, meta: dict, desc: str,
             prepare: Callable | None = None, provenance: dict | None = None) -> Path | None:
    """Distil `student` from `teacher` under the KD loss for args.steps, resuming args.run_dir.

    `meta` (config, teacher fingerprint, ...) goes into the checkpoint, where a resume must find it
    unchanged, and into the export {"kind": kind, **meta, "state_dict": ...}. `prepare(student,
    batches)` runs once on a fresh start, before DDP (e.g. QAT calibration; DDP then
    broadcasts rank 0's result). Returns the export path on rank 0, else None."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.crop % 16:
        raise LicError(f"--crop must be a multiple of 16 (the teacher's and student's scale), got {args.crop}")
    rank, world, device = setup_distributed()
    weights = KDWeights(args.w_image, args.w_teacher, args.w_feature)
    targets = TeacherTargets(teacher.model.to(device), features=weights.feature > 0)
    net = DistillNet(student, targets.feature_channels).to(device)
    setup = {"kind": kind, **meta, "feature_adapters": len(net.adapters)}

    ckpt_path = args.run_dir / "checkpoint.pt"
    step, elapsed, ck = 0, 0.0, None
    if ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        for k, v in setup.items():
            if ck.get("setup", {}).get(k) != v:
                raise LicError(f"{ckpt_path} was made with another {k.replace('_', ' ')} "
                               f"({ck.get('setup', {}).get(k)} vs {v}); use another --run-dir")
        net.load_state_dict(ck["net"])
        step, elapsed = ck["step"], ck["elapsed_s"]
        if rank == 0:
            print(f"resuming {ckpt_path} at step {step}", file=sys.stderr)
    # Each rank draws its own crops; the seed includes the step so a resumed run does not replay crops.
    batches = batch_source(args, targets, teacher.fingerprint, args.seed * 1_000_003 + rank * 7919 + step, device)
    if ck is None and prepare is not None:
        prepare(net.student, batches)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=args.lr)
    if ck is not None:
        opt.load_state_dict(ck["opt"])
    # A run resumed with --ema that had none starts its average at the resumed weights.
    average = WeightAverage(student, args.ema, ck.get("ema") if ck else None) if args.ema else None
    ddp = wrap_ddp(net, world, device)

    log = None
    if rank == 0:
        args.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(args.run_dir / "log.jsonl", "a")
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, desc=desc, unit="step", dynamic_ncols=True)
    t0 = time.time() - elapsed
    budget = TimeBox(args.minutes)
    net.train()
    while step < args.steps:
        set_lr(opt, cosine_lr(step, args.steps, args.lr, args.lr_final))
        x, y_hat, x_teacher, t_feats = batches(args.batch_size)
        x_student, s_feats = ddp(y_hat)
        losses = kd_loss(x, x_student, x_teacher, s_feats, t_feats, weights)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.clip)
        opt.step()
        if average is not None:
            average.update(student)
        step += 1
        if rank == 0:
            rec = {"step": step, **{k: v.item() for k, v in losses.items()},
                   "psnr_student": psnr(x_student.detach(), x), "psnr_teacher": psnr(x_teacher, x),
                   "lr": opt.param_groups[0]["lr"]}
            bar.set_postfix(loss=f"{rec['loss']:.5f}", psnr=f"{rec['psnr_student']:.2f}/{rec['psnr_teacher']:.2f}")
            bar.update(1)
            if step % args.log_every == 0 or step == args.steps:
                log.write(json.dumps(rec) + "\n")
                log.flush()
        # Every rank must leave the loop at the same step (DDP); rank 0's clock decides.
        out_of_time = broadcast_flag(budget.expired(), world, device)
        if rank == 0 and (step % args.save_every == 0 or step == args.steps or out_of_time):
            atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step,
                         "elapsed_s": time.time() - t0, "setup": setup,
                         "ema": average.state() if average is not None else None,
                         "args": {k: str(v) for k, v in vars(args).items()}}, ckpt_path)
        if out_of_time and step < args.steps:
            break
    bar.close()
    targets.close()
    net.close()
    if log is not None:
        log.close()
    out_path = None
    if step < args.steps:
        if rank == 0:
            print(f"--minutes {args.minutes:g} spent: stopped at step {step} of {args.steps}, checkpoint "
                  f"{ckpt_path}; the same command resumes it", file=sys.stderr)
    elif rank == 0 and args.export:
        student.eval().cpu()
        args.export.parent.mkdir(parents=True, exist_ok=True)
        state = student.state_dict() if average is None else {k: v.cpu() for k, v in average.average.items()}
        atomic_save({"kind": kind, **meta, "state_dict": state}, args.export)
        write_provenance(args.export, {
            "kind": kind, "teacher": teacher.name, **meta, **(provenance or {}),
            "steps": step, "batch_size": args.batch_size * world, "crop": args.crop,
            "lr": args.lr, "lr_final": args.lr_final, **({"ema": args.ema} if average is not None else {}),
            "loss_weights": {"image": weights.image, "teacher": weights.teacher, "feature": weights.feature},
            **data_provenance(args),
            "seed": args.seed,
        }, t0=t0, world=world, device=device)
        out_path = args.export
    # Free DDP's reducer while its process group is alive: destroyed after destroy_process_group
    # (when this frame's locals go), it sometimes hangs the gloo rank that got there first.
    del ddp
    teardown_distributed(world)
    return out_path


# ---------------------------------------------------------------------------------------------
# Exports


def read_student_export(path: Path, kind: str) -> dict:
    """The dict of a `lic distill` / `lic qat` export of the given kind, or a LicError saying why not."""
    obj = read_torch_file(path, "student file")
    if not isinstance(obj, dict) or "kind" not in obj:
        raise LicError(f"{path}: not a student export (expected a {kind} written by `lic "
                       f"{'distill' if kind == FLOAT_KIND else 'qat'} --export`)")
    if obj["kind"] != kind:
        raise LicError(f"{path} holds a {obj['kind']}, expected a {kind}")
    missing = [k for k in ("config", "state_dict", "teacher_fingerprint") if k not in obj]
    if missing:
        raise LicError(f"{path}: {kind} export lacks {', '.join(missing)}")
    try:
        obj["teacher_fingerprint"] = bytes.fromhex(obj["teacher_fingerprint"])
    except (TypeError, ValueError):
        raise LicError(f"{path}: bad teacher fingerprint") from None
    return obj


def student_config(obj: dict, path: Path) -> StudentConfig:
    try:
        return StudentConfig.from_dict(obj["config"])
    except (TypeError, ValueError) as e:
        raise LicError(f"{path}: bad student config ({e})") from None


def load_state(model: nn.Module, state_dict: dict, path: Path) -> None:
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError) as e:
        raise LicError(f"{path}: weights do not fit the stored config ({str(e).splitlines()[0]})") from None


def load_float_student(path: Path) -> tuple[StudentSynthesis, StudentConfig, bytes]:
    """(student in eval mode, its config, the 16-byte fingerprint of its teacher)."""
    obj = read_student_export(path, FLOAT_KIND)
    cfg = student_config(obj, path)
    model = StudentSynthesis(cfg)
    load_state(model, obj["state_dict"], path)
    return model.eval(), cfg, obj["teacher_fingerprint"]


# ---------------------------------------------------------------------------------------------


def distill(**options) -> Path | None:
    """`lic distill` as a function: keyword arguments are its options by their dest names (run_dir=...,
    steps=..., channels="96,64", quality=3, ...), the others at the command's defaults. Returns the
    exported student's path (None without export=, or when minutes= stopped the run first)."""
    return distill_student(options_namespace(add_arguments, **options))


def run(args) -> int:
    distill_student(args)
    return 0


def distill_student(args) -> Path | None:
    """The work of `lic distill` for parsed options (see distill())."""
    teacher = resolve_teacher(args)
    provenance = {}
    if args.init is not None:
        init_student, cfg, init_teacher = load_float_student(args.init)
        if cfg.latent_channels != teacher.model.M:
            raise LicError(f"--init student reads {cfg.latent_channels} latent channels, {teacher.name} has "
                           f"{teacher.model.M}")
        provenance = {**init_provenance(args.init), "init_teacher_fingerprint": init_teacher.hex()}
        if args.latent_convs and args.latent_convs < cfg.latent_convs:
            raise LicError(f"--latent-convs {args.latent_convs}: the --init student has {cfg.latent_convs}, "
                           "and a student can only grow")
        if args.latent_convs > cfg.latent_convs:
            init_student = grow_latent_convs(init_student, args.latent_convs)
            cfg = init_student.cfg
            provenance["grown_to_latent_convs"] = args.latent_convs
    else:
        try:
            cfg = StudentConfig(latent_channels=teacher.model.M, channels=parse_int_list(args.channels, "--channels"),
                                convs_per_stage=parse_int_list(args.convs_per_stage, "--convs-per-stage"), upsample=args.upsample,
                                head_kernel=args.head_kernel, latent_convs=args.latent_convs)
        except ValueError as e:
            raise LicError(f"bad student architecture: {e}") from None
    torch.manual_seed(args.seed)
    student = StudentSynthesis(cfg)
    if args.init is not None:
        student.load_state_dict(init_student.state_dict())
    meta = {"config": cfg.to_dict(), "teacher_fingerprint": teacher.fingerprint.hex()}
    return train_kd(args, teacher, student, kind=FLOAT_KIND, meta=meta,
                    desc=f"distill {cfg.upsample} {','.join(map(str, cfg.channels))}", provenance=provenance)
