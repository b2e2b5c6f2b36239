"""Every layer of the accelerator simulated at its own source level, on a real tile, as a gate.

  HLS layers  cppsim: FINN's generated C++ compiled with g++ (hls/cppsim.py)
  RTL layers  Verilator: FINN's generated wrapper and finn-rtllib's SystemVerilog (hls/verilator_sim.py)

Each layer gets the previous simulated layer's output (the first, a y_hat tile); its output must
equal the Python execution of the same layer on the same input (FINN's own execute_node of the
layer's op, e.g. MVAU's), integer for integer, or the build stops naming the layer and the first
differing element. The chain's last output must then equal the Python execution of the whole
HW-layer graph (hw/student_hw.onnx, checked against QONNX by step_verify_hw_graph) on the tile.

A layer that cannot be simulated here is executed in Python, and the report says why: the Upsample
layers call finn-hlslib's upsample_nn, which the vendored finn-hlslib lacks; where finn-hlslib, the
ap types or Verilator are missing, their layers are skipped the same way (level "python-only").

The tile: y_hat = round(g_a(x)) of a Kodak image by the package's own teacher, clipped to the
student's input range, a tile x tile crop from its middle; synthetic Laplacian latents only when the
images or the teacher are not on this machine (the report says which).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hls import cppsim, verilator_sim
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
KODAK = REPO.parent / "shared" / "data" / "kodak"
TILE_IMAGE = "kodim23.png"
REPORT = "report/layer_sim.json"
SKIP_ENV = "LIC_SIMULATE_LAYERS"  # "0": the step only writes that it was skipped (`make hw` keeps it on)
SIM_DIR = "layer_sim"  # compiled models (cache/) and per-layer run folders, inside the build


def real_tile(package, tile: int) -> tuple[np.ndarray, str]:
    """(1 x C x tile x tile y_hat as float32, where it came from)."""
    from export.package import laplacian_latents

    bits = package.manifest["input_bits"]
    image = KODAK / TILE_IMAGE
    if not image.is_file():
        return laplacian_latents(package.latent_channels, tile, tile, bits, seed=11), \
            f"synthetic Laplacian latents (seed 11): {image} not found"
    import torch

    from host.image_io import load_rgb
    from training.teacher import load_default, load_tuned_default
    from training.teacher_codec import pad_replicate, to_tensor

    m = package.manifest
    try:
        teacher = (load_tuned_default if m.get("teacher", "").endswith("-tuned") else load_default)(m["quality"])
    except LicError as e:
        return laplacian_latents(package.latent_channels, tile, tile, bits, seed=11), \
            f"synthetic Laplacian latents (seed 11): no teacher ({e})"
    rgb, _ = load_rgb(image)
    with torch.inference_mode():
        y = torch.round(teacher.model.g_a(pad_replicate(to_tensor(rgb)))).numpy()
    lim = 2 ** (bits - 1)
    h, w = y.shape[-2:]
    if min(h, w) < tile:
        raise LicError(f"{image.name} gives a {h}x{w} latent, smaller than the {tile}x{tile} tile")
    r, c = (h - tile) // 2, (w - tile) // 2
    crop = np.clip(y[:, :, r:r + tile, c:c + tile], -lim, lim - 1).astype(np.float32)
    return crop, (f"y_hat of Kodak {image.name} by teacher {teacher.name} (g_a, rounded, clipped to INT{bits}), "
                  f"latent rows {r}-{r + tile - 1}, columns {c}-{c + tile - 1} of {h}x{w}")


def python_layer(inst, model, x: np.ndarray, params: dict | None = None) -> np.ndarray:
    """The layer's op executed in Python by FINN (the execute_node of MVAU, Thresholding, ... that its
    HLS/RTL specialisation inherits), on input x, with the model's parameters (or, by input name,
    those of params: another rate point's weights or thresholds)."""
    node = inst.onnx_node
    base = next(c for c in type(inst).__mro__ if c.__name__ == node.op_type.rsplit("_", 1)[0])
    ctx = {node.input[0]: x.astype(np.float32)}
    for name in node.input[1:]:
        ctx[name] = np.asarray(params[name], np.float32) if params and name in params else model.get_initializer(name)
    ctx[node.output[0]] = np.zeros(inst.get_normal_output_shape(0), np.float32)
    base.execute_node(inst, ctx, model.graph)
    return ctx[node.output[0]].reshape(inst.get_normal_output_shape(0))


def first_difference(name: str, level: str, ref: np.ndarray, got: np.ndarray,
                     against: str = "its Python execution") -> str | None:
    """None where `got` equals `ref` value for value; else one line naming the layer, how many values
    differ and the first of them."""
    if got.shape != ref.shape:
        return f"{name} ({level}) gives shape {got.shape}, {against} {ref.shape}"
    bad = np.flatnonzero(got.reshape(-1) != ref.reshape(-1))
    if not len(bad):
        return None
    i = np.unravel_index(bad[0], ref.shape)
    return (f"{name} ({level}) differs from {against} in {len(bad)} of {ref.size} values; first at "
            f"index {tuple(int(v) for v in i)}: expected {int(ref[i])}, got {int(got[i])}")


def _level(inst, tools: dict) -> tuple[str, str | None]:
    """(cppsim / verilator / python-only, why python-only)."""
    kind = inst.onnx_node.op_type
    if kind.endswith("_hls"):
        why = tools["cppsim"] or cppsim.unsupported(inst)
        return ("python-only", why) if why else ("cppsim", None)
    if kind in verilator_sim.RTL_KINDS:
        return ("python-only", tools["verilator"]) if tools["verilator"] else ("verilator", None)
    return "python-only", f"no simulator for {kind} here"


def compile_layer(inst, model, level: str, folder: Path) -> tuple[Path, dict]:
    """The layer's simulation program (cppsim: FINN's generated C++; verilator: its wrapper, linted
    first), built or from the cache, and what the report records about it."""
    row: dict = {}
    if level == "cppsim":
        cppsim.prepare(inst, model)
        exe, seconds, row["cached"] = cppsim.build(inst, folder / "cache" / "cppsim")
    else:
        row["lint"] = verilator_sim.lint(inst, folder / "cache" / "conformed")
        if row["lint"]["errors"]:
            raise LicError(f"{inst.onnx_node.name}: Verilator lint error in its generated wrapper or sources: "
                           f"{row['lint']['first_error']}")
        exe, seconds, row["cached"] = verilator_sim.build(inst, folder / "cache" / "verilator")
    row["compile_seconds"] = round(seconds, 1)
    return exe, row


def gate_layer(inst, model, x: np.ndarray, level: str, folder: Path, compiled=None) -> tuple[np.ndarray, dict]:
    """Simulate one layer on input x at `level` (cppsim / verilator): its output, equal to its Python
    execution on x or LicError naming the layer and the first differing element; and its report row.
    compiled: compile_layer's result when it was built ahead."""
    name = inst.onnx_node.name
    exe, row = compiled or compile_layer(inst, model, level, folder)
    row = dict(row)
    if level == "cppsim":
        got, seconds = cppsim.run(inst, exe, x, folder / "run" / name)
    else:
        got, stats = verilator_sim.run(inst, exe, x, folder / "run" / name)
        seconds = stats.pop("seconds")
        row["cycles"] = stats
    row["sim_seconds"] = round(seconds, 2)
    diff = first_difference(name, level, python_layer(inst, model, x), got)
    if diff:
        raise LicError(diff)
    shutil.rmtree(folder / "run" / name, ignore_errors=True)  # kept only when it differs
    row["bit_exact"] = True
    return got, row


def switched_off(enabled: bool) -> str | None:
    """Why the simulation gates are off (`lic hw --no-simulate`, LIC_SIMULATE_LAYERS=0), or None."""
    if not enabled:
        return "--no-simulate"
    return f"{SKIP_ENV}=0" if os.environ.get(SKIP_ENV) == "0" else None


def simulate_layers(model, out: Path, package, tile: int, enabled: bool = True) -> dict:
    """The gate over a whole tile; writes out/report/layer_sim.json and prints a line per layer.
    enabled=False (`lic hw --no-simulate`) or LIC_SIMULATE_LAYERS=0 only records that it was skipped."""
    from qonnx.custom_op.registry import getCustomOp

    t0 = time.time()
    off = switched_off(enabled)
    if off:
        report = {"status": "skipped", "reason": off}
        _write(out, report)
        print(f"layer simulation skipped ({off})")
        return report
    tools = {"cppsim": cppsim.missing(), "verilator": verilator_sim.missing()}
    report: dict = {"tools": {"cppsim": tools["cppsim"] or {k: f"{s}: {p}" for k, (p, s) in cppsim.locate().items()},
                              "verilator": tools["verilator"] or verilator_sim.version()}}
    if tools["cppsim"] and tools["verilator"]:
        report.update(status="skipped", reason=f"{tools['cppsim']}; {tools['verilator']}")
        _write(out, report)
        print("layer simulation skipped: " + report["reason"])
        return report
    est_file = out / "report" / "estimate_layer_cycles.json"
    estimates = json.loads(est_file.read_text()) if est_file.is_file() else {}
    folder = out / SIM_DIR
    layers = [(getCustomOp(node), *_level(getCustomOp(node), tools)) for node in model.graph.node]
    # The simulation programs compile on a second core while the chain runs on this one: the
    # compiles (minutes, first run) and the simulations with their Python references overlap.
    for inst, level, _ in layers:
        if level == "cppsim":
            cppsim.prepare(inst, model)  # FINN's code generation touches the model: not in the worker
    pool = ThreadPoolExecutor(max_workers=1)
    compiled = {inst.onnx_node.name: pool.submit(compile_layer, inst, model, level, folder)
                for inst, level, _ in layers if level != "python-only"}
    try:
        y, report["tile_source"] = real_tile(package, tile)
        x = y.transpose(0, 2, 3, 1)
        rows = report["layers"] = []
        for inst, level, why in layers:
            name = inst.onnx_node.name
            row = {"name": name, "kind": inst.onnx_node.op_type, "level": level}
            rows.append(row)
            if level == "python-only":
                got, row["why"] = python_layer(inst, model, x), why
            else:
                try:
                    got, sim = gate_layer(inst, model, x, level, folder, compiled[name].result())
                except LicError as e:
                    row["bit_exact"] = False
                    _write(out, dict(report, status="failed", error=str(e)))
                    raise
                row.update(sim)
            row["cycles_estimate"] = estimates.get(name, inst.get_exp_cycles())
            print(_line(row))
            x = got
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report["chain"] = check_chain(out, y, x)
    report["status"] = "ok"
    report["seconds"] = round(time.time() - t0, 1)
    _write(out, report)
    print(f"layer chain over the tile: {report['chain']['what']}; {report['seconds']:.0f} s "
          f"({sum(r.get('compile_seconds', 0) for r in rows):.0f} s compiling, overlapped)")
    return report


def check_chain(out: Path, y: np.ndarray, chained: np.ndarray) -> dict:
    """The chained layers' output against the Python execution of the whole HW-layer graph."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper

    net = ModelWrapper(str(out / "hw" / "student_hw.onnx"))
    ref = execute_onnx(net, {net.graph.input[0].name: y.transpose(0, 2, 3, 1)})[net.graph.output[0].name]
    diff = first_difference("the chained layers", "simulated", ref.reshape(chained.shape), chained)
    if diff:
        raise LicError(diff + " (network: hw/student_hw.onnx in Python)")
    return {"bit_exact": True, "outputs": int(chained.size),
            "what": f"all {chained.size} output integers equal the HW graph's Python execution"}


def _line(row: dict) -> str:
    exact = {True: "yes", False: "NO"}.get(row.get("bit_exact"), "-")
    cyc = row.get("cycles")
    cycles = (f"cycles sim {cyc['cycles_first_in_to_last_out']} (total {cyc['cycles_total']}) vs estimate "
              f"{row['cycles_estimate']}" if cyc else f"cycles estimate {row['cycles_estimate']}")
    tail = f" ({row['why']})" if row.get("why") else ""
    return f"  {row['name']:32s} {row['kind']:30s} {row['level']:11s} bit-exact {exact:3s} {cycles}{tail}"


def _write(out: Path, report: dict) -> None:
    (out / REPORT).parent.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
