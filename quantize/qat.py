"""`lic qat`: quantisation-aware training of a distilled student (Brevitas), from `lic distill --export`.

The float student's weights seed the Brevitas model (quantize/quant_student.py), its activation
scales are calibrated on the teacher's y_hat, then training continues under the same distillation
loss as `lic distill` (training/distill.py). The export is what export/ turns into QONNX for FINN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lic.errors import LicError
from quantize.quant_student import (QuantConfig, QuantStudentSynthesis, build_quant_student, calibrate_activations,
                                    WEIGHT_QUANT, n_conv, n_relu, with_quantisers)
from training.distill import (add_training_arguments, load_float_student, load_state, parse_int_list,
                              read_student_export, resolve_teacher, student_config, train_kd)
from training.loop import init_provenance
from training.student_decoder import StudentConfig

QUANT_KIND = "quant-student"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", type=Path, required=True, help="the float student, from `lic distill --export`")
    add_training_arguments(p, steps=5_000, lr=1e-4, lr_final=1e-6,
                           teacher_help="the student's teacher, if it is not a shipped one (found by its "
                                        "fingerprint otherwise): zoo:bmshj2018-hyperprior:Q or a checkpoint path")
    p.add_argument("--weight-bits", default=None,
                   help="weight bit width: one int, or one per conv comma-separated, e.g. 8,4,4,4,8 for 8-bit "
                        "first and last convs (default 4; with --init, the init's)")
    p.add_argument("--act-bits", default=None,
                   help="ReLU output bit width: one int, or one per ReLU comma-separated (default 4; with "
                        "--init, the init's, and a ReLU given other bits is re-calibrated)")
    p.add_argument("--input-bits", type=int, default=8,
                   help="signed bit width of the y_hat integers the accelerator reads; larger values are "
                        "clipped (default 8)")
    p.add_argument("--output-bits", type=int, default=8, help="signed bit width of the output pixels (default 8)")
    p.add_argument("--weight-scale", choices=tuple(WEIGHT_QUANT), default=None,
                   help="how each power-of-two weight scale is set: mse (learned, initialised MSE-optimal) or max "
                        "(from the largest weight, every step; students before Nov 2026) (default mse; with "
                        "--init, the init's)")
    p.add_argument("--weight-per-tensor", action="store_true",
                   help="one weight scale per layer instead of per output channel")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this quantised student (`lic qat --export`) instead of calibrating --student's "
                        "weights: its architecture and quantisers replace the flags above, e.g. to fine-tune a "
                        "quantised student further or for the teacher of another rate point; --act-bits, "
                        "--weight-bits and --weight-scale still apply")
    p.add_argument("--calib-batches", type=int, default=8,
                   help="batches of teacher y_hat that set the activation scales before training (default 8)")


def _warn(msg: str) -> None:
    print(f"lic: warning: {msg}", file=sys.stderr)


# The package's onnxruntime graph is QCDQ, whose QuantizeLinear holds int8 at most (Brevitas' export
# refuses wider), so a wider student could be trained but never exported.
MAX_BITS = 8


def _check_range(bits: list[int]) -> None:
    if min(bits) < 2 or max(bits) > MAX_BITS:
        raise LicError(f"bit widths must be 2..{MAX_BITS} (the ONNX export holds int8 at most)")


def check_bit_widths(qcfg: QuantConfig, cfg: StudentConfig) -> None:
    """LicError unless every quantiser of the student is 2..MAX_BITS wide."""
    _check_range([qcfg.input_bits, qcfg.output_bits, *qcfg.weight_bits_list(n_conv(cfg)),
                  *qcfg.act_bits_list(n_relu(cfg))])


def quant_config(args, cfg: StudentConfig, base: QuantConfig | None = None) -> QuantConfig:
    """The flags' QuantConfig, or with `base` (an --init's), base with the bit widths and weight scale
    the flags give."""
    if base is None:
        qcfg = QuantConfig(weight_bits=parse_int_list(args.weight_bits or "4", "--weight-bits"),
                           act_bits=parse_int_list(args.act_bits or "4", "--act-bits"),
                           input_bits=args.input_bits, output_bits=args.output_bits,
                           weight_per_channel=not args.weight_per_tensor, weight_scale=args.weight_scale or "mse")
    else:
        changes = {k: parse_int_list(text, f"--{k.replace('_', '-')}")
                   for k, text in (("act_bits", args.act_bits), ("weight_bits", args.weight_bits)) if text}
        if args.weight_scale:
            changes["weight_scale"] = args.weight_scale
        qcfg = QuantConfig(**{**base.to_dict(), **changes})
    for flag, layers, n in (("--act-bits", qcfg.act_bits_list, n_relu(cfg)),
                            ("--weight-bits", qcfg.weight_bits_list, n_conv(cfg))):
        try:
            layers(n)
        except ValueError as e:  # a per-layer list of the wrong length
            raise LicError(f"{flag}: {e}") from None
    check_bit_widths(qcfg, cfg)
    return qcfg


def _calibrator(args, qcfg: QuantConfig, keep: dict | None = None):
    def prepare(student, batch_source):
        batches = [batch_source(args.batch_size)[1] for _ in range(args.calib_batches)]
        lo, hi = -2 ** (qcfg.input_bits - 1), 2 ** (qcfg.input_bits - 1) - 1
        clipped = sum(int(((b < lo) | (b > hi)).sum()) for b in batches) / sum(b.numel() for b in batches)
        if clipped:
            # The fabric sees the clipped value, so training does too; it only costs quality if frequent.
            _warn(f"{clipped:.2e} of the calibration y_hat values lie outside INT{qcfg.input_bits} and are clipped")
        calibrate_activations(student, batches, keep=keep)
    return prepare


def _quantisers(qcfg: QuantConfig, cfg: StudentConfig) -> dict:
    return {"act_bits": qcfg.act_bits_list(n_relu(cfg)), "weight_bits": qcfg.weight_bits_list(n_conv(cfg)),
            "weight_scale": qcfg.weight_scale}


def run(args) -> int:
    float_student, cfg, fingerprint = load_float_student(args.student)
    teacher = resolve_teacher(args, fingerprint)
    torch.manual_seed(args.seed)
    provenance = {"float_student": str(args.student)}
    if args.init is None:
        qcfg = quant_config(args, cfg)
        model = build_quant_student(cfg, qcfg, float_student)
        prepare = _calibrator(args, qcfg)
    else:
        # Already calibrated and quantisation-aware: training simply goes on, on this run's teacher.
        model, init_cfg, qcfg, init_teacher = load_quant_student(args.init)
        if init_cfg != cfg:
            raise LicError(f"--init {args.init} has another architecture than --student {args.student}")
        provenance.update({**init_provenance(args.init), "init_teacher_fingerprint": init_teacher.hex()})
        prepare = None
        new = quant_config(args, cfg, base=qcfg)
        before, after = _quantisers(qcfg, cfg), _quantisers(new, cfg)
        changed = {f"init_{k}": v for k, v in before.items() if v != after[k]}
        if changed:
            provenance.update(changed)
            model, carried = with_quantisers(model, new)
            qcfg = model.qcfg
            prepare = _calibrator(args, qcfg, keep=carried)
        model.train()
    meta = {"config": cfg.to_dict(), "quant_config": qcfg.to_dict(), "teacher_fingerprint": fingerprint.hex()}
    train_kd(args, teacher, model, kind=QUANT_KIND, meta=meta, desc=f"qat {qcfg.label()}",
             prepare=prepare, provenance=provenance)
    return 0


def load_quant_student(path: Path) -> tuple[QuantStudentSynthesis, StudentConfig, QuantConfig, bytes]:
    """(quant student in eval mode, its StudentConfig, its QuantConfig, the 16-byte fingerprint of
    its teacher) from a `lic qat --export` file; LicError for anything else."""
    obj = read_student_export(path, QUANT_KIND)
    cfg = student_config(obj, path)
    try:
        qcfg = QuantConfig(**obj["quant_config"])
        qcfg.act_bits_list(n_relu(cfg))
        qcfg.weight_bits_list(n_conv(cfg))
    except (KeyError, TypeError, ValueError) as e:
        raise LicError(f"{path}: bad quant config ({e})") from None
    model = build_quant_student(cfg, qcfg)
    load_state(model, obj["state_dict"], path)
    return model.eval(), cfg, qcfg, obj["teacher_fingerprint"]
