"""hls/gates.py without Vivado: the post-route timing parser on report_timing_summary text (fixtures in
tests/fixtures/vivado/, written in the layout of Vivado's routed timing summary, which FINN's vivado_zynq
flow copies to report/post_route_timing.rpt), the stitched-IP rtlsim verdict read from the files FINN's
verify_step writes, and the measured numbers that go into estimates.json. The verification input and
expected output go through FINN's own verify_step in tests/test_hw_build.py."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hls.gates import (measured_summary, parse_timing_summary, rtlsim_verdict, step_check_stitched_ip_rtlsim,
                       step_check_timing, timing_failure)
from lic.errors import LicError

FIXTURES = Path(__file__).parent / "fixtures" / "vivado"


def _out_with_report(tmp_path, name):
    (tmp_path / "report").mkdir(exist_ok=True)
    (tmp_path / "report" / "post_route_timing.rpt").write_text((FIXTURES / name).read_text())
    return SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(report={})


def test_timing_violation_names_clock_and_worst_path(tmp_path):
    s = parse_timing_summary((FIXTURES / "post_route_timing_violated.rpt").read_text())
    assert s["wns_ns"] == -0.412 and s["tns_failing_endpoints"] == 87 and s["whs_ns"] == 0.018 and not s["met"]
    assert s["clocks"] == {"clk_fpga_0": {"wns_ns": -0.412, "whs_ns": 0.018, "period_ns": 10.0}}
    worst = s["worst_setup_path"]
    assert worst["slack_ns"] == -0.412 and worst["logic_levels"] == 14 and worst["clock"] == "clk_fpga_0"
    assert worst["destination"].endswith("accu_V_15_fu_412_reg[17]/D") and "MVAU_hls_1" in worst["source"]
    cfg, b = _out_with_report(tmp_path, "post_route_timing_violated.rpt")
    with pytest.raises(LicError) as e:
        step_check_timing("model", cfg, b)
    msg = str(e.value)
    assert "setup slack -0.412 ns on clock clk_fpga_0 (period 10 ns)" in msg and "accu_V_15_fu_412_reg[17]/D" in msg
    assert "\n" not in msg and b.report["timing"]["met"] is False


def test_timing_met_passes(tmp_path):
    cfg, b = _out_with_report(tmp_path, "post_route_timing_met.rpt")
    assert step_check_timing("model", cfg, b) == "model"
    assert b.report["timing"]["wns_ns"] == 0.214 and b.report["timing"]["met"]


def test_hold_violation_and_unconstrained_design_stop():
    text = (FIXTURES / "post_route_timing_met.rpt").read_text()
    hold = text.replace("      0.214        0.000                      0                91234        0.018",
                        "      0.214        0.000                      0                91234       -0.051") \
        .replace("Slack (MET) :             0.018ns", "Slack (VIOLATED) :        -0.051ns")
    assert timing_failure(parse_timing_summary(hold)).startswith("hold slack -0.051 ns on clock clk_fpga_0")
    none = text.replace("      0.214        0.000                      0                91234        0.018",
                        "        inf        0.000                      0                    0          inf")
    s = parse_timing_summary(none)
    assert s["wns_ns"] == math.inf and not s["met"] and "no constrained paths" in timing_failure(s)
    with pytest.raises(LicError, match="not a Vivado timing summary"):
        parse_timing_summary("Copyright 1986-2022 Xilinx\n| Design : top\n")


def test_missing_timing_report_stops(tmp_path):
    with pytest.raises(LicError, match="no post-route timing report"):
        step_check_timing("model", SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(report={}))


def test_rtlsim_verdict_from_finns_files(tmp_path):
    folder = tmp_path / "verification_output"
    cfg, b = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(report={})
    assert rtlsim_verdict(folder) == "missing"
    with pytest.raises(LicError, match="wrote no result"):
        step_check_stitched_ip_rtlsim("model", cfg, b)
    folder.mkdir()
    np.save(folder / "verify_stitched_ip_rtlsim_0_SUCCESS.npy", np.zeros(2))
    assert step_check_stitched_ip_rtlsim("model", cfg, b) == "model" and b.report["stitched_ip_rtlsim"] == "SUCCESS"
    np.save(folder / "verify_stitched_ip_rtlsim_1_FAIL.npy", np.zeros(2))
    with pytest.raises(LicError, match="differs from the Python execution"):
        step_check_stitched_ip_rtlsim("model", cfg, b)
    skipped = tmp_path / "s"
    skipped.mkdir()
    (skipped / "stitched_ip_rtlsim_SKIPPED_DSP_CONFLICT.txt").write_text("skipped")
    assert rtlsim_verdict(skipped) == "skipped"


def test_measured_numbers_beside_finns_estimate(tmp_path):
    assert measured_summary(tmp_path, 1e8, 2, 1_783_104) is None
    (tmp_path / "report").mkdir()
    # the layout of FINN's step_measure_rtlsim_performance output: one entry per node with samples
    (tmp_path / "report" / "rtlsim_performance.json").write_text(json.dumps([
        {"name": "MVAU_rtl_0", "cycles": 9_000_000, "samples": 4, "intervals": [1_790_000, 1_790_000],
         "latency_cycles": [2_400_000], "throughput_fps": 55.9},
        {"name": "MVAU_hls_1", "cycles": 9_100_000, "samples": 4, "intervals": [1_812_345], "latency_cycles": [],
         "throughput_fps": 55.2}]))
    (tmp_path / "report" / "ooc_synth_and_timing.json").write_text(json.dumps(
        {"vivado_proj_folder": "/x", "LUT": 38000.0, "BRAM_18K": 240.0, "DSP": 192.0, "fmax_mhz": 112.4,
         "estimated_throughput_fps": 63.0}))
    (tmp_path / "report" / "post_route_timing.rpt").write_text((FIXTURES / "post_route_timing_met.rpt").read_text())
    m = measured_summary(tmp_path, 1e8, 2, 1_783_104)
    assert m["rtlsim"]["cycles_per_tile"] == 1_812_345 and m["rtlsim"]["slowest_node"] == "MVAU_hls_1"
    assert m["rtlsim"]["fps_at_frame"] == pytest.approx(1e8 / (1_812_345 * 2))
    assert m["rtlsim"]["finn_estimate_cycles_per_tile"] == 1_783_104
    assert m["ooc_synthesis"]["fmax_mhz"] == 112.4 and "vivado_proj_folder" not in m["ooc_synthesis"]
    assert m["post_route_timing"] == {"met": True, "wns_ns": 0.214, "whs_ns": 0.018, "tns_failing_endpoints": 0}
