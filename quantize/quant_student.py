"""Brevitas (QAT) version of the student synthesis transform, layer for layer the float one.

Integer contract with the accelerator (DESIGN.md, "feed the accelerator integers"):
  - input: y_hat, clipped to a signed `input_bits` range by a QuantIdentity whose scale is a
    constant 1.0, so the integers the fabric receives are exactly y_hat (no host-side scaling);
  - every ReLU is a QuantReLU (unsigned, learned per-tensor scale): FINN turns conv + ReLU quant into
    an MVAU followed by MultiThreshold;
  - output: a final signed QuantIdentity (`output_bits`), so the fabric emits integers and the host
    does the dequantising Mul and the clamp to [0, 1].

Every scale is a power of two (Brevitas' FixedPoint quantisers): weights narrow-range signed
`weight_bits` ints (per output channel by default), activations and output per tensor. That is what
makes the float emulation exact: a product of (int x 2^a) and (int x 2^b) and any sum of such
products is an integer multiple of 2^(a+b), representable in float32 while the integer accumulator
stays below 2^24 (here < 2^21), so conv results do not depend on summation order. Brevitas, qonnx,
onnxruntime and FINN's integer graph then agree bit for bit on any tile or frame shape. With float
scales they do not: a random W4A4 student of the default size drifted by 6 output LSB between
onnxruntime and Brevitas, and tiled decoding stopped matching whole-frame decoding.

Biases are int32 with scale input_scale * weight_scale (Brevitas Int32Bias, `int_bias=True`), i.e.
exactly what an integer accumulator adds. A float bias would be just as exact for FINN (it ends up
in the thresholds), but onnxruntime's level-1 `WeightBiasQuantization` rewrite quantises the float
bias of every DequantizeLinear -> Conv/ConvTranspose to that int32 grid anyway, so a float-bias QCDQ
export drifts from Brevitas (measured on a tiny random W4A4 deconv4 model: up to 15 output LSBs,
56% of pixels) unless that optimiser is disabled. With an int32 bias Brevitas, QONNX, FINN's
converted graph and onnxruntime agree bit for bit, and onnxruntime can fuse int8 QLinearConv kernels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from brevitas.core.scaling import ScalingImplType
from brevitas.nn import QuantConv2d, QuantConvTranspose2d, QuantIdentity, QuantReLU
from brevitas.quant import Int8ActPerTensorFloat, Int32Bias
from brevitas.quant.fixed_point import (Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint,
                                        Int8WeightPerChannelFixedPointMSE, Int8WeightPerTensorFixedPoint,
                                        Int8WeightPerTensorFixedPointMSE, Uint8ActPerTensorFixedPoint)

from training.student_decoder import StudentConfig, StudentSynthesis, layer_plan


# Weight quantisers (per channel, per tensor) by how the power-of-two scale is found:
#   "max": 2^ceil(log2(max|w| / int_max)), from the weights at every step; no range is clipped, but the
#          rounding up wastes up to half the levels (at 4 bits, a channel often uses [-4, 4] of [-7, 7]);
#   "mse": a learned log2 scale (still rounded up to a power of two), initialised on the first forward
#          by the MSE-optimal threshold, which clips the few largest weights. From the q3 float student,
#          calibrated W4 A4/4/4/8 without training: 17.0 dB with "max", 21.3 dB with "mse" (Kodak 24).
WEIGHT_QUANT = {"max": (Int8WeightPerChannelFixedPoint, Int8WeightPerTensorFixedPoint),
                "mse": (Int8WeightPerChannelFixedPointMSE, Int8WeightPerTensorFixedPointMSE)}


class IntegerInputQuant(Int8ActPerTensorFloat):
    """Signed int input with a constant scale of 1.0. Brevitas' scale is threshold / 2^(bits-1) for a
    signed, non-narrow int, and a CONST threshold is max(|min_val|, |max_val|): QuantStudentSynthesis
    sets both to 2^(bits-1) for the configured bit width."""
    scaling_impl_type = ScalingImplType.CONST
    min_val = -128.0
    max_val = 128.0


@dataclass
class QuantConfig:
    weight_bits: int | Sequence[int] = 4  # one per conv (len = number of convs), or one for all
    act_bits: int | Sequence[int] = 4  # one per QuantReLU (len = number of ReLUs), or one for all
    input_bits: int = 8
    output_bits: int = 8
    weight_per_channel: bool = True
    int_bias: bool = True  # see the module docstring
    weight_scale: str = "max"  # see WEIGHT_QUANT; "max" here so files from before the key load as trained
                               # (`lic qat` defaults to "mse")

    def __post_init__(self):
        if self.weight_scale not in WEIGHT_QUANT:
            raise ValueError(f"weight_scale must be one of {tuple(WEIGHT_QUANT)}, got {self.weight_scale!r}")

    def act_bits_list(self, n_relu: int) -> list[int]:
        return _per_layer(self.act_bits, n_relu, "act_bits", "ReLUs")

    def weight_bits_list(self, n_conv: int) -> list[int]:
        return _per_layer(self.weight_bits, n_conv, "weight_bits", "convs")

    def label(self) -> str:
        """e.g. "W4A4", "W4 A4/4/8/8" or "W8/4/4/4/8 A4/4/4/8"."""
        w, a = (b if isinstance(b, int) else "/".join(map(str, b)) for b in (self.weight_bits, self.act_bits))
        return f"W{w}A{a}" if isinstance(self.weight_bits, int) and isinstance(self.act_bits, int) else f"W{w} A{a}"

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("weight_bits", "act_bits"):
            if not isinstance(d[key], int):
                d[key] = list(d[key])
        return d


def _per_layer(bits: int | Sequence[int], n: int, name: str, what: str) -> list[int]:
    if isinstance(bits, int):
        return [bits] * n
    out = [int(b) for b in bits]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries, the model has {n} {what}")
    return out


def n_relu(cfg: StudentConfig) -> int:
    """How many QuantReLUs (and so act_bits entries) the model has: one per conv but the last."""
    return sum(s.relu for s in layer_plan(cfg))


def n_conv(cfg: StudentConfig) -> int:
    """How many convs (and so weight_bits entries) the model has."""
    return len(layer_plan(cfg))


class QuantStudentSynthesis(nn.Module):
    """Quantised student g_s. `forward` returns the dequantised float output (pre-clamp);
    `forward_quant` returns the output QuantTensor (.int() gives what the fabric emits)."""

    def __init__(self, cfg: StudentConfig, qcfg: QuantConfig | None = None):
        super().__init__()
        qcfg = qcfg or QuantConfig()
        self.cfg, self.qcfg = cfg, qcfg
        plan = layer_plan(cfg)
        act_bits = qcfg.act_bits_list(n_relu(cfg))
        weight_bits = qcfg.weight_bits_list(len(plan))
        bq = Int32Bias if qcfg.int_bias else None
        wq = WEIGHT_QUANT[qcfg.weight_scale][not qcfg.weight_per_channel]

        self.input_quant = QuantIdentity(act_quant=IntegerInputQuant, bit_width=qcfg.input_bits,
                                         min_val=-float(2 ** (qcfg.input_bits - 1)),
                                         max_val=float(2 ** (qcfg.input_bits - 1)),
                                         return_quant_tensor=True)
        layers: list[nn.Module] = []
        relu_i = 0
        for spec, w_bits in zip(plan, weight_bits):
            common = dict(weight_quant=wq, weight_bit_width=w_bits, bias_quant=bq, return_quant_tensor=False)
            if spec.upsample_before:
                # A plain nn.Upsample passes the QuantTensor through (Brevitas' interpolate handler
                # keeps scale and bit width for 'nearest') and exports as ONNX Resize, which is what
                # FINN's InferUpsample looks for; QuantUpsample adds nothing here.
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            if spec.kind == "deconv":
                layers.append(QuantConvTranspose2d(spec.in_ch, spec.out_ch, spec.kernel, stride=spec.stride,
                                                   padding=spec.padding, output_padding=spec.output_padding,
                                                   **common))
            else:
                layers.append(QuantConv2d(spec.in_ch, spec.out_ch, spec.kernel, padding=spec.padding, **common))
            if spec.relu:
                layers.append(QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=act_bits[relu_i],
                                        return_quant_tensor=True))
                relu_i += 1
        self.layers = nn.Sequential(*layers)
        self.output_quant = QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=qcfg.output_bits,
                                          return_quant_tensor=True)

    def forward_quant(self, y_hat: torch.Tensor):
        return self.output_quant(self.layers(self.input_quant(y_hat)))

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        out = self.forward_quant(y_hat)
        # In export mode Brevitas layers return plain tensors.
        return getattr(out, "value", out)

    def output_scale(self) -> float:
        """Scale of the output integers (a per-tensor constant once calibrated / in eval)."""
        s = self.output_quant.act_quant.scale()
        return float(s.detach().reshape(-1)[0])


def convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def load_float_weights(quant_model: QuantStudentSynthesis, float_student: StudentSynthesis) -> QuantStudentSynthesis:
    """Copy a float student's conv weights and biases into the quantised model (QAT start point).
    Both are built from `layer_plan`, so convs pair up in order; shapes are checked anyway."""
    q, f = convs(quant_model), convs(float_student)
    if len(q) != len(f):
        raise ValueError(f"layer count mismatch: quant model has {len(q)} convs, float student {len(f)}")
    with torch.no_grad():
        for i, (qm, fm) in enumerate(zip(q, f)):
            if isinstance(qm, nn.ConvTranspose2d) != isinstance(fm, nn.ConvTranspose2d):
                raise ValueError(f"conv {i}: {type(qm).__name__} vs {type(fm).__name__}")
            geometry = ("stride", "padding", "output_padding", "groups")
            if qm.weight.shape != fm.weight.shape or any(getattr(qm, a) != getattr(fm, a) for a in geometry):
                raise ValueError(f"conv {i}: {qm} vs {fm}")
            qm.weight.copy_(fm.weight)
            if fm.bias is not None:
                qm.bias.copy_(fm.bias)
    return quant_model


def calibrate_activations(quant_model: nn.Module, batches: Iterable[torch.Tensor],
                          keep: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Set activation scales from data (Brevitas calibration_mode) before QAT or export. Without it an
    eval-mode model uses the initial scales (threshold 1.0), and QAT spends its first 300 steps
    on running batch statistics before the scales become learned parameters.

    `keep`: scales (state-dict entries) to hold as they are, e.g. the trained ones `with_act_bits`
    carries over; calibration runs over the whole model, so they are written back afterwards."""
    # why: brevitas.graph warns on import (no fast_hadamard_transform); only calibration needs it, so the
    # quantised student loads without that line (`lic decode --backend torch`)
    from brevitas.graph.calibrate import calibration_mode

    was_training = quant_model.training
    quant_model.eval()
    with torch.no_grad(), calibration_mode(quant_model):
        for x in batches:
            quant_model(x)
    if keep:
        _set_scales(quant_model, keep)
    quant_model.train(was_training)
    return quant_model


def _set_scales(quant_model: nn.Module, scales: dict[str, torch.Tensor]) -> None:
    # Not load_state_dict: Brevitas re-initialises every quantiser of the model on a load
    # (config.REINIT_ON_STATE_DICT_LOAD), which would throw away the calibration just done.
    params = dict(quant_model.named_parameters())
    with torch.no_grad():
        for key, value in scales.items():
            params[key].copy_(value)
            scaling = quant_model.get_submodule(key.rsplit(".", 1)[0])
            scaling.counter = scaling.collect_stats_steps + 1  # a learned value from now on, as after a load


def with_quantisers(model: QuantStudentSynthesis, qcfg: QuantConfig
                    ) -> tuple[QuantStudentSynthesis, dict[str, torch.Tensor]]:
    """The same trained student with other quantisers (`qcfg`: bit widths, weight scales), to go on
    with QAT from it rather than from the float student (fresh QAT needs thousands of steps to catch
    up). Returns the new model, holding every weight and every unchanged activation scale of `model`,
    and those carried scales: the caller calibrates with them held (`calibrate_activations(...,
    keep=carried)`), so only the changed ReLUs get new scales. Weight scales need nothing: "max" ones
    are computed from the weights, "mse" ones initialise themselves on the first forward."""
    new = QuantStudentSynthesis(model.cfg, qcfg)
    old_bits = model.qcfg.act_bits_list(n_relu(model.cfg))
    new_bits = qcfg.act_bits_list(n_relu(model.cfg))
    relus = [name for name, m in model.named_modules() if isinstance(m, QuantReLU)]
    changed = tuple(f"{name}." for name, a, b in zip(relus, old_bits, new_bits) if a != b)
    same_weight_scale = model.qcfg.weight_scale == qcfg.weight_scale
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(changed) and (same_weight_scale or ".weight_quant." not in k)}
    new.load_state_dict(state, strict=False)
    carried = {k: v for k, v in state.items() if ".act_quant." in k}
    return new, carried


def build_quant_student(cfg: StudentConfig, qcfg: QuantConfig | None = None,
                        float_student: StudentSynthesis | None = None) -> QuantStudentSynthesis:
    qm = QuantStudentSynthesis(cfg, qcfg)
    if float_student is not None:
        load_float_weights(qm, float_student)
    return qm
