"""`lic cache-targets`: the frozen teacher's half of distillation, computed once.

Decoder-only distillation spends most of a step in the teacher (g_a and g_s cost ~84 kMAC per
pixel against the student's ~4). Since the teacher is frozen, its targets are a fixed function of
the image: cache them and a step costs the student alone.

The cache holds whole training images, not crops: y_hat comes from g_a over the whole image and
x_teacher from g_s over the whole y_hat, exactly what a .lic file of that image carries and what
its teacher decodes. Training on whole images (or on latent-aligned windows of them) then sees the
same borders a deployed decoder sees, instead of crop borders the teacher never saw.

With --refine STEPS the latents are those `lic encode --refine` would write (quantize/latent_refinement.py):
each entry's y refined for the decoder of the encoder's files (for an encoder tuned for a quantised student,
that shipped student), z still g_a's. A student trained on them sees what it decodes in deployment, not
g_a's guess (README, ablation). Refining costs ~10 s per 320x448 entry per 100 steps on one core, so the
build is resumable: the .tmp folder keeps what is done and the same command continues it. On a GPU
(--device cuda) entries are refined --batch-size at a time: one 320x448 entry leaves most of it idle.

One builder at a time per folder (a lock on DIR.lock): two recipes may ask for the same cache at once
(training/recipes/long_run.sh beside board_student.sh), and two writers of one .tmp folder would
interleave their entries. The second waits, then finds the first one's finished cache of the same
targets and keeps it instead of building it again (delete the folder to rebuild).

Each image is stored in two variants, as is and mirrored: the teacher is not mirror-equivariant,
so a mirrored target must come from the teacher, not from flipping the cached arrays. Portrait
images are turned to landscape first, so that all entries share one shape.

Layout of a cache folder (all arrays uint8 / int8, memory-mapped when training):
  manifest.json   teacher name and fingerprint, image list, shape, command, time
  x.npy           (N, H, W, 3) uint8      the images
  x_teacher.npy   (N, H, W, 3) uint8      the teacher's decode, rounded like a decoded PNG
  y_hat.npy       (N, M, H/16, W/16) int8 the latent integers, clipped to int8 (counted in the manifest)
  z.npy           (N, N_z, H/64, W/64) int8  the hyper-latent symbols the EntropyBottleneck codes
                                        (for `lic distill-hyper --cache`)
"""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lic.errors import LicError
from training.loop import command_line, hardware

CACHE_VERSION = 1


def _landscape_crop(a: np.ndarray, h: int, w: int) -> np.ndarray | None:
    if a.shape[0] > a.shape[1]:
        a = np.rot90(a)
    if a.shape[0] < h or a.shape[1] < w:
        return None
    y0, x0 = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return np.ascontiguousarray(a[y0:y0 + h, x0:x0 + w])


@torch.no_grad()
def build_cache(teacher, images: list[Path], out: Path, size: tuple[int, int],
                device: torch.device = torch.device("cpu"), models=None, refinement=None, batch: int = 1) -> dict:
    """The cache of `teacher`'s targets; with a `refinement` (and the EntropyModels `models` whose
    files it refines), each entry's latents refined as `lic encode --refine` would write them. `batch`
    entries at a time."""
    h, w = size
    model = teacher.model.eval().to(device)
    entries = []
    for p in images:
        with Image.open(p) as im:
            a = _landscape_crop(np.asarray(im.convert("RGB")), h, w)
        if a is not None:
            entries += [(p, False, a), (p, True, a[:, ::-1])]
    if not entries:
        raise LicError(f"no training image covers {h}x{w}")
    what = {"teacher_fingerprint": teacher.fingerprint.hex(), "height": h, "width": w,
            "entries": [{"image": str(p), "mirrored": f} for p, f, _ in entries]}
    if refinement is not None:
        what["refined"] = {"steps": refinement.steps, "lr": refinement.lr, "seed": refinement.seed,
                           "for": refinement.for_decoder}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another build of {out} to finish", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        finished = _finished(out, what)
        if finished is not None:
            print(f"{out} already holds these targets: kept (delete it to rebuild)", file=sys.stderr)
            return finished
        return _build(model, entries, what, out, device, models, refinement, batch, teacher)


def _finished(out: Path, what: dict) -> dict | None:
    """The manifest of a finished cache in `out` of exactly the targets `what` describes, else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    held = {k: manifest.get(k) for k in what}
    return manifest if manifest.get("version") == CACHE_VERSION and held == what else None


def _build(model, entries, what, out, device, models, refinement, batch, teacher) -> dict:
    h, w = what["height"], what["width"]
    n, m = len(entries), model.M
    tmp = out.with_name(out.name + TMP_SUFFIX)
    done = _resumable(tmp, what)
    mode = "r+" if done else "w+"
    xs = np.lib.format.open_memmap(tmp / "x.npy", mode, np.uint8, (n, h, w, 3))
    xts = np.lib.format.open_memmap(tmp / "x_teacher.npy", mode, np.uint8, (n, h, w, 3))
    ys = np.lib.format.open_memmap(tmp / "y_hat.npy", mode, np.int8, (n, m, h // 16, w // 16))
    zs = np.lib.format.open_memmap(tmp / "z.npy", mode, np.int8, (n, model.N, h // 64, w // 64))
    medians = model.entropy_bottleneck._get_medians()
    clipped = done.get("clipped", 0)
    seconds = done.get("seconds", 0.0)
    t0 = time.time()
    start = done.get("entries_done", 0)
    desc = f"teacher targets {teacher.name}" + (f", latents refined {refinement.steps} steps" if refinement else "")
    bar = tqdm(desc=desc, unit="img", initial=start, total=n)
    for i in range(start, n, batch):
        j = min(i + batch, n)
        a = np.stack([e[2] for e in entries[i:j]])
        x = torch.from_numpy(a).permute(0, 3, 1, 2).to(device).float().div_(255)
        if refinement is None:
            y = model.g_a(x)
            z = model.h_a(torch.abs(y))
        else:
            y, z = refinement.latents(models, x, h, w)
        y_hat = torch.round(y)
        z = model.entropy_bottleneck.quantize(z, "symbols", medians)
        x_t = model.g_s(y_hat).clamp_(0, 1)
        xs[i:j] = a
        xts[i:j] = (x_t.permute(0, 2, 3, 1) * 255).round_().to(torch.uint8).cpu().numpy()
        clipped += int((y_hat.abs() > 127).sum()) + int((z.abs() > 127).sum())
        ys[i:j] = y_hat.clamp_(-128, 127).to(torch.int8).cpu().numpy()
        zs[i:j] = z.clamp_(-128, 127).to(torch.int8).cpu().numpy()
        if refinement is not None:  # seconds per entry: worth keeping on an interruption
            _save_progress(tmp, what, j, clipped, seconds + time.time() - t0, (xs, xts, ys, zs))
        bar.update(j - i)
    bar.close()
    for arr in (xs, xts, ys, zs):
        arr.flush()
    manifest = {
        "version": CACHE_VERSION, "teacher": teacher.name, "teacher_fingerprint": teacher.fingerprint.hex(),
        "decoder_fingerprint": teacher.decoder_fingerprint.hex(),
        "entries": what["entries"], "height": h, "width": w, "latent_channels": m, "values_clipped_to_int8": clipped,
        **({"refined": what["refined"]} if refinement is not None else {}),
        "command": command_line(), "seconds": round(seconds + time.time() - t0, 1), "hardware": hardware(device),
        "batch": batch,
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (tmp / PROGRESS).unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return manifest


PROGRESS = "progress.json"
TMP_SUFFIX = ".tmp"  # a cache under construction: DIR.tmp, renamed to DIR when finished


def builds_in(folder: Path) -> dict[str, str]:
    """The caches being built (or stopped part-way) in `folder`, each with how far its progress file says
    it has come."""
    building = {}
    for tmp in sorted(folder.glob("*" + TMP_SUFFIX)):
        try:
            doc = json.loads((tmp / PROGRESS).read_text())
            building[tmp.name.removesuffix(TMP_SUFFIX)] = (
                f"{doc['entries_done']} of {len(doc['what']['entries'])} entries saved, {doc['seconds'] / 3600:.2f} h")
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not started yet, or being replaced as we read it
    return building


def _resumable(tmp: Path, what: dict) -> dict:
    """The progress of an interrupted build of the same cache in `tmp` ({} when there is none: `tmp`
    is then emptied for a fresh start)."""
    try:
        progress = json.loads((tmp / PROGRESS).read_text())
    except (OSError, ValueError):
        progress = None
    if progress is not None and progress.get("what") == what:
        print(f"continuing {tmp}: {progress['entries_done']} of {len(what['entries'])} entries done", file=sys.stderr)
        return progress
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return {}


def _save_progress(tmp: Path, what: dict, entries_done: int, clipped: int, seconds: float, arrays) -> None:
    for arr in arrays:  # the entries on disk before the count that says they are
        arr.flush()
    doc = {"what": what, "entries_done": entries_done, "clipped": clipped, "seconds": seconds}
    (tmp / (PROGRESS + ".new")).write_text(json.dumps(doc))
    (tmp / (PROGRESS + ".new")).replace(tmp / PROGRESS)


class CachedTargets:
    """Batches (x, y_hat, x_teacher) from a cache folder: latent-aligned windows of `crop` pixels
    (the whole entry when crop is None or covers it), drawn with a seeded generator.

    The cache must hold the targets of the teacher with `teacher_fingerprint`; with `of_decoder`, those
    of any encoder whose latents that teacher decodes (itself, or an encoder tuned from it), which is
    all the integer h_s needs: it sees z and y_hat, never g_a."""

    def __init__(self, folder: Path, teacher_fingerprint: bytes, crop: int | None, seed: int, of_decoder: bool = False):
        folder = Path(folder)
        try:
            self.manifest = json.loads((folder / "manifest.json").read_text())
            self.x = np.load(folder / "x.npy", mmap_mode="r")
            self.x_teacher = np.load(folder / "x_teacher.npy", mmap_mode="r")
            self.y_hat = np.load(folder / "y_hat.npy", mmap_mode="r")
            self.z = np.load(folder / "z.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise LicError(f"{folder}: not a teacher-target cache ({e}); make one with `lic cache-targets`") from None
        if self.manifest.get("version") != CACHE_VERSION:
            raise LicError(f"{folder}: cache version {self.manifest.get('version')}, expected {CACHE_VERSION}")
        # Caches written before the field existed hold an untuned teacher's targets.
        held = self.manifest.get("decoder_fingerprint", self.manifest["teacher_fingerprint"]) if of_decoder \
            else self.manifest["teacher_fingerprint"]
        if held != teacher_fingerprint.hex():
            raise LicError(f"{folder} holds targets of teacher {self.manifest['teacher']} "
                           f"({self.manifest['teacher_fingerprint']}), not of this run's teacher "
                           f"({teacher_fingerprint.hex()})" + (" or an encoder tuned from it" if of_decoder else ""))
        n, h, w, _ = self.x.shape
        if crop is not None and crop % 16:
            raise LicError(f"--crop must be a multiple of 16, got {crop}")
        self.ch = h if crop is None else min(crop, h)
        self.cw = w if crop is None else min(crop, w)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.x.shape[0]

    def hyper(self, size: int):
        """(z symbols, y_hat) of `size` whole entries, as float tensors: what the integer h_s trains on."""
        idx = np.sort(self.rng.integers(len(self), size=size))
        return (torch.from_numpy(self.z[idx].astype(np.float32)), torch.from_numpy(self.y_hat[idx].astype(np.float32)))

    def __call__(self, size: int):
        """(x, y_hat, x_teacher, teacher features = []) as float tensors."""
        n, h, w, _ = self.x.shape
        lh, lw = self.ch // 16, self.cw // 16
        idx = self.rng.integers(n, size=size)
        oy = self.rng.integers(h // 16 - lh + 1, size=size)
        ox = self.rng.integers(w // 16 - lw + 1, size=size)
        x = np.stack([self.x[i, 16 * a:16 * (a + lh), 16 * b:16 * (b + lw)] for i, a, b in zip(idx, oy, ox)])
        xt = np.stack([self.x_teacher[i, 16 * a:16 * (a + lh), 16 * b:16 * (b + lw)]
                       for i, a, b in zip(idx, oy, ox)])
        y = np.stack([self.y_hat[i, :, a:a + lh, b:b + lw] for i, a, b in zip(idx, oy, ox)])

        def image(a):
            return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)
        return image(x), torch.from_numpy(y.astype(np.float32)), image(xt), []
