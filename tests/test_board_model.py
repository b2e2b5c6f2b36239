"""The board-rate model (hls/estimates.py fabric_timing, pipeline_rate): the three rates kept apart,
the fabric's batch with its fill, FINN's summed latency as an upper bound, simulated cycles used
where report/layer_sim.json has them, and the runtime's schedule in the arithmetic."""

import json
import shutil

import pytest

from conftest import REPO
from hls.estimates import BOARD_ASSUMPTIONS, pipeline_rate

SHIPPED_BUILD = REPO / "fpga_projects" / "pynq-z2" / "build"


def toy_build(folder):
    """A `make hw` build folder holding only a three-layer FINN graph small enough to work out by hand:
    a 3x3 sliding window over a 6x6x2 input (SIMD 2), an MVAU over its 4x4 windows (MW 18 = 3*3*2,
    MH 4, SIMD 3, PE 1) and a standalone Thresholding of the MVAU's 4 channels (PE 1)."""
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper

    from hls.finn_workarounds import prepare_finn_import

    prepare_finn_import()

    def node(op, style, i, o, **attrs):
        return helper.make_node(f"{op}_{style}", [i], [o], name=f"{op}_{style}_0", backend="fpgadataflow",
                                domain=f"finn.custom_op.fpgadataflow.{style}", **attrs)

    nodes = [
        node("ConvolutionInputGenerator", "rtl", "x", "a", ConvKernelDim=[3, 3], IFMChannels=2, IFMDim=[6, 6],
             OFMDim=[4, 4], SIMD=2, Stride=[1, 1], Dilation=[1, 1], inputDataType="INT8", outputDataType="INT8"),
        node("MVAU", "hls", "a", "b", MW=18, MH=4, SIMD=3, PE=1, numInputVectors=[1, 4, 4], inputDataType="INT8",
             weightDataType="INT4", outputDataType="INT16", accDataType="INT16", noActivation=1, resType="lut"),
        node("Thresholding", "rtl", "b", "y", NumChannels=4, PE=1, numSteps=15, numInputVectors=[1, 4, 4],
             inputDataType="INT16", weightDataType="INT16", outputDataType="UINT4"),
    ]
    graph = helper.make_graph(nodes, "toy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 6, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])])
    model = ModelWrapper(helper.make_model(graph))
    for sub in ("report", "intermediate_models"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    model.save(str(folder / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    return model


# The toy's figures, worked out by hand from FINN's cycle formulas (finn-plus 1.6.1 get_exp_cycles):
#   sliding window (RTL, default style, 2-D): buffer (k-1)*W_in + (k-1) + 1 = 2*6 + 3 = 15 pixels
#       (channel fold 2/2 = 1), then per output row max(write OFM_w*k*k = 4*9 = 36, read 1*6 = 6):
#       15 + 4*36 = 159 cycles; first window after 2 rows + 3 pixels of 6x6 = 15/36 of them: 66.25
#   MVAU: (MH/PE) * (MW/SIMD) * output pixels = (4/1) * (18/3) * 16 = 384 cycles; first pixel 384/16 = 24
#   Thresholding: output pixels * channels/PE = 16 * 4 = 64 cycles; first pixel 64/16 = 4
# fill = 66.25 + 24 + 4 = 94.25 cycles; the slowest layer is the MVAU (384); at 100 MHz one cycle is 1e-5 ms
TOY_CYCLES = {"ConvolutionInputGenerator_rtl_0": 159, "MVAU_hls_0": 384, "Thresholding_rtl_0": 64}


@pytest.fixture(scope="module")
def shipped_build():
    if not (SHIPPED_BUILD / "intermediate_models" / "step_generate_estimate_reports.onnx").is_file():
        pytest.skip(f"no board build of the shipped student in {SHIPPED_BUILD} (`make hw`)")
    from hls.finn_workarounds import prepare_finn_import

    prepare_finn_import()
    return SHIPPED_BUILD


def test_fabric_timing_keeps_the_rates_apart(shipped_build):
    from hls.estimates import fabric_timing

    est = json.loads((shipped_build / "estimates.json").read_text())
    n = est["tiles_per_frame"]
    t = fabric_timing(shipped_build, n, est["clock_mhz"] * 1e6)
    perf = json.loads((shipped_build / "report" / "estimate_network_performance.json").read_text())
    # against figures this code did not compute: FINN's own throughput (tiles per second at the clock
    # FINN was given) over the tiles of a frame, and Verilator's cycle counts (report/layer_sim.json), read
    # here directly: a build whose layers were simulated takes them, within 0.1% of FINN's
    assert n == 2  # 768x512 -> 48x32 latents; 32-latent tiles, halo 2: cores 30 + 18 columns, 32 rows
    assert t["steady_fps"] == pytest.approx(perf["estimated_throughput_fps"] / 2, rel=1e-3)
    simulated = [row["cycles"]["cycles_first_in_to_last_out"]
                 for row in json.loads((shipped_build / "report" / "layer_sim.json").read_text()).get("layers", [])
                 if isinstance(row.get("cycles"), dict)]
    assert t["slowest_cycles"] >= max(simulated, default=0)
    # FINN's latency (estimated_latency_ns) sums every layer's cycles: ours lies between one slowest layer
    # and that sum, and a batch of n tiles between n slowest layers and FINN's sum plus n-1 more of them
    finn_ms = perf["estimated_latency_ns"] / 1e6
    assert t["finn_latency_upper_bound_ms"] == pytest.approx(finn_ms, rel=1e-3)
    period_ms = perf["max_cycles"] / est["clock_mhz"] / 1e3
    assert period_ms * 0.999 < t["tile_latency_ms"] < finn_ms / 5
    assert n * period_ms * 0.999 < t["batch_ms"] < finn_ms + (n - 1) * period_ms * 1.001
    assert 1000 / t["batch_ms"] < t["steady_fps"]  # a batch per frame pays its fill
    swg = [v for k, v in t["layers"].items() if k.startswith("ConvolutionInputGenerator")]
    assert swg and all("window" in v["first_output_from"] for v in swg)
    assert "FINN's estimate" in t["cycles_source"] and "upper bound" in t["method"]


def test_fabric_timing_on_a_hand_worked_toy(tmp_path):
    """fabric_timing's figures for the toy (TOY_CYCLES, worked out above), 3 tiles at 100 MHz."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    from hls.estimates import fabric_timing

    model = toy_build(tmp_path)
    t = fabric_timing(tmp_path, 3, 100e6)
    assert {k: v["cycles"] for k, v in t["layers"].items()} == TOY_CYCLES
    assert t["slowest_layer"] == "MVAU_hls_0" and t["slowest_cycles"] == 384
    assert t["fill_cycles"] == pytest.approx(94.25)          # 66.25 + 24 + 4
    assert t["steady_fps"] == pytest.approx(86_805.5556)      # 1e8 / (3 tiles x 384)
    assert t["tile_latency_ms"] == pytest.approx(0.0047825)   # (94.25 + 384) x 1e-5 ms
    assert t["batch_ms"] == pytest.approx(0.0124625)          # (94.25 + 3 x 384) x 1e-5 ms
    assert t["finn_latency_upper_bound_ms"] == pytest.approx(0.00607)  # (159 + 384 + 64) x 1e-5 ms
    # FINN's own analysis of the same graph agrees with the hand-worked cycles
    perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    assert perf["max_cycles"] == 384 and perf["critical_path_cycles"] == 607


def test_fabric_timing_takes_simulated_cycles(tmp_path):
    """hls/layer_sim.py's report: Verilator layers carry simulated cycles (cycles_first_in_to_last_out),
    which replace FINN's estimate for that layer; the others keep FINN's (estimate_layer_cycles.json)."""
    from hls.estimates import fabric_timing

    toy_build(tmp_path)
    (tmp_path / "report" / "estimate_layer_cycles.json").write_text(json.dumps(TOY_CYCLES))
    rows = [{"name": "ConvolutionInputGenerator_rtl_0", "cycles": {"cycles_first_in_to_last_out": 150}},
            {"name": "MVAU_hls_0", "cycles": {"cycles_first_in_to_last_out": 400}}, {"name": "Thresholding_rtl_0"}]
    (tmp_path / "report" / "layer_sim.json").write_text(json.dumps({"status": "ok", "layers": rows}))
    t = fabric_timing(tmp_path, 2, 100e6)
    assert t["slowest_cycles"] == 400 and t["layers"]["MVAU_hls_0"]["source"] == "simulated"
    assert (t["layers"]["Thresholding_rtl_0"]["cycles"], t["layers"]["Thresholding_rtl_0"]["source"]) == (64, "FINN estimate")
    # fill: 150 x 15/36 + 400/16 + 64/16 = 62.5 + 25 + 4 = 91.5; 2 tiles of 400 cycles at 100 MHz
    assert t["fill_cycles"] == pytest.approx(91.5)
    assert t["steady_fps"] == pytest.approx(125_000.0)       # 1e8 / (2 x 400)
    assert t["batch_ms"] == pytest.approx(0.008915)          # (91.5 + 800) x 1e-5 ms
    assert "2 of 3 simulated" in t["cycles_source"]


FABRIC = {"steady_fps": 28.0, "batch_ms": 37.6, "tiles": 2}
STAGES_S = {"parse": 0.0002, "rans_z": 0.001, "integer_hs": 0.044, "rans_y": 0.021, "tiles": 0.007, "to_rgb8": 0.005,
            "png": 1.0, "entropy": 0.066}  # png and entropy are not per-frame ARM work: left out


def test_pipeline_rate_models_the_runtimes_schedule():
    """A frame worked out by hand at both ends of the assumed ranges (the assumptions written out here,
    so a changed assumption shows up as this test's failure, not as a silently moved figure)."""
    a = BOARD_ASSUMPTIONS
    assert a["cores"] == 2 and a["cache_line_bytes"] == 32
    assert (a["cache_ns_per_line"], a["ddr_write_mb_s"]) == ([50.0, 100.0], [2100.0, 1000.0])
    assert (a["python_ms_per_frame"], a["restart_ms"]) == ([1.0, 3.0], [0.1, 0.5])
    # slow end: 100 ns a cache line, DDR writes at 1000 MB/s, 3 ms of Python, 0.5 ms restart gap
    #   invalidate 1,572,864 B = 49,152 lines x 100 ns                          = 4.9152 ms
    #   clean        393,216 B = 12,288 lines x 100 ns = 1.2288 ms + 393,216 B / 1e9 B/s = 0.393216 ms
    #                                                                          = 1.622016 ms
    #   stages 0.2 + 1 + 44 + 21 + 7 + 5 = 78.2 ms; work 78.2 + 1.622016 + 4.9152 + 3 = 87.737216 ms
    #   ARM period: work / 2 cores = 43.868608 ms (threads: entropy 0.2 + 1 + 22 + 10.5 = 33.7 ms; main
    #   3.5 + 1.622016; output 4.9152 + 2.5) > fabric 37.6 + 0.5 = 38.1 ms -> 22.7953 fps, ARM-limited
    r = pipeline_rate(STAGES_S, FABRIC, 393216, 1572864, end=1)
    arm = r["arm_ms_per_frame"]
    assert arm["cache_invalidate"] == pytest.approx(4.9152)
    assert arm["cache_clean"] == pytest.approx(1.622016)
    assert arm["total_one_core"] == pytest.approx(87.737216) and arm["period"] == pytest.approx(43.868608)
    assert arm["threads"]["entropy thread (parse, rans_z, integer_hs, rans_y)"] == pytest.approx(33.7)
    assert arm["buffer_set_turnaround"] == pytest.approx(12.537216)  # (4.9152 + 2.5) + (3.5 + 1.622016)
    assert r["board_fps"]["fps"] == pytest.approx(22.795344)
    assert r["board_fps"]["limited_by"] == "ARM" and r["fabric_fps"]["fps"] == 28.0
    # one frame alone: 0.2 + 1 + 22 + 10.5 + 3.5 (shared stages on both cores) + 1.622016 clean + 37.6 batch
    # + 0.5 restart + 4.9152 invalidate + 2.5 image + 3 Python = 87.337216 ms
    assert r["frame_latency_ms"]["ms"] == pytest.approx(87.337216)
    # fast end, stages a quarter as long: ARM (19.55 + 0.80165 + 2.4576 + 1) / 2 = 11.9 ms < fabric 37.6 + 0.1
    # = 37.7 ms -> 26.5252 fps, fabric-limited, below the fabric's steady 28 fps
    fast = pipeline_rate({k: v / 4 for k, v in STAGES_S.items()}, FABRIC, 393216, 1572864, end=0)
    assert fast["arm_ms_per_frame"]["period"] == pytest.approx(11.904623)
    assert fast["board_fps"]["limited_by"] == "fabric"
    assert fast["board_fps"]["fps"] == pytest.approx(26.525199)
    assert fast["board_fps"]["fps"] < FABRIC["steady_fps"]


def test_board_rate_counts_the_batch_not_the_steady_state():
    from hls.estimates import board_rate

    fabric = {**FABRIC, "method": "test"}
    r = board_rate(28.0, {"ARM": 30.0}, "A9-modelled", fabric=fabric)
    # the fabric's 37.6 ms batch + the 0.5 ms restart gap (slow end) = 38.1 ms a frame: 26.2467 fps, not 28
    assert r["limited_by"] == "fabric" and r["fps"] == pytest.approx(26.246719)
    assert "upper bound" in board_rate(28.0, {"ARM": 30.0}, "A9-modelled")["fabric_per_frame"]


def test_board_rate_reports_the_pipeline(shipped_build, tmp_path, monkeypatch):
    """`lic board-rate`'s pipeline section from its stage estimates and the build's fabric timing,
    and the line `make demo` prints from it: the board rate beside, not instead of, the fabric's."""
    from types import SimpleNamespace

    import board.rate as br

    est = json.loads((shipped_build / "estimates.json").read_text())
    package = SimpleNamespace(latent_channels=192, upscale=16)
    fab = br.fabric_inputs(shipped_build, est, package)
    # 2 tiles of 32 x 32 latents x 192 channels, one byte each; out 2 tiles of 512 x 512 RGB bytes
    assert fab["input_bytes"] == 393_216 and fab["output_bytes"] == 1_572_864
    slow = {k: v * 1.5 for k, v in STAGES_S.items()}
    board = {"seconds_model_low": STAGES_S, "seconds_model_high": slow}
    pipeline = br.pipeline_section(board, fab, measured=False)
    assert list(pipeline) == ["modelled, fast end", "modelled, slow end"]
    fast, slower = pipeline["modelled, fast end"]["board_fps"]["fps"], pipeline["modelled, slow end"]["board_fps"]["fps"]
    assert slower < fast <= fab["timing"]["steady_fps"]
    lines = br.pipeline_lines(pipeline, fab["timing"])
    assert "upper bound" in lines[0] and f"{slower:.1f} fps" in lines[2]
    result = {"board": {"model_low": {}, "model_high": {}}, "pipeline": pipeline,
              "fabric_timing": {k: v for k, v in fab["timing"].items() if k != "layers"}}
    monkeypatch.setattr(br, "result_path", lambda board: tmp_path / "board-rate.json")
    (tmp_path / "board-rate.json").write_text(json.dumps(result))
    line = br.report_lines(est["fps_at_frame"])[0]
    assert f"{slower:.1f}-{fast:.1f} fps, estimated" in line and "upper bound" in line


def test_pipeline_rate_counts_the_buffer_sets_turnaround():
    """With two buffer sets, a set's image and its next windows must fit in a period: when the cache
    maintenance of huge buffers dominates, that is the limit, not the ARM's work over its cores."""
    stages = dict.fromkeys(("parse", "rans_z", "integer_hs", "rans_y"), 0.0) | {"tiles": 0.001, "to_rgb8": 0.001}
    r = pipeline_rate(stages, FABRIC, 1 << 20, 32 << 20, end=1)
    arm = r["arm_ms_per_frame"]
    assert arm["buffer_set_turnaround"] > max(arm["period"], 37.6)
    assert r["board_fps"]["fps"] == pytest.approx(1000 / arm["buffer_set_turnaround"])
    assert r["board_fps"]["limited_by"].startswith("buffer sets")
