"""Per-image latent refinement: the encoder searches, for each image, the latents its decoder turns
into the best picture for the bits (the encode-time step of Campos et al. 2019, "Content adaptive
optimization for neural image compression", and Yang et al. 2020, "Improving inference for neural
image compression").

g_a is amortised: one network guesses latents for every image, and the tuned encoder learned that
guess for a decoder far smaller than the one g_a was trained with. Here g_a's y is only the starting
point; y itself is then optimised by Adam on the teacher's rate-distortion loss for this one image,

    lambda * 255^2 * MSE(decoder(round(y)), x)  +  bits(y | the scales the file codes y with)  per pixel

through the frozen decoder that will read the file (the quantised student for a tuned encoder's files,
the teacher's g_s for the teacher's). z stays the encoder's, so those scales (the integer h_s's, for
v2 files) are known before the search and y's rate is priced exactly: letting z move too, priced by
the float h_s, drifted away from what the integer h_s then coded (README, ablation). Nothing a decoder
holds changes: the file is an ordinary .lic of the same models and fingerprint, only slower to write
(on the encoding workstation, not the board).

Rounding: the decoder sees round(y) with straight-through gradients, as on the board; y's rate in the
gradient step uses additive uniform noise (CompressAI's training proxy; straight-through rates did
worse). Every `check_every` steps the rounded y is priced exactly as it will be coded and the best
iterate is kept; the first check is g_a's own y, so refinement never returns latents worse than the
encoder's by that measure. The noise is seeded: one machine, one torch, one thread count, same bytes.
"""

from __future__ import annotations

import hashlib

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from lic.errors import LicError
from training.teacher_codec import scale_indexes


def _round_ste(t: torch.Tensor) -> torch.Tensor:
    return t + (torch.round(t) - t).detach()


@dataclass
class Refinement:
    synthesis: nn.Module  # the decoder of the files, frozen: image before clamping from y_hat
    lmbda: float
    steps: int = 100
    lr: float = 0.04
    check_every: int = 5
    seed: int = 0
    progress: bool = False  # a bar over the steps (one image on the command line)
    for_decoder: str = ""  # what the latents are refined for, as a cache manifest records it

    def __post_init__(self):
        if self.steps < 1:
            raise LicError(f"latent refinement needs at least one step, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise LicError(f"latent refinement needs a positive learning rate, got {self.lr}")
        if self.lmbda is None or self.lmbda <= 0:
            raise LicError("latent refinement needs the teacher's lambda; this teacher records none")

    def latents(self, models, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, z) for the padded images x (B x 3 x H x W in [0, 1], on the synthesis's device) whose first
        height x width pixels are the pictures; what `encode` then rounds and codes. z stays g_a's (through
        h_a), so the scales y is coded with are known before the search and its rate is priced exactly.
        Each image is refined on its own; a batch only runs them together (one 320x448 image leaves most
        of a GPU idle), equal to one at a time to within float rounding."""
        model = models.teacher.model
        target = x[..., :height, :width]
        with torch.inference_mode():
            y0 = model.g_a(x)
            z = model.h_a(torch.abs(y0))
            scales = _coded_scales(models, z)
        frozen = [p for p in self.synthesis.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            # autograd even when the caller encodes under inference_mode; clones are ordinary tensors
            with torch.inference_mode(False), torch.enable_grad():
                y = self._search(model.gaussian_conditional, y0.clone().requires_grad_(True), scales.clone(),
                                 target.clone(), height * width)
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return y, z

    def _search(self, gc, y, scales, target, pixels):
        noise = torch.Generator().manual_seed(self.seed)  # on the CPU: the same noise on every device
        opt = torch.optim.Adam([y], lr=self.lr)
        best_cost = torch.full((len(y),), math.inf, device=y.device)
        best = y.detach().clone()
        bar = tqdm(total=self.steps, desc="refine latents", unit="step", leave=False, disable=not self.progress,
                   file=sys.stderr)
        for step in range(self.steps + 1):
            if step % self.check_every == 0 or step == self.steps:
                with torch.no_grad():
                    cost = self.cost(gc, y, scales, target, pixels, noisy_rate=False)
                better = cost < best_cost
                best_cost = torch.where(better, cost, best_cost)
                best[better] = y.detach()[better]
            if step == self.steps:
                break
            for g in opt.param_groups:  # cosine to zero: the last steps settle instead of jumping
                g["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / self.steps))
            # images do not interact: the sum's gradient for each y is that image's own cost's
            loss = self.cost(gc, y, scales, target, pixels, noisy_rate=True, noise=noise).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
        bar.close()
        return best

    def cost(self, gc, y, scales, target, pixels, noisy_rate: bool, noise: torch.Generator | None = None):
        """Per image: lambda * 255^2 * MSE + bits of y per pixel under the scales it will be coded with;
        with noisy_rate=False, of the rounded y exactly as it would be coded (z's bits are fixed). Every
        image of a batch draws the same noise, as each would alone."""
        y_hat = _round_ste(y)
        if noisy_rate:
            y_rate = y + (torch.rand(y.shape[1:], generator=noise).to(y.device) - 0.5)
        else:
            y_rate = y_hat
        bits = -torch.log2(gc.likelihood_lower_bound(gc._likelihood(y_rate, scales)))
        x_hat = self.synthesis(y_hat)[..., :target.shape[-2], :target.shape[-1]].clamp(0, 1)
        mse = ((x_hat - target) ** 2).mean(dim=(1, 2, 3))
        return self.lmbda * 255 ** 2 * mse + bits.sum(dim=(1, 2, 3)) / pixels


def _coded_scales(models, z: torch.Tensor) -> torch.Tensor:
    """The scales each image's y is coded with, from its z as `encode` codes it."""
    model = models.teacher.model
    eb = model.entropy_bottleneck
    z_hat = eb.decompress(eb.compress(z), z.shape[-2:])
    return model.gaussian_conditional.scale_table[scale_indexes(models, z_hat).long()]


def files_decoder_file(models, student: Path | None = None) -> Path | None:
    """The shipped quantised student that decodes files of these entropy models (for an encoder tuned
    for one), or None for a teacher's files, which its own g_s decodes. A `student` given (a candidate
    not shipped yet, for which its own tuned encoder's files are refined) replaces the shipped one."""
    teacher = models.teacher
    if teacher.base_fingerprint is None:
        if student is not None:
            raise LicError(f"{teacher.name} is not a tuned encoder: its files are decoded by its own g_s, "
                           f"not by the student {student}")
        return None
    if student is not None:
        return student
    # why: the quantised student loads brevitas (~3 s), which `lic encode` of a teacher's own files never needs
    from quantize.ship_students import STUDENTS_MANIFEST, read_students

    entry = next((e for e in read_students(STUDENTS_MANIFEST)
                  if e["teacher_fingerprint"] == teacher.base_fingerprint.hex()), None)
    if entry is None:
        raise LicError(f"{teacher.name} was tuned from teacher {teacher.base_fingerprint.hex()}, which has no "
                       f"shipped quantised student to refine the latents for")
    return entry["quant"]


def files_decoder(models, student: Path | None = None) -> nn.Module:
    """The synthesis that decodes files of these entropy models: for an encoder tuned for a quantised
    student, that shipped student (or `student`; torch, bit-identical to its decoder package); else the
    teacher's g_s."""
    f = files_decoder_file(models, student)
    if f is None:
        return models.teacher.model.g_s
    from quantize.qat import load_quant_student  # why: brevitas, as in files_decoder_file

    decoder, _, _, fingerprint = load_quant_student(f)
    if fingerprint != models.teacher.base_fingerprint:
        raise LicError(f"{f} was distilled from teacher {fingerprint.hex()}, but {models.teacher.name} encodes "
                       f"for teacher {models.teacher.base_fingerprint.hex()}")
    return decoder


def refine_steps(steps: int) -> int:
    """A command line's --refine STEPS: 0 is off, a negative count is the user's error."""
    if steps < 0:
        raise LicError(f"--refine takes a number of steps >= 0, not {steps}")
    return steps


def refinement_for(models, steps: int, progress: bool = False, student: Path | None = None) -> Refinement | None:
    """The refinement `lic encode/demo --refine STEPS` asks for (for `student` in place of the shipped
    one, where given): None for 0 steps."""
    if not refine_steps(steps):
        return None
    return Refinement(files_decoder(models, student), models.teacher.lmbda, steps=steps, progress=progress,
                      for_decoder=decoder_name(models, student))


def decoder_name(models, student: Path | None = None) -> str:
    """What latents refined for these files' decoder are refined for: a cache refined for one
    student is stale once another ships."""
    f = files_decoder_file(models, student)
    if f is None:
        return f"{models.teacher.name} g_s"
    return f"{f.name} sha256 {hashlib.sha256(f.read_bytes()).hexdigest()[:16]}"
