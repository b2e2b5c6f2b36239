"""The decoder-specific graph rewrites of the FINN build, as qonnx Transformations
(`apply(model) -> (model, modified)`), applied to the streamlined graph before convert_to_hw.

  RemoveIntegerInputQuant   the scale-1 input quantiser is an identity on INT-n y_hat: drop it
  HostSideLayoutAndScale    the input NCHW->NHWC Transpose and the output Transpose + dequantising
                            Mul move to the host, so the accelerator reads and writes integers in
                            NHWC streams (DESIGN.md: "feed the accelerator integers")
  CheckHWLayers             after convert_to_hw: every node must be a FINN HW layer, else fail
                            naming the first one that is not
"""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.general.multithreshold import multithreshold
from qonnx.transformation.base import Transformation
from qonnx.util.basic import get_by_name

from lic.errors import LicError


def _attr(node, name, default):
    a = get_by_name(node.attribute, name)
    if a is None:
        return default
    return a.f if a.type == a.FLOAT else a.s.decode() if a.type == a.STRING else a.i


class RemoveIntegerInputQuant(Transformation):
    """Brevitas' input QuantIdentity (scale 1, zero point 0) becomes FINN's first MultiThreshold,
    with 2^n - 1 thresholds. On an input already annotated INT-n it maps every representable value
    to itself, so it costs a Thresholding layer (2^n - 1 comparators per channel) for nothing.
    Removed only when that identity is checked on every input value."""

    def apply(self, model: ModelWrapper):
        iname = model.graph.input[0].name
        node = model.find_consumer(iname)
        if node is None or node.op_type != "MultiThreshold":
            return model, False
        dt = model.get_tensor_datatype(iname)
        if not dt.is_integer() or dt.bitwidth() > 16:
            return model, False
        thresholds = model.get_initializer(node.input[1])
        values = np.arange(dt.min(), dt.max() + 1, dtype=np.float32)
        channels = thresholds.shape[0]
        probe = np.broadcast_to(values, (channels, values.size))[None, :, :, None]  # N, C, H=values, W=1
        out = multithreshold(probe, thresholds, _attr(node, "out_scale", 1.0), _attr(node, "out_bias", 0.0))
        if not np.array_equal(out, probe):
            return model, False
        consumers = model.find_consumers(node.output[0])
        for c in consumers:
            for i, name in enumerate(c.input):
                if name == node.output[0]:
                    c.input[i] = iname
        model.graph.node.remove(node)
        return model, False


class HostSideLayoutAndScale(Transformation):
    """Strip the graph's layout and scale ends so that it maps integer NHWC to integer NHWC:
    a leading Transpose(0,2,3,1) after the input and trailing Transpose(0,3,1,2) / scalar Mul before
    the output are removed (the host does them: host/fabric.py, host/runtime.py). The removed
    output scale is stored in the model's metadata as `output_scale`."""

    def apply(self, model: ModelWrapper):
        g = model.graph
        iname = g.input[0].name
        first = model.find_consumer(iname)
        if first is not None and first.op_type == "Transpose" and list(_perm(first)) == [0, 2, 3, 1]:
            shape = model.get_tensor_shape(first.output[0])
            for c in model.find_consumers(first.output[0]):
                c.input[list(c.input).index(first.output[0])] = iname
            _drop_value_info(model, first.output[0])
            g.node.remove(first)
            model.set_tensor_shape(iname, shape)
            model.set_tensor_layout(iname, ["N", "H", "W", "C"])
        scale = 1.0
        while True:
            oname = g.output[0].name
            last = model.find_producer(oname)
            if last is None:
                break
            if last.op_type == "Mul" and model.get_initializer(last.input[1]) is not None \
                    and model.get_initializer(last.input[1]).size == 1:
                scale *= float(model.get_initializer(last.input[1]).reshape(-1)[0])
            elif not (last.op_type == "Transpose" and list(_perm(last)) == [0, 3, 1, 2]):
                break
            inner = last.input[0]
            shape, dt, layout = model.get_tensor_shape(inner), model.get_tensor_datatype(inner), model.get_tensor_layout(inner)
            producer = model.find_producer(inner)
            g.node.remove(last)
            if producer is None:
                break
            producer.output[list(producer.output).index(inner)] = oname
            _drop_value_info(model, inner)
            model.set_tensor_shape(oname, shape)
            model.set_tensor_datatype(oname, dt)
            if layout is not None:
                model.set_tensor_layout(oname, layout)
        model.set_metadata_prop("output_scale", repr(scale))
        return model, False


def _drop_value_info(model: ModelWrapper, name: str) -> None:
    for vi in list(model.graph.value_info):
        if vi.name == name:
            model.graph.value_info.remove(vi)


def _perm(node):
    return get_by_name(node.attribute, "perm").ints


class CheckHWLayers(Transformation):
    """Fail early, naming the layer, when convert_to_hw left a node the fabric cannot run."""

    def apply(self, model: ModelWrapper):
        for node in model.graph.node:
            if not node.domain.startswith("finn.custom_op.fpgadataflow"):
                hint = " (`lic hw` builds students trained with --upsample nearest; deconv students are " \
                       "float/quality references)" if node.op_type == "ConvTranspose" else ""
                raise LicError(f"FINN has no hardware layer for node {node.name} ({node.op_type}); the student "
                               f"must use ops `lic hw` maps (conv, ReLU quant, nearest upsample){hint}")
        if model.get_tensor_datatype(model.graph.input[0].name) == DataType["FLOAT32"]:
            raise LicError("the accelerator input would be FLOAT32: the QONNX input must be annotated INT-n")
        return model, False
