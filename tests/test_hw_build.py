"""`lic hw` (make hw / make bitstream) on the tiny student: FINN's Vivado-free steps, estimates,
the HW-layer graph against QONNX, the finn-sim backend, and the clean stop without Vivado."""

import json

import numpy as np
import pytest

from conftest import run_lic
from hls.boards import available_boards, load_board
from hls.folding import tiles_per_frame
from lic.errors import LicError


@pytest.fixture(scope="module")
def hw_build(tmp_path_factory, tiny_package, monkeypatch_module):
    monkeypatch_module.delenv("XILINX_VIVADO", raising=False)
    out = tmp_path_factory.mktemp("hw") / "pynq-z2"
    assert run_lic("hw", "--board", "pynq-z2", "--package", tiny_package, "--tile", "8", "-o", out) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_boards_are_folders():
    assert {"pynq-z2", "zcu104", "kv260"} <= set(available_boards())
    b = load_board("pynq-z2")
    assert b.part == "xc7z020clg400-1" and b.shell_flow == "vivado_zynq" and b.resources["LUT"] == 53200
    with pytest.raises(LicError, match="unknown board"):
        load_board("no-such-board")


def test_tiles_per_frame():
    # 768x512 -> 48x32 latents; 32-latent tiles with halo 2: one row of two windows
    assert tiles_per_frame((768, 512), 32, 2) == 2
    assert tiles_per_frame((768, 512), 16, 2) == 12


def test_estimates_are_consistent(hw_build):
    est = json.loads((hw_build / "estimates.json").read_text())
    board = load_board("pynq-z2")
    assert est["verification"]["hw_graph_vs_qonnx_mismatches"] == 0
    layer_cycles = json.loads((hw_build / "report" / "estimate_layer_cycles.json").read_text())
    assert est["cycles_per_tile"] == max(layer_cycles.values())
    assert est["tiles_per_frame"] == tiles_per_frame((768, 512), 8, 2)
    assert est["fps_at_frame"] == pytest.approx(board.clock_hz / (est["cycles_per_tile"] * est["tiles_per_frame"]))
    lut = est["resources"]["LUT"]
    assert lut["used"] == pytest.approx(sum(v.get("LUT", 0) for v in est["per_layer"].values()))
    assert est["fits_budget"] == (lut["used"] <= 0.85 * 53200 and est["resources"]["BRAM_18K"]["used"] <= 0.9 * 280)
    assert 0 < est["roofline"]["fraction_of_roofline"] <= 1
    assert est["cppsim"]["status"] in ("skipped", "ok")
    tile = json.loads((hw_build / "tile.json").read_text())
    assert tile["tile"] == 8 and tile["halo"] == 2 and tile["input_layout"] == "NHWC"
    assert (hw_build / "hw" / "student_hw.onnx").is_file() and (hw_build / "package" / "manifest.json").is_file()
    assert any(hw_build.joinpath("finn_tmp").rglob("*.cpp")), "hw_codegen wrote no HLS code"


def test_hw_graph_is_integer_nhwc_and_all_hw_layers(hw_build):
    from qonnx.core.modelwrapper import ModelWrapper

    m = ModelWrapper(str(hw_build / "hw" / "student_hw.onnx"))
    assert all(n.domain.startswith("finn.custom_op.fpgadataflow") for n in m.graph.node)
    assert m.get_tensor_datatype(m.graph.input[0].name).name == "INT8"
    assert m.get_tensor_shape(m.graph.input[0].name) == [1, 8, 8, 24]
    assert m.get_tensor_shape(m.graph.output[0].name) == [1, 128, 128, 3]
    assert "Thresholding" not in [n.op_type for n in m.graph.node]  # identity input quant removed


def test_finn_sim_backend_equals_onnx(hw_build, tiny_package, tiny_teacher, integer_hs):
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder
    from training.teacher_codec import EntropyModels, encode

    rgb = np.random.default_rng(5).integers(0, 256, (130, 150, 3), dtype=np.uint8)
    data = encode(EntropyModels(tiny_teacher, integer_hs), rgb)
    package = DecoderPackage.load(tiny_package)
    sim = make_backend("finn-sim", package, hw_dir=hw_build)
    assert sim.tile == 8
    a, _ = HostDecoder(package, sim).decode(data)
    b, _ = HostDecoder(package, make_backend("onnx", package)).decode(data)
    assert np.array_equal(a, b)


def test_bitstream_without_vivado_fails_cleanly(hw_build, tiny_package, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    out = tmp_path / "b"
    assert run_lic("hw", "--board", "pynq-z2", "--package", tiny_package, "--tile", "8", "-o", out,
                   "--bitstream") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the step progress lines
    assert last.startswith("lic: error:") and "needs Vivado" in last and "XILINX_VIVADO" in last
    assert (out / "estimates.json").is_file()  # everything before Vivado is still there


@pytest.mark.parametrize("board", ["zcu104", "kv260"])
def test_other_boards_reach_estimates(board, tiny_package, tmp_path):
    assert run_lic("hw", "--board", board, "--package", tiny_package, "--tile", "8", "-o", tmp_path / board) == 0
    est = json.loads((tmp_path / board / "estimates.json").read_text())
    assert est["part"] == load_board(board).part and est["fps_at_frame"] > 0


def test_unsupported_layer_is_named():
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    from hls.transforms import CheckHWLayers

    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv_0")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])])
    with pytest.raises(LicError, match="deconv_0 \\(ConvTranspose\\)"):
        ModelWrapper(helper.make_model(graph)).transform(CheckHWLayers())


def test_finn_sim_without_build_says_what_to_run(tiny_package, tmp_path):
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage

    with pytest.raises(LicError, match="make hw"):
        make_backend("finn-sim", DecoderPackage.load(tiny_package), hw_dir=tmp_path)


def test_pareto_sweep_table(tmp_path, quant_export, tiny_teacher_path, kodak, capsys):
    assert run_lic("pareto", quant_export, "--teacher", tiny_teacher_path, "--data", kodak, "--limit", "1",
                   "-o", tmp_path) == 0
    rows = json.loads((tmp_path / "pareto.json").read_text())["rows"]
    assert len(rows) == 1 and rows[0]["pareto"] and rows[0]["label"] == "8,8,8,8 W3A4/4/4/6"
    assert rows[0]["psnr_loss_db"] == pytest.approx(rows[0]["teacher_psnr_db"] - rows[0]["psnr_db"])
    assert (tmp_path / "pareto.png").stat().st_size > 0
