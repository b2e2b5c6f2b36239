"""C++ simulation of the specialised HLS layers, when the HLS libraries are on this machine.

cppsim compiles each layer with g++ against finn-hlslib and the Vitis HLS headers (ap_int.h,
hls_stream.h). `finn deps update` fetches finn-hlslib; the headers ship with Vitis HLS. Neither is
here by default, so this step reports "skipped" with what to install; with them it executes the
partition in cppsim and compares with the Python execution of the HW-layer graph.
"""

from __future__ import annotations

import os
from pathlib import Path



def _hls_include() -> Path | None:
    for var in ("XILINX_HLS", "XILINX_VITIS_HLS", "VITIS_HLS_ROOT"):
        root = os.environ.get(var)
        if root and (Path(root) / "include" / "ap_int.h").is_file():
            return Path(root) / "include"
    return None


def _hlslib() -> Path | None:
    deps = os.environ.get("FINN_DEPS")
    for cand in ([Path(deps) / "finn-hlslib"] if deps else []) + [Path(__file__).resolve().parent.parent
                                                                  / "build" / "deps" / "finn-hlslib"]:
        if (cand / "mvau.hpp").is_file():
            return cand
    return None


def run_cppsim(model, build) -> dict:
    hlslib, include = _hlslib(), _hls_include()
    if hlslib is None or include is None:
        missing = [n for n, p in (("finn-hlslib (FINN_DEPS/finn-hlslib, from `finn deps update`)", hlslib),
                                  ("Vitis HLS headers (XILINX_HLS/include/ap_int.h)", include)) if p is None]
        msg = "cppsim skipped: missing " + " and ".join(missing)
        print(msg)
        return {"status": "skipped", "reason": msg}
    from finn.core.onnx_exec import execute_onnx
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.core.modelwrapper import ModelWrapper

    from export.package import laplacian_latents

    sim = model.transform(PrepareCppSim()).transform(CompileCppSim()).transform(SetExecMode("cppsim"))
    y = laplacian_latents(build.package.latent_channels, build.tile, build.tile,
                          build.package.manifest["input_bits"], seed=11).transpose(0, 2, 3, 1)
    ref_model = ModelWrapper(str(build.out / "hw" / "student_hw.onnx"))
    ref = execute_onnx(ref_model, {ref_model.graph.input[0].name: y})[ref_model.graph.output[0].name]
    out = execute_onnx(sim, {sim.graph.input[0].name: y})[sim.graph.output[0].name]
    mismatches = int((out.reshape(ref.shape) != ref).sum())
    return {"status": "ok" if mismatches == 0 else "mismatch", "mismatches": mismatches}
