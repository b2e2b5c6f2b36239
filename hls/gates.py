"""The `make bitstream` gates: what must hold before the build goes on, checked on FINN's own outputs.

  write_verification_io        a real tile's input and the expected output (the Python execution of
                               the HW-layer graph, hw/student_hw.onnx) as FINN's verify_input_npy and
                               verify_expected_output_npy: FINN's verify_step compares them with the
                               stitched-IP RTL simulation (VerificationStepType.STITCHED_IP_RTLSIM)
  step_check_stitched_ip_rtlsim  after step_create_stitched_ip: FINN only logs a failed verification
                               (verify_step writes verification_output/verify_<step>_<i>_{SUCCESS,FAIL}.npy
                               and goes on), so the build stops here on FAIL, or when no result was written
  step_check_timing            after step_synthesize_bitfile: the post-route timing summary that the
                               vivado_zynq flow writes (copy_timing_report: report/post_route_timing.rpt,
                               from finn_zynq_link.runs/impl_1/top_wrapper_timing_summary_routed.rpt);
                               negative setup or hold slack stops the build, naming the clock and the path
  measured_summary             what Vivado and the RTL simulation measured, for estimates.json beside
                               FINN's estimate: rtlsim cycles per tile (report/rtlsim_performance.json),
                               OOC synthesis fmax (report/ooc_synth_and_timing.json), post-route slack
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from lic.errors import LicError

VERIFY_DIR = "verification_io"
RTLSIM_STEP = "stitched_ip_rtlsim"  # the step_name FINN's step_create_stitched_ip verifies under
TIMING_REPORT = "report/post_route_timing.rpt"


def write_verification_io(build, seed: int = 13) -> tuple[Path, Path]:
    """One tile of Laplacian latents (the distribution y_hat has) in the accelerator's layout (NHWC
    INT8 values, batch 1) and what the HW-layer graph computes from it, executed by FINN in Python:
    the graph `make hw` verified against QONNX integer for integer."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    from export.package import laplacian_latents

    hw = ModelWrapper(str(build.out / "hw" / "student_hw.onnx"))
    y = laplacian_latents(build.package.latent_channels, build.tile, build.tile,
                          build.package.manifest["input_bits"], seed=seed).transpose(0, 2, 3, 1).astype(np.float32)
    expected = execute_onnx(hw, {hw.graph.input[0].name: y})[hw.graph.output[0].name]
    folder = build.out / VERIFY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "input.npy", y)
    np.save(folder / "expected_output.npy", expected.astype(np.float32))
    return folder / "input.npy", folder / "expected_output.npy"


def rtlsim_verdict(verification_dir: Path, step: str = RTLSIM_STEP) -> str:
    """'SUCCESS' or 'FAIL' from the files FINN's verify_step writes, one per verification input
    (verify_<step>_<i>_<SUCCESS|FAIL>.npy, or .npz with the full context); 'skipped' when FINN wrote
    its <step>_SKIPPED_*.txt; 'missing' when neither."""
    results = sorted(verification_dir.glob(f"verify_{step}_*_*.np[yz]")) if verification_dir.is_dir() else []
    verdicts = {p.stem.rsplit("_", 1)[-1] for p in results}
    if "FAIL" in verdicts:
        return "FAIL"
    if "SUCCESS" in verdicts:
        return "SUCCESS"
    if verification_dir.is_dir() and any(verification_dir.glob(f"{step}_SKIPPED*")):
        return "skipped"
    return "missing"


def step_check_stitched_ip_rtlsim(model, cfg, b):
    folder = Path(cfg.output_dir) / "verification_output"
    verdict = rtlsim_verdict(folder)
    b.report["stitched_ip_rtlsim"] = verdict
    if verdict != "SUCCESS":
        what = {"FAIL": "differs from the Python execution of the HW-layer graph",
                "skipped": "was skipped by FINN (see the *_SKIPPED_*.txt there)",
                "missing": "wrote no result"}[verdict]
        raise LicError(f"stitched-IP RTL simulation {what} on the verification tile ({folder}); the bitfile "
                       f"would not compute what `make hw` verified")
    return model


# ---------------------------------------------------------------------------------------------
# Vivado's report_timing_summary


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf  # "inf" (no constrained paths) or "NA"


def _section(text: str, title: str) -> str:
    """The body of a `| Title` section of a Vivado report, up to the next section header."""
    m = re.search(r"^\| %s\s*\n\| -+\s*\n-+\s*\n(.*?)(?=^-{20,}\s*\n\| |\Z)" % re.escape(title), text, re.M | re.S)
    return m.group(1) if m else ""


def _table_rows(body: str) -> list[list[str]]:
    """Rows below the dashed rule of the first table in a section body."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("---"):
            rows = []
            for row in lines[i + 1:]:
                if not row.strip():
                    break
                rows.append(row.split())
            return rows
    return []


def parse_timing_summary(text: str) -> dict:
    """Vivado's report_timing_summary: design WNS/TNS/WHS/THS/WPWS (ns), per-clock WNS/WHS and
    period, and the worst setup path (slack, clock, source, destination, logic levels)."""
    design = _table_rows(_section(text, "Design Timing Summary"))
    if not design:
        raise LicError("not a Vivado timing summary: no 'Design Timing Summary' table")
    v = design[0]
    summary = {"wns_ns": _number(v[0]), "tns_ns": _number(v[1]), "tns_failing_endpoints": int(v[2]),
               "whs_ns": _number(v[4]), "ths_ns": _number(v[5]), "ths_failing_endpoints": int(v[6]),
               "wpws_ns": _number(v[8])}
    periods = {r[0]: float(r[-2]) for r in _table_rows(_section(text, "Clock Summary")) if len(r) >= 4}
    clocks = {r[0]: {"wns_ns": _number(r[1]), "whs_ns": _number(r[5]) if len(r) > 5 else math.inf,
                     "period_ns": periods.get(r[0])}
              for r in _table_rows(_section(text, "Intra Clock Table")) if len(r) >= 2}
    paths = []
    for m in re.finditer(r"^Slack \((VIOLATED|MET)\) :\s+(-?[\d.]+)ns.*?\n(.*?)(?=^Slack \(|\Z)", text, re.M | re.S):
        body = m.group(3)

        def field(name, body=body):
            f = re.search(r"^\s+%s:\s+(\S+)" % re.escape(name), body, re.M)
            return f.group(1) if f else None

        path_type = field("Path Type") or ""
        levels = re.search(r"^\s+Logic Levels:\s+(\d+)", body, re.M)
        paths.append({"slack_ns": float(m.group(2)), "clock": field("Path Group"), "source": field("Source"),
                      "destination": field("Destination"), "type": path_type,
                      "logic_levels": int(levels.group(1)) if levels else None})
    setup = [p for p in paths if p["type"].startswith("Setup")]
    hold = [p for p in paths if p["type"].startswith("Hold")]
    summary["clocks"] = clocks
    summary["worst_setup_path"] = min(setup, key=lambda p: p["slack_ns"]) if setup else None
    summary["worst_hold_path"] = min(hold, key=lambda p: p["slack_ns"]) if hold else None
    # "inf" slack means no constrained paths: nothing was checked, which is no pass
    summary["met"] = math.isfinite(summary["wns_ns"]) and min(summary["wns_ns"], summary["whs_ns"],
                                                              summary["wpws_ns"]) >= 0
    return summary


def timing_failure(summary: dict) -> str | None:
    """One line naming the failing check, its clock and worst path; None when timing is met."""
    if summary["met"]:
        return None
    if not math.isfinite(summary["wns_ns"]):
        return "no constrained paths in the timing summary"
    kind, slack, key = (("setup", summary["wns_ns"], "worst_setup_path") if summary["wns_ns"] < 0 else
                        ("hold", summary["whs_ns"], "worst_hold_path") if summary["whs_ns"] < 0 else
                        ("pulse width", summary["wpws_ns"], None))
    path = summary.get(key) if key else None
    clock = path["clock"] if path else next((c for c, v in summary["clocks"].items()
                                             if min(v["wns_ns"], v["whs_ns"]) < 0), "?")
    period = summary["clocks"].get(clock, {}).get("period_ns")
    line = f"{kind} slack {slack:.3f} ns on clock {clock}" + (f" (period {period:g} ns)" if period else "")
    if path:
        line += (f", worst path {path['source']} -> {path['destination']}"
                 + (f" ({path['logic_levels']} logic levels)" if path["logic_levels"] is not None else ""))
    return line


def step_check_timing(model, cfg, b):
    report = Path(cfg.output_dir) / TIMING_REPORT
    if not report.is_file():
        raise LicError(f"FINN's synthesis wrote no post-route timing report ({report})")
    summary = parse_timing_summary(report.read_text(errors="replace"))
    b.report["timing"] = summary
    failure = timing_failure(summary)
    if failure:
        raise LicError(f"post-route timing not met: {failure} ({report}); fold for fewer fps or raise clock_ns "
                       "in board.json, then make bitstream again")
    return model


# ---------------------------------------------------------------------------------------------


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def measured_summary(out: Path, clock_hz: float, tiles_per_frame: int, estimated_cycles: int,
                     timing: dict | None = None) -> dict | None:
    """What the bitstream build measured, beside FINN's estimate: the stitched IP's cycles per tile
    in RTL simulation (the slowest node's interval, from FINN's rtlsim_performance.json), out-of-
    context synthesis (fmax), post-route slack. None when no such build ran."""
    rtlsim = _read(out / "report" / "rtlsim_performance.json")
    ooc = _read(out / "report" / "ooc_synth_and_timing.json")
    if timing is None and (out / TIMING_REPORT).is_file():
        timing = parse_timing_summary((out / TIMING_REPORT).read_text(errors="replace"))
    if not (rtlsim or ooc or timing):
        return None
    found: dict = {}
    if rtlsim:
        intervals = [(e["intervals"][0], e.get("name")) for e in rtlsim if e.get("intervals")]
        if intervals:
            cycles, node = max(intervals)
            found["rtlsim"] = {"cycles_per_tile": int(cycles), "slowest_node": node,
                               "fps_at_frame": clock_hz / (cycles * tiles_per_frame),
                               "finn_estimate_cycles_per_tile": estimated_cycles,
                               "what": "stitched-IP RTL simulation (FINN's step_measure_rtlsim_performance): "
                                       "steady-state interval of the slowest node, at the target clock"}
    if ooc:
        found["ooc_synthesis"] = {k: ooc[k] for k in ooc if k in ("fmax_mhz", "estimated_throughput_fps", "LUT",
                                                                      "BRAM", "BRAM_18K", "DSP", "FF", "URAM")}
    if timing:
        found["post_route_timing"] = {k: timing[k] for k in ("met", "wns_ns", "whs_ns", "tns_failing_endpoints")}
    return found
