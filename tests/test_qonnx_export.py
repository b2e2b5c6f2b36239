"""Brevitas student -> QONNX (qonnx executor) and QCDQ (onnxruntime) must reproduce the Brevitas
model's output integers. Tiny models (M=8, 8 channels, 4x4 latent tile) keep this quick."""

import numpy as np
import onnx
import pytest
import torch

from training.student_decoder import StudentConfig, StudentSynthesis, count_macs
from quantize.quant_student import (QuantConfig, QuantStudentSynthesis, build_quant_student,
                                    calibrate_activations, load_float_weights, n_relu)
from export.qonnx_export import export_qcdq_onnx, export_qonnx, run_onnxruntime, run_qonnx

M, C, TILE = 8, 8, 4
VARIANTS = ["nearest", "deconv4", "deconv5"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def latent_batch(seed, n=1, hw=TILE):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(-30, 31, (n, M, hw, hw), generator=g).float()
    y[0, 0, 0, 0] = 200.0  # outside INT8: must clip to 127 everywhere
    y[0, 1, 0, 0] = -200.0
    return y


def make_quant_student(upsample, qcfg=None, seed=0):
    torch.manual_seed(seed)
    cfg = StudentConfig(latent_channels=M, channels=C, upsample=upsample)
    q = build_quant_student(cfg, qcfg or QuantConfig(), StudentSynthesis(cfg))
    calibrate_activations(q, [latent_batch(s, n=2) for s in (10, 11)])
    return q.eval()


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    return request.param, make_quant_student(request.param)


@pytest.fixture(scope="module")
def x():
    return latent_batch(1)


@pytest.fixture(scope="module")
def qonnx_path(variant, tmp_path_factory):
    upsample, q = variant
    return export_qonnx(q, (TILE, TILE), tmp_path_factory.mktemp("qonnx") / f"{upsample}.onnx")


def brevitas_int(q, x):
    with torch.no_grad():
        qt = q.forward_quant(x)
    return qt.int().numpy(), qt.value.numpy(), float(qt.scale)


# --- the quantised model itself --------------------------------------------------------------

def test_input_quant_passes_int8_unchanged_and_clips():
    q = QuantStudentSynthesis(StudentConfig(latent_channels=M, channels=C)).eval()
    y = torch.tensor([-300.0, -129, -128, -3, 0, 5, 127, 128, 1000]).reshape(1, 9, 1, 1)
    out = q.input_quant(y)
    assert float(out.scale) == 1.0 and float(out.zero_point) == 0.0 and int(out.bit_width) == 8
    assert out.value.flatten().tolist() == [-128, -128, -128, -3, 0, 5, 127, 127, 127]


def test_input_bits_configurable():
    q = QuantStudentSynthesis(StudentConfig(latent_channels=M, channels=C), QuantConfig(input_bits=6)).eval()
    out = q.input_quant(torch.arange(-40.0, 41.0).reshape(1, -1, 1, 1))
    assert float(out.scale) == 1.0
    assert out.value.min() == -32 and out.value.max() == 31


@pytest.mark.parametrize("upsample", VARIANTS)
def test_quant_forward_shape_and_output_bits(upsample):
    q = make_quant_student(upsample, QuantConfig(weight_bits=3, act_bits=[4, 5, 6, 7], output_bits=8))
    x = latent_batch(2, n=2)
    qt = q.forward_quant(x)
    assert qt.value.shape == (2, 3, 64, 64)
    assert int(qt.bit_width) == 8 and bool(qt.signed)
    assert torch.equal(q(x), qt.value)
    assert q.output_scale() == float(qt.scale)
    relu_bits = [int(m.act_quant.bit_width()) for m in q.modules() if type(m).__name__ == "QuantReLU"]
    assert relu_bits == [4, 5, 6, 7]  # head + 3 stages; the image conv has no ReLU
    assert n_relu(q.cfg) == 4


def test_per_conv_weight_bits_and_mse_scales_are_powers_of_two():
    q = make_quant_student("nearest", QuantConfig(weight_bits=[8, 4, 4, 3, 8], weight_scale="mse"))
    convs = [m for m in q.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [int(m.quant_weight().bit_width) for m in convs] == [8, 4, 4, 3, 8]
    for m in convs:
        log2 = torch.log2(m.quant_weight().scale)
        assert torch.equal(log2, torch.round(log2))  # what keeps the float emulation exact
    with pytest.raises(ValueError, match="convs"):
        QuantStudentSynthesis(StudentConfig(latent_channels=M, channels=C), QuantConfig(weight_bits=[4, 8]))


@pytest.mark.parametrize("export", ["qonnx", "qcdq"])
def test_mixed_weight_bits_with_mse_scales_export_bit_exact(export, x, tmp_path):
    q = make_quant_student("nearest", QuantConfig(weight_bits=[8, 4, 4, 4, 8], act_bits=[4, 4, 4, 8],
                                                  weight_scale="mse"))
    ints, values, scale = brevitas_int(q, x)
    if export == "qonnx":
        out = run_qonnx(export_qonnx(q, (TILE, TILE), tmp_path / "m.onnx"), x)
    else:
        out = run_onnxruntime(export_qcdq_onnx(q, (TILE, TILE), tmp_path / "m_qcdq.onnx"), x)
    assert np.array_equal(np.round(out / scale).astype(np.int64), ints.astype(np.int64))


def test_act_bits_list_length_checked():
    with pytest.raises(ValueError, match="ReLUs"):
        QuantStudentSynthesis(StudentConfig(latent_channels=M, channels=C), QuantConfig(act_bits=[4, 4]))


@pytest.mark.parametrize("upsample", VARIANTS)
def test_load_float_weights(upsample):
    cfg = StudentConfig(latent_channels=M, channels=C, upsample=upsample, convs_per_stage=2)
    f = StudentSynthesis(cfg)
    q = load_float_weights(QuantStudentSynthesis(cfg), f)
    fc = [m for m in f.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    qc = [m for m in q.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(fc) == len(qc) == 9
    for a, b in zip(fc, qc):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert count_macs(q, (TILE, TILE)) == count_macs(f, (TILE, TILE))


def test_load_float_weights_rejects_other_architecture():
    f = StudentSynthesis(StudentConfig(latent_channels=M, channels=C, convs_per_stage=2))
    with pytest.raises(ValueError):
        load_float_weights(QuantStudentSynthesis(StudentConfig(latent_channels=M, channels=C)), f)


def test_qat_step_updates_weights_and_scales():
    cfg = StudentConfig(latent_channels=M, channels=C)
    f = StudentSynthesis(cfg)
    q = build_quant_student(cfg, QuantConfig(), f).train()
    opt = torch.optim.SGD(q.parameters(), lr=1e-2)
    x = latent_batch(3, n=2)
    loss = (q(x) - f(x).detach()).pow(2).mean()
    loss.backward()
    missing = [n for n, p in q.named_parameters() if p.grad is None]
    assert not missing, missing
    opt.step()


# --- QONNX -------------------------------------------------------------------------------------

def test_qonnx_export_and_execution_bit_exact(variant, qonnx_path, x):
    upsample, q = variant
    assert qonnx_path.exists()
    out = run_qonnx(qonnx_path, x)
    ints, values, scale = brevitas_int(q, x)
    assert out.shape == (1, 3, 16 * TILE, 16 * TILE)
    assert np.array_equal(out, values)  # exact in float, hence also in the integer domain
    assert np.array_equal(np.round(out / scale).astype(ints.dtype), ints)


def test_qonnx_graph_contents(variant, qonnx_path):
    from qonnx.core.modelwrapper import ModelWrapper

    upsample, q = variant
    model = ModelWrapper(str(qonnx_path))
    ops = [n.op_type for n in model.graph.node]
    assert model.get_tensor_datatype(model.graph.input[0].name).name == "INT8"
    assert model.get_tensor_shape(model.graph.input[0].name) == [1, M, TILE, TILE]
    assert ops[-1] == "Quant"  # the output stays quantised; the host dequantises
    first = model.graph.node[0]
    assert first.op_type == "Quant" and first.input[0] == model.graph.input[0].name
    assert float(model.get_initializer(first.input[1])) == 1.0  # integer input: scale 1
    if upsample == "nearest":
        assert ops.count("Resize") == 4 and "ConvTranspose" not in ops
    else:
        assert ops.count("ConvTranspose") == 4 and "Resize" not in ops
    assert "Relu" in ops and "Mul" not in ops


def test_finn_qonnx_to_finn_conversion(variant, qonnx_path, x):
    """The first step of FINN's build (ConvertQONNXtoFINN: Quant -> MultiThreshold, bias -> Add)
    runs on the export (guards export.qonnx_export.BiasQuantParams1D). Its thresholds round exact ties up
    where Brevitas rounds them to even, and ties are frequent with power-of-two scales (on this
    random model 75% of outputs differ, up to 29 LSB); hls/ replaces the thresholds in the HW graph
    and tests/test_hw_build.py checks that graph is exact."""
    conv = pytest.importorskip("finn.transformation.qonnx.convert_qonnx_to_finn")
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    upsample, q = variant
    model = ModelWrapper(str(qonnx_path)).transform(conv.ConvertQONNXtoFINN())
    ops = [n.op_type for n in model.graph.node]
    assert "Quant" not in ops and ops.count("MultiThreshold") == 6  # input, 4 ReLUs, output
    out = execute_onnx(model, {model.graph.input[0].name: x.numpy()})[model.graph.output[0].name]
    assert out.shape == brevitas_int(q, x)[0].shape


def test_qonnx_dynamo_export_matches(x, tmp_path):
    q = make_quant_student("nearest")
    out = run_qonnx(export_qonnx(q, TILE, tmp_path / "d.onnx", dynamo=True), x)
    assert np.array_equal(out, brevitas_int(q, x)[1])


# --- QCDQ / onnxruntime ------------------------------------------------------------------------

def test_qcdq_onnxruntime_within_one_lsb(variant, x, tmp_path):
    upsample, q = variant
    path = export_qcdq_onnx(q, (TILE, TILE), tmp_path / f"{upsample}_qcdq.onnx")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    out = run_onnxruntime(path, x)
    ints, values, scale = brevitas_int(q, x)
    diff = np.abs(np.round(out / scale).astype(np.int64) - ints.astype(np.int64))
    assert diff.max() <= 1
    # Measured: exact, with onnxruntime's graph optimisations on (int32 biases, see quant_student).
    assert diff.max() == 0


def test_float_bias_is_exact_only_without_ort_rewrites(x, tmp_path):
    """Why QuantConfig.int_bias defaults to True: a float bias behind DequantizeLinear is re-quantised
    by onnxruntime's WeightBiasQuantization pass. Brevitas and QONNX still agree; onnxruntime with
    its rewrites disabled agrees too."""
    q = make_quant_student("deconv4", QuantConfig(int_bias=False))
    ints, values, scale = brevitas_int(q, x)
    assert np.array_equal(run_qonnx(export_qonnx(q, TILE, tmp_path / "fb.onnx"), x), values)
    path = export_qcdq_onnx(q, TILE, tmp_path / "fb_qcdq.onnx")
    assert np.array_equal(run_onnxruntime(path, x, optimize=False), values)
    # With rewrites on, this model's output measured up to 15 LSB off (56% of pixels); not asserted,
    # since whether a rounding flips depends on the weights drawn.
    assert run_onnxruntime(path, x).shape == values.shape
