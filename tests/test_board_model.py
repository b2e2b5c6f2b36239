"""The board-rate model (hls/estimates.py fabric_timing, pipeline_rate): the three rates kept apart,
the fabric's batch with its fill, FINN's summed latency as an upper bound, simulated cycles used
where report/layer_sim.json has them, and the runtime's schedule in the arithmetic."""

import json
import shutil

import pytest

from conftest import REPO
from hls.estimates import BOARD_ASSUMPTIONS, pipeline_rate

SHIPPED_BUILD = REPO / "fpga_projects" / "pynq-z2" / "build"


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
    # a build whose layers were simulated (make hw) takes Verilator's cycles, within 0.1% of FINN's
    assert t["steady_fps"] == pytest.approx(est["fps_at_frame"], rel=1e-3)
    assert t["slowest_cycles"] == pytest.approx(perf["max_cycles"], rel=1e-3)
    # FINN's latency is the sum of every layer's cycles: ours is between one slowest layer and that sum
    assert t["finn_latency_upper_bound_ms"] == pytest.approx(perf["critical_path_cycles"] / est["clock_mhz"] / 1e3, rel=1e-3)
    assert t["slowest_cycles"] / est["clock_mhz"] / 1e3 < t["tile_latency_ms"] < t["finn_latency_upper_bound_ms"] / 5
    assert t["batch_ms"] == pytest.approx((t["fill_cycles"] + n * t["slowest_cycles"]) / est["clock_mhz"] / 1e3)
    assert 1000 / t["batch_ms"] < t["steady_fps"]  # a batch per frame pays its fill
    swg = [v for k, v in t["layers"].items() if k.startswith("ConvolutionInputGenerator")]
    assert swg and all("window" in v["first_output_from"] for v in swg)
    assert "FINN's estimate" in t["cycles_source"] and "upper bound" in t["method"]


def test_fabric_timing_takes_simulated_cycles(shipped_build, tmp_path):
    from hls.estimates import fabric_timing

    for sub in ("report", "intermediate_models"):
        (tmp_path / sub).mkdir()
    for f in ("estimate_layer_cycles.json", "estimate_network_performance.json"):
        shutil.copy(shipped_build / "report" / f, tmp_path / "report" / f)
    shutil.copy(shipped_build / "intermediate_models" / "step_generate_estimate_reports.onnx", tmp_path / "intermediate_models")
    layers = json.loads((tmp_path / "report" / "estimate_layer_cycles.json").read_text())
    slow = max(layers, key=layers.get)
    # hls/layer_sim.py's report: Verilator layers carry simulated cycles, the others none
    rows = [{"name": k, "cycles": {"cycles_first_in_to_last_out": int(v * 1.1)}} if k == slow else {"name": k}
            for k, v in layers.items()]
    (tmp_path / "report" / "layer_sim.json").write_text(json.dumps({"status": "ok", "layers": rows}))
    t = fabric_timing(tmp_path, 2, 100e6)
    assert t["slowest_cycles"] == int(layers[slow] * 1.1) and t["layers"][slow]["source"] == "simulated"
    assert f"1 of {len(layers)} simulated" in t["cycles_source"]


FABRIC = {"steady_fps": 28.0, "batch_ms": 37.6, "tiles": 2}
STAGES_S = {"parse": 0.0002, "rans_z": 0.001, "integer_hs": 0.044, "rans_y": 0.021, "tiles": 0.007, "to_rgb8": 0.005,
            "png": 1.0, "entropy": 0.066}  # png and entropy are not per-frame ARM work: left out


def test_pipeline_rate_models_the_runtimes_schedule():
    a = BOARD_ASSUMPTIONS
    r = pipeline_rate(STAGES_S, FABRIC, 393216, 1572864, end=1)
    arm = r["arm_ms_per_frame"]
    ns = a["cache_ns_per_line"][1]
    assert arm["cache_invalidate"] == pytest.approx(1572864 / 32 * ns * 1e-6)
    assert arm["cache_clean"] == pytest.approx(393216 / 32 * ns * 1e-6 + 393216 / (a["ddr_write_mb_s"][1] * 1e3))
    work = 1e3 * sum(STAGES_S[k] for k in ("parse", "rans_z", "integer_hs", "rans_y", "tiles", "to_rgb8")) \
        + arm["cache_clean"] + arm["cache_invalidate"] + a["python_ms_per_frame"][1]
    assert arm["total_one_core"] == pytest.approx(work) and arm["period"] == pytest.approx(work / 2)
    assert r["board_fps"]["fps"] == pytest.approx(1000 / max(work / 2, 37.6 + a["restart_ms"][1]))
    assert r["board_fps"]["limited_by"] == "ARM" and r["fabric_fps"]["fps"] == 28.0
    # one frame alone: everything in turn, the shared stages on both cores, the fabric's whole batch
    assert r["frame_latency_ms"]["ms"] == pytest.approx(
        0.2 + 1 + (44 + 21 + 7) / 2 + arm["cache_clean"] + 37.6 + a["restart_ms"][1] + arm["cache_invalidate"] + 5 / 2
        + a["python_ms_per_frame"][1])
    fast = pipeline_rate({k: v / 4 for k, v in STAGES_S.items()}, FABRIC, 393216, 1572864, end=0)
    assert fast["board_fps"]["limited_by"] == "fabric"
    assert fast["board_fps"]["fps"] == pytest.approx(1000 / (37.6 + a["restart_ms"][0]))
    assert fast["board_fps"]["fps"] < FABRIC["steady_fps"]


def test_board_rate_counts_the_batch_not_the_steady_state():
    from hls.estimates import board_rate

    fabric = {**FABRIC, "method": "test"}
    r = board_rate(28.0, {"ARM": 30.0}, "A9-modelled", fabric=fabric)
    assert r["limited_by"] == "fabric" and r["fps"] == pytest.approx(1000 / (37.6 + BOARD_ASSUMPTIONS["restart_ms"][1]))
    assert "upper bound" in board_rate(28.0, {"ARM": 30.0}, "A9-modelled")["fabric_per_frame"]


def test_board_rate_reports_the_pipeline(shipped_build, tmp_path, monkeypatch):
    """`lic board-rate`'s pipeline section from its stage estimates and the build's fabric timing,
    and the line `make demo` prints from it: the board rate beside, not instead of, the fabric's."""
    from types import SimpleNamespace

    import board.rate as br

    est = json.loads((shipped_build / "estimates.json").read_text())
    package = SimpleNamespace(latent_channels=192, upscale=16)
    fab = br.fabric_inputs(shipped_build, est, package)
    assert fab["input_bytes"] == est["tiles_per_frame"] * est["tile"] ** 2 * 192
    assert fab["output_bytes"] == est["tiles_per_frame"] * (est["tile"] * 16) ** 2 * 3
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
