"""What every training command shares: torchrun/DDP setup, the lr schedule, crash-safe checkpoints
and the provenance record written beside an exported model."""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from host.decoder_package import sha256_file
from lic.errors import LicError
from training.options import DEFAULT_DATA, REPO  # noqa: F401  (DEFAULT_DATA: the training images, for callers)


class TimeBox:
    """The wall-clock budget of one invocation (--minutes). A run fitted to what a working period or
    a GPU lease has left stops at a step boundary, checkpoints, and is resumed by the same command."""

    def __init__(self, minutes: float | None):
        if minutes is not None and minutes <= 0:
            raise LicError(f"--minutes must be positive, got {minutes:g}")
        self.deadline = None if minutes is None else time.monotonic() + 60 * minutes

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def full_fp32_on_gpu() -> None:
    """Turn TF32 off on CUDA. TF32 keeps 10 mantissa bits in convs and matmuls (~1e-3 relative): it
    moves a teacher's y_hat across rounding boundaries, and it trains a quantised student on
    activations that land on other steps of its quantisers than the fp32 (CPU, ONNX) and integer
    (FINN) decoders it ships to. The students are small enough that fp32 costs little."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Under torchrun (WORLD_SIZE > 1) this joins the process group: nccl
    with one GPU per process, gloo for CPU processes; otherwise a single process on the best device."""
    full_fp32_on_gpu()
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def broadcast_flag(flag: bool, world: int, device: torch.device) -> bool:
    """Rank 0's flag on every rank (a decision all processes of a DDP run must take together)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def teardown_distributed(world: int) -> None:
    if world > 1:
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, world: int, device: torch.device) -> torch.nn.Module:
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def cosine_lr(step: int, total: int, lr: float, lr_final: float | None) -> float:
    """Cosine decay from `lr` at step 0 to `lr_final` at `total`; constant `lr` when lr_final is None."""
    if lr_final is None:
        return lr
    t = min(step / max(total, 1), 1.0)
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * t))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


class WeightAverage:
    """An exponential moving average of a model's weights, the model that gets exported.

    Late in a cosine schedule the weights still hop between nearby minima from batch to batch (four
    crops a step); the average sits between them. For a quantised student the average is taken of
    the latent float weights and the learned log2 scales, so the export is still a valid
    quantised model. The decay ramps up from 0 ((1 + n) / (10 + n) until it reaches `decay`), so
    the average is not dominated by the weights it started from."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict | None = None):
        if not 0 < decay < 1:
            raise LicError(f"--ema must lie in (0, 1), got {decay}")
        self.decay = decay
        if state is None:
            self.updates = 0
            self.average = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.updates, self.average = state["updates"], state["average"]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k not in self.average:  # Brevitas creates learned weight scales at the first training step
                self.average[k] = v.detach().clone()
            elif v.is_floating_point():
                self.average[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.average[k].copy_(v)

    def state(self) -> dict:
        return {"updates": self.updates, "average": self.average}


def atomic_save(obj, path: Path) -> None:
    """torch.save through a temporary file, so a run killed mid-write keeps its previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def read_torch_file(path: Path, what: str):
    """torch.load(weights_only) of a file the user named, with one-line errors for the usual failures."""
    path = Path(path)
    if not path.is_file():
        raise LicError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a non-checkpoint file
        raise LicError(f"{path}: cannot read as a torch file ({type(e).__name__})") from None


def data_provenance(args) -> dict:
    """What a run trained on, for its provenance: the image folders, or the teacher-target caches with
    how each was made (a cache lives under build/, so its own record would not travel with the file;
    a refined one names the student its latents were refined for)."""
    if args.cache is None:
        return {"data": [str(d) for d in args.data]}
    caches = args.cache if isinstance(args.cache, list) else [args.cache]
    made = []
    for c in caches:
        m = json.loads((Path(c) / "manifest.json").read_text())
        made.append({"cache": str(c), **{k: m[k] for k in ("command", "teacher", "teacher_fingerprint", "refined",
                                                           "seconds", "hardware") if k in m}})
    return {"data": "teacher-target cache " + " + ".join(str(c) for c in caches), "caches": made}


def command_line() -> str:
    # `python -m lic.cli X` and the `lic X` entry point are the same command
    prog = "lic" if Path(sys.argv[0]).parts[-2:] == ("lic", "cli.py") else Path(sys.argv[0]).name
    return " ".join(shlex.quote(a) for a in [prog, *sys.argv[1:]])


def require_cuda(flag: str, hint: str = "") -> None:
    """One line saying why a command asked for the GPU cannot have it."""
    if not torch.cuda.is_available():
        raise LicError(f"{flag}: no CUDA device visible to torch {torch.__version__}"
                       + (" (a CPU-only build)" if torch.version.cuda is None else "") + hint)


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def write_provenance(export_path: Path, fields: dict, *, t0: float, world: int, device: torch.device) -> Path:
    """Write EXPORT.provenance.json: how the exported model was made, enough to make it again.
    `fields` are the command's own (data, steps, batch, ...); `t0` is the run's start on the
    wall clock, already moved back by the time spent before a resume."""
    prov = {"command": command_line(), **fields,
            "train_time_s": round(time.time() - t0, 1), "processes": world,
            "hardware": hardware(device), "torch": torch.__version__}
    path = export_path.with_suffix(".provenance.json")
    path.write_text(json.dumps(prov, indent=2) + "\n")
    return path


def init_provenance(init: Path) -> dict:
    """Provenance fields for a run that continues from `init`: its path, its sha256 (which names the
    weights even after the file at that path is replaced) and, where the init has its own
    .provenance.json beside it, that record nested whole, so a shipped file's record reaches back
    through every run it continues, with no hand-written history."""
    fields = {"init": str(init), "init_sha256": sha256_file(init)}
    prov = init.with_suffix(".provenance.json")
    if prov.is_file():
        fields["init_provenance"] = json.loads(prov.read_text())
    return fields
