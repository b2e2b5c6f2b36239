"""Every workaround for finn-plus 1.6.1 in one place, each with its upstream reason.

  prepare_finn_import        FINN's Vivado-free steps, importable and runnable without Vivado
  fold_upsample_layers       SetFolding has no rule for UpsampleNearestNeighbour
  RoundHalfToEvenThresholds  ConvertQONNXtoFINN rounds ties up, QONNX/Brevitas/ONNX to even
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from qonnx.transformation.base import Transformation

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FINN_BUILD_DIR = REPO / "build" / "finn"


def vivado_available() -> bool:
    root = os.environ.get("XILINX_VIVADO")
    return bool(root) and Path(root, "bin", "vivado").exists()


def prepare_finn_import(build_dir: Path | None = None) -> None:
    """Call before importing finn.builder.* or finn.transformation.fpgadataflow.*."""
    # FINN writes generated code and temporary models under FINN_BUILD_DIR and refuses to run
    # without it (finn.util.basic.make_build_dir).
    build_dir = Path(build_dir or os.environ.get("FINN_BUILD_DIR") or DEFAULT_FINN_BUILD_DIR).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    if not vivado_available():
        # finn.builder.build_dataflow_steps does `from finn.xsi import SimEngine` at import time;
        # finn.xsi resolves that lazy name by checking XILINX_VIVADO and raises OSError without it
        # (finn/xsi/__init__.py, __getattr__ -> ensure_available). Only rtlsim uses SimEngine, and
        # rtlsim needs Vivado anyway, so binding the lazy names to None is safe here.
        import finn.xsi as xsi

        for name in getattr(xsi, "_LAZY_NAMES", ()):
            if name not in vars(xsi):
                setattr(xsi, name, None)


def fold_upsample_layers(model, target_cycles: int):
    """Give each UpsampleNearestNeighbour the smallest SIMD (a divisor of its channels) that meets
    `target_cycles`.

    Why: finn-plus 1.6.1's SetFolding has no rule for UpsampleNearestNeighbour ("SetFolding doesn't
    know how to handle op_type UpsampleNearestNeighbour_hls") and leaves SIMD at 1, i.e. one channel
    per cycle: at the last x2 stage of a 32-latent tile that alone is 512 x 512 x channels cycles per
    tile. Its HLS template (upsample_nn<..., CF, CF>) and get_exp_cycles do support SIMD."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if node.op_type.startswith("UpsampleNearestNeighbour"):
            inst = getCustomOp(node)
            channels = inst.get_nodeattr("NumChannels")
            for simd in [d for d in range(1, channels + 1) if channels % d == 0]:
                inst.set_nodeattr("SIMD", simd)
                if inst.get_exp_cycles() <= target_cycles:
                    break
    return model


def exact_thresholds(quant_model) -> list[dict]:
    """Per conv of a QuantStudentSynthesis, the integer thresholds its output quantiser implies:
    q = clip(round_half_even((acc + b) * u / s_out)), acc = sum(w_int * a_int), u = s_in * s_w[c],
    with every scale a power of two, as exact integers on acc (bias already taken out)."""
    from fractions import Fraction

    import torch
    from brevitas.nn import QuantReLU

    mods = [m for m in quant_model.layers if hasattr(m, "quant_weight") or isinstance(m, QuantReLU)]
    s_in = float(quant_model.input_quant.act_quant.scale())
    out = []
    for i, conv in enumerate(m for m in mods if hasattr(m, "quant_weight")):
        k = mods.index(conv)
        act = mods[k + 1] if k + 1 < len(mods) and isinstance(mods[k + 1], QuantReLU) else quant_model.output_quant
        with torch.no_grad():
            w = conv.quant_weight()
            s_w = w.scale.reshape(-1).double().numpy()
            w_int = w.int().reshape(w.int().shape[0], -1).numpy()
            u = s_in * s_w
            b_int = torch.round(conv.bias.double() / torch.from_numpy(u)).numpy().astype(np.int64)
            s_out = float(act.act_quant.scale())
            bits = int(act.act_quant.bit_width())
        signed, narrow = bool(act.act_quant.is_signed), bool(act.act_quant.is_narrow_range)
        lo = -(2 ** (bits - 1)) + int(narrow) if signed else 0
        hi = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
        rows = []
        for c in range(len(u)):
            r = Fraction(s_out) / Fraction(float(u[c]))
            row = []
            for v in range(lo, hi):
                t = (v + Fraction(1, 2)) * r
                # a tie goes to the even neighbour: up when v + 1 is even, else only above the tie
                row.append((math.ceil(t) if (v + 1) % 2 == 0 else math.floor(t) + 1) - int(b_int[c]))
            rows.append(row)
        out.append({"w_int": w_int, "thresholds": np.array(rows, dtype=np.float64), "act_val": lo})
        s_in = s_out
    return out


class RoundHalfToEvenThresholds(Transformation):
    """Replace the thresholds of the student's MVAUs with the exact half-to-even ones.

    Why: finn-plus 1.6.1's ConvertQONNXtoFINN turns a Quant with rounding_mode ROUND into thresholds
    (k + 0.5) * scale compared with >=, i.e. it rounds ties up; QONNX's Quant ROUND, Brevitas, and
    ONNX QuantizeLinear round ties to even. With float scales exact ties never happen; with the
    power-of-two scales that make the student exact in every runtime (quantize/quant_student.py)
    they do, and one flipped activation spreads through the next layers (measured: 15,121 of
    49,152 outputs differed on a tiny student). The weights FINN ended up with are checked to be
    Brevitas' integers, so the thresholds apply to the same accumulator."""

    def __init__(self, quant_model):
        super().__init__()
        self.layers = exact_thresholds(quant_model)

    def apply(self, model):
        from lic.errors import LicError
        from qonnx.custom_op.registry import getCustomOp

        mvaus = [n for n in model.graph.node if n.op_type.startswith("MVAU")]
        if len(mvaus) != len(self.layers):
            raise LicError(f"HW graph has {len(mvaus)} MVAUs, the student {len(self.layers)} convs")
        for node, layer in zip(mvaus, self.layers):
            weights, old = model.get_initializer(node.input[1]), model.get_initializer(node.input[2])
            ours = np.sort(np.abs(layer["w_int"]).sum(1))
            if not np.array_equal(np.sort(np.abs(weights).sum(0)), ours):
                raise LicError(f"{node.name}: FINN's weights are not the student's integers")
            new = layer["thresholds"]
            if old.shape != new.shape or getCustomOp(node).get_nodeattr("ActVal") != layer["act_val"] \
                    or np.abs(np.ceil(old) - new).max() > 1:
                raise LicError(f"{node.name}: FINN's thresholds are not those of the student's quantiser")
            model.set_initializer(node.input[2], new.astype(np.float32))
        return model, False
