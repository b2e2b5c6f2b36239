"""Brevitas model of the student hyper-synthesis h_s, the network that turns the hyper-latent into
scale-table indexes for the GaussianConditional.

Entropy decoding breaks if encoder and decoder disagree on a single index (CompressAI issue #279;
Ballé et al., "Integer networks for data compression with latent-variable models", ICLR 2019), so
h_s is trained here with fake quantisation and then *run* only as integer arithmetic
(quantize/integer_hyper.py derives it, host/integer_hyper.py executes it):

  input   z symbols q = round(z - median), the integers the EntropyBottleneck codes (int8, scale 1)
  layers  conv3x3 -> ReLU, then twice (nearest x2 upsample, conv3x3, ReLU), then conv1x1 to M
  weights int8, per output channel; biases int32 in accumulator units (Brevitas Int32Bias)
  ReLUs   uint8, per-tensor scale: in integer form, "count the thresholds the accumulator passes"
  output  log(scale), compared against log(scale_table) boundaries: the count is the index

Predicting log-scale keeps a 0.11..256 range well conditioned for a linear last layer; the
thresholds do not care, since log is monotonic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from brevitas.core.restrict_val import RestrictValueType
from brevitas.nn import QuantConv2d, QuantIdentity, QuantReLU
from brevitas.quant import Int32Bias, Int8WeightPerChannelFloat, Uint8ActPerTensorFloat

from quantize.quant_student import IntegerInputQuant


class Uint8ActLogScale(Uint8ActPerTensorFloat):
    """Activation scale learned as its logarithm. On integer z symbols the calibrated scales are
    ~1e-3, and one plain Adam step at lr 1e-3 can drive such a scale negative (NaN from then on);
    in the log domain it stays positive whatever the step."""
    restrict_scaling_type = RestrictValueType.LOG_FP


@dataclass
class HyperConfig:
    in_channels: int = 128      # N of the teacher: channels of z
    out_channels: int = 192     # M of the teacher: channels of y
    channels: int = 32          # hidden width; sets the ARM cost (see macs_per_latent_pixel)
    weight_bits: int = 8
    act_bits: int = 8
    input_bits: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class QuantHyperSynthesis(nn.Module):
    """z symbols (N x h x w, integers) -> log scales (M x 4h x 4w), with QAT fake quantisation."""

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        lim = float(2 ** (cfg.input_bits - 1))
        self.input_quant = QuantIdentity(act_quant=IntegerInputQuant, bit_width=cfg.input_bits,
                                         min_val=-lim, max_val=lim, return_quant_tensor=True)
        conv = dict(weight_quant=Int8WeightPerChannelFloat, weight_bit_width=cfg.weight_bits,
                    bias_quant=Int32Bias, return_quant_tensor=False)

        def relu():
            return QuantReLU(act_quant=Uint8ActLogScale, bit_width=cfg.act_bits, return_quant_tensor=True)

        self.convs = nn.ModuleList([
            QuantConv2d(cfg.in_channels, c, 3, padding=1, **conv),
            QuantConv2d(c, c, 3, padding=1, **conv),
            QuantConv2d(c, c, 3, padding=1, **conv),
            QuantConv2d(c, cfg.out_channels, 1, **conv),
        ])
        self.relus = nn.ModuleList([relu(), relu(), relu()])
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, z_symbols: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(z_symbols)
        x = self.relus[0](self.convs[0](x))
        x = self.relus[1](self.convs[1](self.upsample(x)))
        x = self.relus[2](self.convs[2](self.upsample(x)))
        return self.convs[3](x)

    def scales(self, z_symbols: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.forward(z_symbols))


def macs_per_latent_pixel(cfg: HyperConfig) -> int:
    """MACs per element of z's spatial grid (one z pixel = 4x4 y pixels = 64x64 image pixels)."""
    c = cfg.channels
    return cfg.in_channels * c * 9 + 4 * c * c * 9 + 16 * c * c * 9 + 16 * c * cfg.out_channels


def init_log_scale_bias(model: QuantHyperSynthesis, typical_scale: float = 1.0) -> None:
    """Start the output near a plausible scale rather than exp(0) = 1 for every element."""
    with torch.no_grad():
        model.convs[3].bias.fill_(math.log(typical_scale))
