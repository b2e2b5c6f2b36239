"""Fold a trained QuantHyperSynthesis into the integer form host/integer_hyper.py executes.

For each conv with input scale s_in, per-channel weight scale s_w[c] and Int32Bias b[c] (in units
of g[c] = s_in * s_w[c]), the pre-activation is (acc + b[c]) * g[c]. Then:

  QuantReLU (scale s_a, B bits) outputs round((acc + b) g / s_a) clipped to [0, 2^B - 1], i.e.
      #{ j in 1..2^B-1 : acc >= ceil((j - 1/2) s_a / g[c]) - b[c] }
  the last layer predicts log(scale); CompressAI's index is #{ k : scale > table[k] } over all but
      the last table entry, i.e. #{ k : acc >= floor(log(table[k]) / g[c]) + 1 - b[c] }

Thresholds are computed in float64 once, here; from then on the integer form is the definition.
(Brevitas' float32 fake-quant model may differ from it where a value lands within float error of a
rounding boundary; both encoder and decoder run the integer form, so that never breaks decoding.)
"""

from __future__ import annotations

import numpy as np
import torch

from host.integer_hyper import IntegerHyperSynthesis, IntegerLayer
from quantize.quant_hyper import QuantHyperSynthesis


def _weight(conv) -> tuple[np.ndarray, np.ndarray]:
    qw = conv.quant_weight()
    w_int = qw.int().detach().cpu().numpy().astype(np.int8)
    s_w = qw.scale.detach().cpu().double().reshape(-1).numpy()
    return w_int, np.broadcast_to(s_w, (w_int.shape[0],)).copy()


def _bias_int(conv, g: np.ndarray) -> np.ndarray:
    # Brevitas Int32Bias: round(bias / (s_in * s_w)) in float32, as its forward pass computes it.
    g32 = torch.from_numpy(g.astype(np.float32))
    return torch.round(conv.bias.detach().cpu().float() / g32).double().numpy()


@torch.no_grad()
def to_integer(model: QuantHyperSynthesis, scale_table: torch.Tensor) -> IntegerHyperSynthesis:
    model = model.eval().cpu()
    s_in = float(model.input_quant.act_quant.scale().reshape(-1)[0])
    layers = []
    for n, conv in enumerate(model.convs):
        w_int, s_w = _weight(conv)
        g = s_in * s_w
        b = _bias_int(conv, g)
        if n < len(model.relus):
            relu = model.relus[n]
            s_a = float(relu.act_quant.scale().reshape(-1)[0])
            levels = 2 ** model.cfg.act_bits - 1
            j = np.arange(1, levels + 1, dtype=np.float64) - 0.5
            t = np.ceil(j[None, :] * s_a / g[:, None]) - b[:, None]
            s_in = s_a
        else:
            log_t = np.log(scale_table.detach().cpu().double().numpy()[:-1])
            t = np.floor(log_t[None, :] / g[:, None]) + 1 - b[:, None]
        layers.append(IntegerLayer(weight=w_int, thresholds=t.astype(np.int64), upsample_before=n in (1, 2)))
    meta = {"config": model.cfg.to_dict(), "scale_table": [float(v) for v in scale_table]}
    return IntegerHyperSynthesis(layers, input_bits=model.cfg.input_bits, meta=meta)
