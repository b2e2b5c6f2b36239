"""Export the quantised student to ONNX, and run the exported graphs.

Two flavours, both for one fixed tile shape (1, M, th, tw) (FINN compiles one input shape; the host
decodes any image size as latent tiles with a halo):

  QONNX  (export_qonnx / run_qonnx)             Quant nodes carry scale, zero point and bit width;
                                                 the input of FINN's build (hls/). Executed with
                                                 qonnx's reference executor.
  QCDQ   (export_qcdq_onnx / run_onnxruntime)    standard QuantizeLinear/Clip/DequantizeLinear;
                                                 runs in plain onnxruntime (CPU baseline, bench/).

Both use Brevitas' TorchScript exporter (dynamo=False) by default: on torch 2.13 the dynamo one
also works and gives the same graph and results, but is slower and prints progress to stdout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.base import Transformation
from qonnx.util.cleanup import cleanup_model


def _input_channels(quant_model: torch.nn.Module) -> int:
    cfg = getattr(quant_model, "cfg", None)
    if cfg is not None:
        return cfg.latent_channels
    for m in quant_model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            return m.in_channels
    raise ValueError("cannot infer the model's input channels")


def _example_input(quant_model, tile_hw) -> torch.Tensor:
    th, tw = (tile_hw, tile_hw) if isinstance(tile_hw, int) else tile_hw
    return torch.zeros(1, _input_channels(quant_model), th, tw)


class _eval_mode:
    """Export traces a forward pass: in train mode that pass would also update the runtime
    activation statistics, i.e. change the model being exported."""

    def __init__(self, model):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


class BiasQuantParams1D(Transformation):
    """Give the Quant nodes of int32 biases shape-(1,) scalars instead of shape-() ones.

    Why: Brevitas exports a scalar zero point (and, for per-tensor weights, scale) with shape ();
    qonnx 1.0.0's ExtractBiasFromConv, which FINN's ConvertQONNXtoFINN runs first, only leaves
    shape-(1,) parameters alone and tries to reshape anything else to (1, C, 1, 1):
    "ValueError: cannot reshape array of size 1 into shape (1,8,1,1)". Same values, same results."""

    def apply(self, model):
        for node in model.graph.node:
            if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 3:
                continue
            producer = model.find_producer(node.input[2])
            if producer is None or producer.op_type != "Quant":
                continue
            for name in producer.input[1:3]:
                value = model.get_initializer(name)
                if value is not None and value.shape == ():
                    model.set_initializer(name, value.reshape(1))
        return model, False


def export_qonnx(quant_model: torch.nn.Module, tile_hw, path, *, dynamo: bool = False,
                 cleanup: bool = True) -> Path:
    """Export to QONNX for a (1, M, th, tw) input, clean it up (shapes, constant folding that keeps
    Quant nodes, readable names) and annotate the input as INT<input_bits>. Returns the path."""
    # why: brevitas.export warns on import (no fast_hadamard_transform): only when exporting, not on every
    # import of this module (`lic export --help`, hls/)
    from brevitas.export import export_qonnx as _export

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(quant_model), torch.no_grad():
        _export(quant_model, _example_input(quant_model, tile_hw), export_path=os.fspath(path), dynamo=dynamo)
    if cleanup:
        model = cleanup_model(ModelWrapper(os.fspath(path)))
        model = model.transform(BiasQuantParams1D())
        qcfg = getattr(quant_model, "qcfg", None)
        if qcfg is not None:
            # The input Quant has scale 1 and zero point 0, so the graph input already holds
            # integers; saying so lets FINN give the accelerator an integer input port.
            model.set_tensor_datatype(model.graph.input[0].name, DataType[f"INT{qcfg.input_bits}"])
        model.save(os.fspath(path))
    return path


def run_qonnx(path, x) -> np.ndarray:
    """Execute a QONNX graph with qonnx's reference executor (node by node; Quant in numpy, standard
    ops through onnxruntime). Slow: meant for tiles and checks, not for whole images."""
    model = ModelWrapper(os.fspath(path))
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    iname, oname = model.graph.input[0].name, model.graph.output[0].name
    return execute_onnx(model, {iname: x.astype(np.float32)})[oname]


def export_qcdq_onnx(quant_model: torch.nn.Module, tile_hw, path, *, dynamo: bool = False,
                     **onnx_export_kwargs) -> Path:
    """Export to standard-ONNX QCDQ (QuantizeLinear/Clip/DequantizeLinear) for onnxruntime; extra
    keyword arguments (e.g. dynamic_axes) go to torch.onnx.export."""
    from brevitas.export import export_onnx_qcdq as _export  # why: as in export_qonnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_mode(quant_model), torch.no_grad():
        _export(quant_model, _example_input(quant_model, tile_hw), export_path=os.fspath(path), dynamo=dynamo,
                **onnx_export_kwargs)
    return path


def run_onnxruntime(path, x, *, optimize: bool = True) -> np.ndarray:
    """Run an ONNX file on onnxruntime's CPU provider. optimize=False disables all graph rewrites
    (e.g. to tell a rewrite's effect from the exporter's)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3  # the TorchScript exporter lists biases as graph inputs: ort warns per bias
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(os.fspath(path), so, providers=["CPUExecutionProvider"])
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
