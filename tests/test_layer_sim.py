"""Each layer of the shipped student's accelerator simulated at its own source level (hls/layer_sim.py):
HLS layers in cppsim (g++), RTL layers in Verilator, against FINN's Python execution of the same
layer on the same real input (y_hat of a Kodak image, through the layers before it).

The build is the shipped package at tile 8 (the same 24 layers as the board's 32-latent tile, 16x
fewer cycles). Where g++/finn-hlslib/the ap types or Verilator are missing, the tests that need them
skip with the reason the report gives."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_lic
from lic.errors import LicError


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.delenv("XILINX_VIVADO", raising=False)
    mp.setenv("LIC_SIMULATE_LAYERS", "0")  # the tests below simulate what they need
    out = tmp_path_factory.mktemp("layer-sim") / "pynq-z2"
    try:
        assert run_lic("hw", "--board", "pynq-z2", "--tile", "8", "-o", out) == 0
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="module")
def chain(build):
    """The codegen model, and each layer's input: the tile through FINN's Python execution of the
    layers before it."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hls.finn_workarounds import prepare_finn_import
    from hls.layer_sim import python_layer, real_tile
    from host.decoder_package import DecoderPackage

    prepare_finn_import(build / "finn_tmp")
    model = ModelWrapper(str(build / "intermediate_models" / "step_hw_codegen.onnx"))
    y, source = real_tile(DecoderPackage.load(build / "package"), 8)
    x, inputs = y.transpose(0, 2, 3, 1), {}
    for node in model.graph.node:
        inputs[node.name] = x
        x = python_layer(getCustomOp(node), model, x)
    return model, inputs, source


def need(level):
    from hls import cppsim, verilator_sim

    why = (cppsim if level == "cppsim" else verilator_sim).missing()
    if why:
        pytest.skip(why)


def gate(chain, build, name, level):
    from qonnx.custom_op.registry import getCustomOp

    from hls.layer_sim import gate_layer

    model, inputs, _ = chain
    return gate_layer(getCustomOp(model.get_node_from_name(name)), model, inputs[name], level, build / "layer_sim")


@pytest.mark.parametrize("dtype, elems", [("INT25", 2), ("UINT8", 16), ("INT21", 3), ("INT8", 48)])
def test_stream_packing_is_finns(dtype, elems):
    """The harness's beats are FINN's packing as the driver writes the DMA buffer (element 0 in the
    least significant bits, padded to bytes, little endian), and unpack inverts it."""
    from finn.util.data_packing import finnpy_to_packed_bytearray
    from qonnx.core.datatype import DataType

    from hls.verilator_sim import pack, unpack

    d = DataType[dtype]
    x = np.random.default_rng(0).integers(d.min(), d.max() + 1, (64, elems)).astype(np.float32)
    packed = pack(x, d.bitwidth(), elems, (d.bitwidth() * elems + 7) // 8)
    assert np.array_equal(packed, finnpy_to_packed_bytearray(x, d, reverse_inner=True, reverse_endian=True))
    assert np.array_equal(unpack(packed, d.bitwidth(), elems, d.signed()), x)


def test_tile_is_real_y_hat(chain):
    _, inputs, source = chain
    assert source.startswith("y_hat of Kodak kodim23.png by teacher q3")
    y = inputs["FMPadding_rtl_0"]
    assert y.shape == (1, 8, 8, 192) and np.array_equal(y, np.rint(y)) and y.min() >= -128 and y.max() <= 127
    assert np.count_nonzero(y) > 100  # a real latent, not an empty corner


def test_hls_mvau_cppsim_equals_python(chain, build):
    need("cppsim")
    got, row = gate(chain, build, "MVAU_hls_0", "cppsim")
    assert row["bit_exact"] and got.shape == (1, 16, 16, 64) and np.abs(got).max() > 0


@pytest.mark.parametrize("name", ["FMPadding_rtl_0", "ConvolutionInputGenerator_rtl_0", "MVAU_rtl_0",
                                  "Thresholding_rtl_0"])
def test_rtl_layer_in_verilator_equals_python(chain, build, name):
    from qonnx.custom_op.registry import getCustomOp

    need("verilator")
    got, row = gate(chain, build, name, "verilator")
    assert row["bit_exact"] and row["lint"]["errors"] == 0
    est = getCustomOp(chain[0].get_node_from_name(name)).get_exp_cycles()
    # the layer's own cycles near FINN's model of them (a pipeline's fill; the sliding window's
    # estimate is FINN's approximation, 1.5% high at this tile)
    assert abs(row["cycles"]["cycles_first_in_to_last_out"] - est) <= max(64, est // 20)


def write_one_wrong_parameter(inst, model, x, folder: Path) -> str:
    """Write the layer's generated parameter files with FINN's own writer, one entry changed where
    this input makes it matter: a weight on the input element most often non-zero (many latent
    channels are zero all over a tile), or the threshold that the most inputs fall above."""
    name = inst.onnx_node.name
    if name.startswith("MVAU"):
        w = model.get_initializer(inst.onnx_node.input[1]).copy()
        m = int(np.argmax(np.count_nonzero(x.reshape(-1, w.shape[0]), axis=0)))
        w[m, 0] = w[m, 0] - 1 if w[m, 0] > inst.get_input_datatype(1).min() + 1 else w[m, 0] + 1
        if name.startswith("MVAU_hls"):
            inst.make_weight_file(w, "decoupled_npy", str(folder / "input_1.npy"))
        else:
            inst.make_weight_file(w, "decoupled_verilog_dat", str(folder / "memblock.dat"))
        return f"weight ({m}, 0)"
    t = model.get_initializer(inst.onnx_node.input[1]).copy()
    v = x.reshape(-1, t.shape[0])
    # inputs in [t[c, k], t[c, k + 1]) go one level lower once t[c, k] is raised to t[c, k + 1]
    counts = [((v[:, c:c + 1] >= t[c, :-1]) & (v[:, c:c + 1] < t[c, 1:])).sum(axis=0) for c in range(t.shape[0])]
    c = int(np.argmax([cnt.max() for cnt in counts]))
    k = int(np.argmax(counts[c]))
    t[c, k] = t[c, k + 1]
    inst.make_weight_file(t, "internal_embedded", str(folder / "memblock.dat"))
    return f"threshold ({c}, {k})"


@pytest.mark.parametrize("name, level", [("MVAU_rtl_0", "verilator"), ("Thresholding_rtl_0", "verilator"),
                                         ("MVAU_hls_0", "cppsim")])
def test_wrong_parameter_in_the_simulated_layer_is_caught(chain, build, name, level, tmp_path):
    """One weight or threshold changed in the layer's generated memory (what the simulated layer
    reads: memblock.dat, the thresholds' .dat files, cppsim's input_1.npy), not in the model (what
    the Python reference reads): the gate stops naming the layer and the first differing element."""
    from qonnx.custom_op.registry import getCustomOp

    from hls import cppsim

    need(level)
    model, inputs, _ = chain
    inst = getCustomOp(model.get_node_from_name(name))
    if level == "cppsim":
        cppsim.prepare(inst, model)
    folder = Path(inst.get_nodeattr("code_gen_dir_cppsim" if level == "cppsim" else "code_gen_dir_ipgen"))
    shutil.copytree(folder, tmp_path / "saved")
    try:
        write_one_wrong_parameter(inst, model, inputs[name], folder)
        with pytest.raises(LicError, match=rf"^{name} \({level}\) differs from its Python execution in \d+ of "
                                           r"\d+ values; first at index \(.*\): expected -?\d+, got -?\d+$"):
            gate(chain, build, name, level)
    finally:
        shutil.rmtree(folder)
        shutil.copytree(tmp_path / "saved", folder)


def test_missing_simulators_are_reported_and_skipped(build, tmp_path, monkeypatch):
    """Without the vendored sources, Vitis HLS, finn deps or Verilator: the step says what is missing
    in its report and the build goes on; tests needing them skip with the same words."""
    from qonnx.core.modelwrapper import ModelWrapper

    from hls import cppsim, verilator_sim
    from hls.layer_sim import simulate_layers

    for var in ("XILINX_HLS", "XILINX_VITIS_HLS", "VITIS_HLS_ROOT", "FINN_DEPS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LIC_HLS_VENDOR", str(tmp_path / "no-vendor"))
    monkeypatch.setenv("LIC_VERILATOR_ROOT", str(tmp_path / "no-verilator"))
    monkeypatch.setattr("hls.cppsim._finn_deps", lambda: None)
    out = tmp_path / "b"
    (out / "report").mkdir(parents=True)
    report = simulate_layers(ModelWrapper(str(build / "intermediate_models" / "step_hw_codegen.onnx")), out, None, 8)
    assert report["status"] == "skipped"
    assert "cppsim missing finn-hlslib and ap types" in report["reason"] and "LIC_HLS_VENDOR" in report["reason"]
    assert "Verilator missing" in report["reason"]
    assert json.loads((out / "report" / "layer_sim.json").read_text()) == report
    assert cppsim.missing() in report["reason"] and verilator_sim.missing() in report["reason"]


@pytest.mark.slow
def test_all_24_layers_chained_over_a_tile(build):
    """`make hw`'s step over the whole tile: every layer simulated (Upsample at the Python level), each
    fed with the previous simulated output, and the chain equals the HW graph's Python execution."""
    need("verilator")
    need("cppsim")
    from qonnx.core.modelwrapper import ModelWrapper

    from hls.finn_workarounds import prepare_finn_import
    from hls.layer_sim import simulate_layers
    from host.decoder_package import DecoderPackage

    prepare_finn_import(build / "finn_tmp")
    model = ModelWrapper(str(build / "intermediate_models" / "step_hw_codegen.onnx"))
    report = simulate_layers(model, build, DecoderPackage.load(build / "package"), 8)
    levels = [r["level"] for r in report["layers"]]
    assert len(levels) == 24 and levels.count("verilator") == 18 and levels.count("cppsim") == 2
    assert all(r["bit_exact"] for r in report["layers"] if r["level"] != "python-only")
    assert {r["kind"] for r in report["layers"] if r["level"] == "python-only"} == {"UpsampleNearestNeighbour_hls"}
    assert report["chain"]["bit_exact"] and report["status"] == "ok"
    shutil.rmtree(build / "layer_sim" / "run", ignore_errors=True)
