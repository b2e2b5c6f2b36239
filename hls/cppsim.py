"""C++ simulation (cppsim) of FINN's HLS layers, compiled with g++ here.

FINN writes each HLS layer's cppsim program (PrepareCppSim: execute_<op>.cpp and the layer's
parameters, e.g. the weights as input_1.npy). FINN's CompileCppSim links Vitis HLS's own libraries,
so the program is compiled here with g++ against:

  finn-hlslib   FINN_DEPS/finn-hlslib (`finn deps update`), else the vendored copy
  ap types      Vitis HLS's include folder (XILINX_HLS/include), else the open-source ap_int/ap_fixed
  npy2stream    FINN's own templates (cnpy, npy2apintstream)
  sim_shims     hls/sim_shims: the Vitis-only headers (hls_stream.h, ...), last on the include path,
                so that real ones, where present, are used instead

The vendored sources are found in LIC_HLS_VENDOR, else shared/vendor beside the repository
(REPO/../shared/vendor, how CI checks it out), see /work/shared/vendor/README.md.

The program reads its input and weights from the folder it runs in (FINN's generated absolute paths
are made relative), so one compiled program serves any build of the same layer: programs are
cached by a hash of their source, include folders and flags.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from hls.sim_cache import cached_build
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
SHIMS = Path(__file__).resolve().parent / "sim_shims"
VENDOR_ENV = "LIC_HLS_VENDOR"
CXXFLAGS = ["-std=c++17", "-O2"]
# HLS functions that a layer's generated code calls and older finn-hlslib lacks: without them the
# layer is verified at the Python level only (no other implementation is put in their place).
NEEDS = {"UpsampleNearestNeighbour_hls": ("upsample.hpp", "upsample_nn")}


def vendor_dir() -> Path:
    return Path(os.environ.get(VENDOR_ENV) or REPO.parent / "shared" / "vendor")


def _finn_deps() -> Path | None:
    try:  # where `finn deps` puts its checkouts, once hls/preflight.py knows
        from hls.preflight import finn_deps_dir

        return finn_deps_dir()
    except ImportError:
        deps = os.environ.get("FINN_DEPS")
        return Path(deps) if deps else None


def locate() -> dict:
    """Each include folder cppsim needs: {"finn-hlslib": (path or None, where from), "ap types": ...}."""
    deps = _finn_deps()
    hlslib = next(((p, s) for p, s in ((deps / "finn-hlslib" if deps else None, "finn deps"),
                                        (vendor_dir() / "finn-hlslib", "vendored"))
                   if p is not None and (p / "mvau.hpp").is_file()), (None, None))
    vitis = next((Path(os.environ[v]) / "include" for v in ("XILINX_HLS", "XILINX_VITIS_HLS", "VITIS_HLS_ROOT")
                  if os.environ.get(v) and (Path(os.environ[v]) / "include" / "ap_int.h").is_file()), None)
    vendored = vendor_dir() / "hls-ap-types" / "include"
    ap = (vitis, "Vitis HLS") if vitis else \
        (vendored, "vendored open-source") if (vendored / "ap_int.h").is_file() else (None, None)
    return {"finn-hlslib": hlslib, "ap types": ap}


def missing() -> str | None:
    found = locate()
    gone = [k for k, (p, _) in found.items() if p is None]
    if gone:
        return (f"cppsim missing {' and '.join(gone)}: neither FINN_DEPS (`finn deps update`) / XILINX_HLS nor the "
                f"vendored copies in {vendor_dir()} (set {VENDOR_ENV})")
    if shutil.which("g++") is None:
        return "cppsim missing g++"
    return None


def _include_flags() -> list[str]:
    from finn.templates import get_templates_folder

    found = locate()
    flags = [f"-I{Path(get_templates_folder()) / 'npy2stream'}", f"-I{found['finn-hlslib'][0]}",
             f"-I{found['ap types'][0]}", f"-I{SHIMS}"]
    if found["ap types"][1] != "Vitis HLS":
        flags += ["-include", str(SHIMS / "cnpy_half.h")]
    return flags


def unsupported(inst) -> str | None:
    """Why this HLS layer cannot be compiled against the finn-hlslib found here, or None."""
    need = NEEDS.get(inst.onnx_node.op_type)
    if need is None:
        return None
    header, func = need
    hlslib, source = locate()["finn-hlslib"]
    if hlslib is not None and func in (hlslib / header).read_text():
        return None
    return (f"{inst.onnx_node.op_type} calls {func}, which this finn-hlslib ({source}: {hlslib}) does not have "
            f"(finn-plus pins a newer one)")


def prepare(inst, model) -> Path:
    """FINN's own cppsim code generation for this node (PrepareCppSim's per-node step), once: the
    program and its parameter files, once written, are what gets simulated."""
    from finn.transformation.fpgadataflow.prepare_cppsim import _codegen_single_node

    done = inst.get_nodeattr("code_gen_dir_cppsim")
    if not (done and (Path(done) / f"execute_{inst.onnx_node.op_type}.cpp").is_file()):
        _codegen_single_node(inst.onnx_node, model)
    return Path(inst.get_nodeattr("code_gen_dir_cppsim"))


def build(inst, cache: Path) -> tuple[Path, float, bool]:
    """(the compiled cppsim program of the prepared node, seconds compiling, whether cached)."""
    from finn.templates import get_templates_folder

    code_dir = Path(inst.get_nodeattr("code_gen_dir_cppsim"))
    src = (code_dir / f"execute_{inst.onnx_node.op_type}.cpp").read_text().replace(str(code_dir) + "/", "")
    cnpy = Path(get_templates_folder()) / "npy2stream" / "cnpy.cpp"
    flags = _include_flags()
    key = hashlib.sha256("\0".join([src, cnpy.read_text(), *flags, *CXXFLAGS]).encode()).hexdigest()[:20]

    def compile_node(work: Path) -> None:
        (work / "execute.cpp").write_text(src)
        r = subprocess.run(["g++", *CXXFLAGS, *flags, "execute.cpp", str(cnpy), "-lz", "-o", "node_model"], cwd=work,
                           capture_output=True, text=True)
        if r.returncode != 0:
            err = next((ln for ln in r.stderr.splitlines() if "error" in ln), r.stderr.strip()[-300:])
            raise LicError(f"{inst.onnx_node.name}: cppsim did not compile: {err}")

    return cached_build(cache, key, "node_model", compile_node)


def run(inst, exe: Path, x: np.ndarray, work: Path, params: dict | None = None) -> tuple[np.ndarray, float]:
    """The layer's output for input x (normal shape), as FINN's cppsim execution computes it, except
    that the layer's parameters are the generated files (input_1.npy: the weights), not re-written
    from the model as FINN's execute_node does; params: {file name: array} in place of a generated
    file (an internal_decoupled MVAU's input_1.npy: the weight stream it reads, numReps times)."""
    work.mkdir(parents=True, exist_ok=True)
    code_dir = Path(inst.get_nodeattr("code_gen_dir_cppsim"))
    for f in code_dir.glob("input_[1-9].npy"):
        shutil.copyfile(f, work / f.name)
    for name, value in (params or {}).items():
        np.save(work / name, np.asarray(value, np.float32))
    np.save(work / "input_0.npy", x.reshape(inst.get_folded_input_shape(0)).astype(np.float32))
    (work / "output_0.npy").unlink(missing_ok=True)
    t0 = time.time()
    r = subprocess.run([str(exe)], cwd=work, capture_output=True, text=True)
    seconds = time.time() - t0
    if r.returncode != 0 or not (work / "output_0.npy").is_file():
        why = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        raise LicError(f"{inst.onnx_node.name}: cppsim failed ({why})")
    return np.load(work / "output_0.npy").reshape(inst.get_normal_output_shape(0)).astype(np.float32), seconds
