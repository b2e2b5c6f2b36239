"""The student synthesis transform: a small, FINN-compilable stand-in for the teacher's g_s.

The teacher's g_s is four stride-2 k5 deconvolutions with inverse GDN between them. FINN has no
GDN, and its ConvTranspose lowering (InferPixelPaddingDeconv) ignores `output_padding`, so the
student uses ReLU only and one of three x2 upsampling operators (see DESIGN.md):

  "nearest"  nearest-neighbour x2 then a 3x3 conv: lowers to FINN's UpsampleNearestNeighbour +
             sliding window, no zero-stuffing; the preferred variant.
  "deconv4"  ConvTranspose k4 s2 p1: exact x2 without output_padding; FINN's InferPixelPaddingDeconv
             could lower it (spending ~3/4 of its MACs on inserted zeros), but `lic hw` does not
             run it: a float/quality reference, like deconv5.
  "deconv5"  ConvTranspose k5 s2 p2 op1, the teacher's operator: kept as a float/quality
             reference; FINN gets its shape wrong.

Layout (channels[i] = feature width inside stage i, `stages` entries):

  y_hat (M ch, H x W)
    -> head conv (head_kernel x head_kernel) M -> channels[0], ReLU      [skipped if head_kernel=0]
    -> latent_convs more 3x3 convs channels[0] -> channels[0], ReLU, still at the latents'
       resolution, where a conv costs 1/256 of its MACs per output pixel   [needs the head]
    -> stage i = 0..stages-1, each x2:
         up-conv  channels[i] -> (channels[i] if more convs follow else next width)
         (convs_per_stage[i] - 1) more 3x3 convs, ReLU after each conv
       where next width = channels[i+1], or 3 for the last stage, whose final conv has no ReLU.
  -> image (3 ch, 2^stages H x 2^stages W), not clamped: the caller clamps to [0, 1].

MAC counting (`count_macs`) is shared with the teacher so the two are compared with one rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
from torch import nn

UPSAMPLE_MODES = ("nearest", "deconv4", "deconv5")
ACTIVATIONS = ("relu",)

# Teacher-like deconv geometry per upsample mode: (kernel, padding, output_padding).
DECONV_GEOMETRY = {"deconv4": (4, 1, 0), "deconv5": (5, 2, 1)}


@dataclass
class StudentConfig:
    latent_channels: int = 192
    channels: int | Sequence[int] = 64
    convs_per_stage: int | Sequence[int] = 1  # one for all stages, or one per stage
    upsample: str = "nearest"
    activation: str = "relu"
    stages: int = 4
    head_kernel: int = 3  # 0: no head, the first up-conv reads y_hat directly
    out_channels: int = 3
    latent_convs: int = 0  # 3x3 convs after the head, at the latents' resolution

    def __post_init__(self):
        if isinstance(self.channels, int):
            self.channels = (self.channels,) * self.stages
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != self.stages:
            raise ValueError(f"channels has {len(self.channels)} entries, expected one per stage ({self.stages})")
        if isinstance(self.convs_per_stage, int):
            self.convs_per_stage = (self.convs_per_stage,) * self.stages
        self.convs_per_stage = tuple(int(c) for c in self.convs_per_stage)
        if len(self.convs_per_stage) != self.stages:
            raise ValueError(f"convs_per_stage has {len(self.convs_per_stage)} entries, expected one per stage "
                             f"({self.stages})")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {self.upsample!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if min(self.convs_per_stage) < 1:
            raise ValueError("convs_per_stage must be >= 1")
        if self.head_kernel not in (0, 1, 3):
            raise ValueError("head_kernel must be 0, 1 or 3")
        if self.latent_convs < 0 or (self.latent_convs and not self.head_kernel):
            raise ValueError("latent_convs must be >= 0, and 0 without a head")

    @property
    def scale(self) -> int:
        return 2 ** self.stages

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["convs_per_stage"] = list(self.convs_per_stage)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        return cls(**d)


@dataclass
class ConvSpec:
    """One conv of the plan; the float and the Brevitas builders both read this list, so the two
    models have the same layer order and their state dicts line up."""
    kind: str        # "conv" or "deconv"
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    upsample_before: bool = False  # nearest x2 in front of this conv
    relu: bool = True
    name: str = field(default="")


def layer_plan(cfg: StudentConfig) -> list[ConvSpec]:
    plan: list[ConvSpec] = []
    width = cfg.latent_channels
    if cfg.head_kernel:
        plan.append(ConvSpec("conv", width, cfg.channels[0], cfg.head_kernel,
                             padding=cfg.head_kernel // 2, name="head"))
        width = cfg.channels[0]
        for j in range(cfg.latent_convs):
            plan.append(ConvSpec("conv", width, width, 3, padding=1, name=f"latent{j}"))
    for i in range(cfg.stages):
        last_stage = i == cfg.stages - 1
        nxt = cfg.out_channels if last_stage else cfg.channels[i + 1]
        for j in range(cfg.convs_per_stage[i]):
            last_conv = j == cfg.convs_per_stage[i] - 1
            out = nxt if last_conv else cfg.channels[i]
            relu = not (last_stage and last_conv)
            name = f"s{i}c{j}"
            if j == 0 and cfg.upsample != "nearest":
                k, p, op = DECONV_GEOMETRY[cfg.upsample]
                plan.append(ConvSpec("deconv", width, out, k, stride=2, padding=p, output_padding=op,
                                     relu=relu, name=name))
            else:
                plan.append(ConvSpec("conv", width, out, 3, padding=1, upsample_before=(j == 0),
                                     relu=relu, name=name))
            width = out
    return plan


class StudentSynthesis(nn.Module):
    """Float student g_s: y_hat (N, M, H, W) -> image (N, 3, 16H, 16W) for 4 stages, pre-clamp."""

    def __init__(self, cfg: StudentConfig | None = None, **kwargs):
        super().__init__()
        if cfg is None:
            cfg = StudentConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a StudentConfig or keyword arguments, not both")
        self.cfg = cfg
        layers: list[nn.Module] = []
        for spec in layer_plan(cfg):
            if spec.upsample_before:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            if spec.kind == "deconv":
                layers.append(nn.ConvTranspose2d(spec.in_ch, spec.out_ch, spec.kernel, stride=spec.stride,
                                                 padding=spec.padding, output_padding=spec.output_padding))
            else:
                layers.append(nn.Conv2d(spec.in_ch, spec.out_ch, spec.kernel, padding=spec.padding))
            if spec.relu:
                layers.append(nn.ReLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.layers(y_hat)


def grow_latent_convs(student: StudentSynthesis, latent_convs: int) -> StudentSynthesis:
    """The same function with more 3x3 convs at the latents' resolution: each new conv is the
    identity (centre tap 1 from a channel to itself, bias 0) and reads a ReLU's output, so its ReLU
    passes it unchanged; every other layer keeps its weights. Training then starts from what the
    smaller student already decodes."""
    cfg = student.cfg
    if latent_convs < cfg.latent_convs:
        raise ValueError(f"cannot grow {cfg.latent_convs} latent convs to {latent_convs}")
    grown = StudentSynthesis(StudentConfig(**{**cfg.to_dict(), "latent_convs": latent_convs}))
    old = {spec.name: conv for spec, conv in zip(layer_plan(cfg), conv_layers(student))}
    with torch.no_grad():
        for spec, conv in zip(layer_plan(grown.cfg), conv_layers(grown)):
            if spec.name in old:
                conv.load_state_dict(old[spec.name].state_dict())
            else:
                conv.weight.zero_()
                conv.bias.zero_()
                idx = torch.arange(spec.out_ch)
                conv.weight[idx, idx, spec.kernel // 2, spec.kernel // 2] = 1.0
    return grown


def conv_layers(student: StudentSynthesis) -> list[nn.Module]:
    """The student's convs in layer_plan's order (one per ConvSpec)."""
    return [m for m in student.layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


# ---------------------------------------------------------------------------------------------
# MAC counting


def receptive_halo(cfg: StudentConfig) -> int:
    """Latents of context each output latent cell needs on every side: the sum over layers of the
    kernel reach, in latent units at that layer's resolution, rounded up. Tiles decoded with this
    halo stitch to exactly the whole-frame output (host/tiling.py)."""
    reach, scale = 0.0, 1
    for spec in layer_plan(cfg):
        if spec.upsample_before:
            scale *= 2
        if spec.kind == "deconv":
            # output o reads inputs i with 2i - p <= o <= 2i - p + k - 1: up to (max(p, k-1-p) + 1) / 2
            # input pixels from o / 2
            reach += (max(spec.padding, spec.kernel - 1 - spec.padding) + 1) / 2 / scale
            scale *= spec.stride
        else:
            reach += (spec.kernel // 2) / scale
    return math.ceil(reach)


def _value(t):
    # Brevitas layers may see QuantTensors; their .value is the float tensor.
    return getattr(t, "value", t)


def _is_gdn(m: nn.Module) -> bool:
    # By name, so this module does not import compressai; GDN1 subclasses GDN.
    return any(c.__name__ == "GDN" and c.__module__.startswith("compressai") for c in type(m).__mro__)


def _first_in_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return m.in_channels
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ValueError("cannot infer the input channels: no Conv2d/ConvTranspose2d/Linear in module")


def count_macs(module: nn.Module, input_hw: tuple[int, int], in_channels: int | None = None,
               return_output_shape: bool = False):
    """Multiply-accumulates for one image of input size `input_hw`, counted with forward hooks.

    Conv2d:          out_ch * in_ch/groups * kh*kw * H_out*W_out
    ConvTranspose2d: in_ch * out_ch/groups * kh*kw * H_in*W_in   (what a direct scatter
                     implementation does; a zero-stuffing one, like FINN's, does ~4x more at s2)
    Linear:          in * out per output row
    GDN/IGDN:        C*C per pixel (its 1x1 conv over squared channels; sqrt and divide not counted)
    Upsample, ReLU, biases: 0.
    """
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        o = _value(out)
        total += m.out_channels * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] \
            * o.shape[-2] * o.shape[-1]

    def deconv_hook(m, inp, out):
        nonlocal total
        x = _value(inp[0])
        total += m.in_channels * (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] \
            * x.shape[-2] * x.shape[-1]

    def linear_hook(m, inp, out):
        nonlocal total
        o = _value(out)
        total += m.in_features * m.out_features * (o.numel() // o.shape[0] // m.out_features)

    def gdn_hook(m, inp, out):
        nonlocal total
        x = _value(inp[0])
        total += x.shape[1] * x.shape[1] * x.shape[-2] * x.shape[-1]

    handles = []
    for m in module.modules():
        # ConvTranspose2d is not a Conv2d subclass, but test it first in case a wrapper is both.
        if isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif _is_gdn(m):
            handles.append(m.register_forward_hook(gdn_hook))
    c = in_channels if in_channels is not None else _first_in_channels(module)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = _value(module(torch.zeros(1, c, *input_hw)))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    if return_output_shape:
        return total, tuple(out.shape)
    return total


def macs_per_output_pixel(module: nn.Module, input_hw: tuple[int, int] = (4, 4),
                          in_channels: int | None = None) -> float:
    total, shape = count_macs(module, input_hw, in_channels, return_output_shape=True)
    return total / (shape[-2] * shape[-1])


def kmac_per_pixel(module: nn.Module, input_hw: tuple[int, int] = (4, 4),
                   in_channels: int | None = None) -> float:
    """kMAC per output pixel (the usual figure of merit for learned-codec decoders)."""
    return macs_per_output_pixel(module, input_hw, in_channels) / 1000.0


def count_parameters(module: nn.Module) -> int:
    """Conv/GDN weights and biases: what a decoder stores, not a quantiser's learned scales."""
    return sum(p.numel() for n, p in module.named_parameters() if n.endswith(("weight", "bias")))


def teacher_synthesis(N: int = 128, M: int = 192) -> nn.Module:
    """A randomly initialised ScaleHyperprior g_s of the given size (for counting, not decoding)."""
    # why: compressai (~5 s) only to count the teacher's g_s; `lic decode --backend torch` imports this module
    from lic.compressai_compat import compressai  # noqa: F401  (must precede compressai imports)
    from compressai.models import ScaleHyperprior

    return ScaleHyperprior(N, M).g_s


def teacher_gs_kmac_per_pixel(N: int = 128, M: int = 192) -> float:
    return kmac_per_pixel(teacher_synthesis(N, M), (4, 4))
