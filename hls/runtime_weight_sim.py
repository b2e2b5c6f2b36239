"""Every rate point's weights written through the runtime-weight path into the simulated layers of a
shared build (`lic hw --shared-weights`, hls/shared_weights.py), as a gate.

For each weight set of runtime_weights/weights.json (q1..q4) and each runtime-writable layer:

  the writes   the set's files through host/accelerator_driver.py's own IODMADriver.load_weights
               (on a recording stand-in of the overlay): each layer's AXI-lite region, the byte
               address and 32-bit word of every write in the driver's order, and the flush batch
               the driver runs after them.
  RTL layers   (MVAU_rtl with its weight streamer, Thresholding_rtl) verilated with their AXI-lite
               slave driven by the harness (hls/verilator_harness.cpp, -DLIC_AXILITE): after reset
               the writes, one batch of zeros (the driver's flush), then the rate point's tile; the
               output must equal that rate point's own expected output for the layer, bit for bit.
  HLS MVAUs    the weight memory is RTL (finn-rtllib's memstream_axi, beside the HLS compute in the
               stitched design) and the compute is HLS C++: the streamer is verilated alone, the
               writes driven into it, one pass of its lines dropped (the flush) and the next pass
               taken; it must equal the stream FINN's decoupled_npy writer makes of the rate point's
               weights, and it is then the weight stream FINN's cppsim program reads (its input_1.npy,
               which FINN's decoupled cppsim reads from a file), whose output must equal the rate
               point's expected output.

The expected output: the rate point's own student through the shared build's steps
(shared_weights.student_graph, kept as hw/rate_points/<set>.onnx by write_weight_sets), its tensors
placed in the shared fold's layers (shared_weights.check_student), each layer executed in Python by
FINN on the rate point's own tile: y_hat of the Kodak image by that package's teacher (layer_sim.real_tile).
The chain's last output must equal FINN's Python execution of the student's own HW graph on the
tile, so each layer's reference is that student's network, not the shared build's.

Each layer is fed the rate point's Python activations for it (the layers without weights are
simulated by `make hw`'s step_simulate_layers on the build's own weights). A mismatch stops the build
naming the layer, the rate point and the first differing value. The compiled programs are cached by a
hash of their sources (hls/sim_cache.py), beside step_simulate_layers' under layer_sim/cache/.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hls import cppsim, verilator_sim
from hls.layer_sim import SIM_DIR, python_layer, real_tile, switched_off
from hls.shared_weights import RATE_POINT_GRAPHS
from lic.errors import LicError

REPORT = "report/runtime_weight_sim.json"


# ---------------------------------------------------------------------------------------------
# The driver's writes


class _RecordingMMIO:
    """PYNQ's MMIO.write(offset, data) as the driver calls it: an int, or bytes written as 32-bit
    little-endian words from offset on."""

    def __init__(self, log: list):
        self.log = log

    def write(self, offset: int, data) -> None:
        if isinstance(data, (bytes, bytearray)):
            words = np.frombuffer(bytes(data), "<u4")
            self.log.extend((offset + 4 * i, int(w)) for i, w in enumerate(words))
        else:
            self.log.append((int(offset), int(data)))


class _RecordingDriver:
    """What IODMADriver.load_weights touches of its driver: the loaded set, the output IODMAs (none:
    idle), each layer's AXI-lite MMIO, and the flush batch."""

    def __init__(self):
        self.loaded, self.odma, self._flush_bufs = None, [], None
        self.writes: dict[str, list] = {}
        self.batches = 0

    def axilite(self, interface: str):
        return _RecordingMMIO(self.writes.setdefault(interface, []))

    def allocate(self, n: int):
        return ("flush batch", n)

    def run(self, bufs) -> None:
        self.batches += 1


def driver_writes(build: Path, entry: dict, layers: list[dict]) -> tuple[dict[str, np.ndarray], int]:
    """({interface: (N, 2) uint32 (byte address, word)}, flush batches) that the board driver's
    load_weights makes of one weight set of the build."""
    from host.accelerator_driver import IODMADriver, WeightSet

    from hls.shared_weights import RT_DIR

    rec = _RecordingDriver()
    IODMADriver.load_weights(rec, WeightSet(build / RT_DIR, layers, entry))
    return {k: np.array(v, np.uint32).reshape(-1, 2) for k, v in rec.writes.items()}, rec.batches


# ---------------------------------------------------------------------------------------------
# What each rate point's layers must give


def rate_point_graph(build: Path, name: str):
    from qonnx.core.modelwrapper import ModelWrapper

    path = build / RATE_POINT_GRAPHS / f"{name}.onnx"
    if not path.is_file():
        raise LicError(f"{path} missing: the shared build keeps each rate point's HW graph there (rebuild with "
                       f"`lic hw --shared-weights`)")
    return ModelWrapper(str(path))


def expected_chain(build: Path, model, name: str, package_dir: Path, tile: int) -> dict:
    """The rate point's tile, its tensors by layer, and each runtime-writable layer's input and
    expected output (FINN's Python execution with the rate point's parameters), checked end to end
    against the Python execution of the rate point's own HW graph."""
    from finn.core.onnx_exec import execute_onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hls.layer_sim import first_difference
    from hls.shared_weights import check_student, is_runtime_layer
    from host.decoder_package import DecoderPackage

    student = rate_point_graph(build, name)
    initial = ModelWrapper(str(build / "intermediate_models" / "step_minimize_bit_width_initial.onnx"))
    final = ModelWrapper(str(build / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    tensors = {f.name: t for f, t in check_student(initial, final, student, f"rate point {name}")}
    y, source = real_tile(DecoderPackage.load(package_dir), tile)
    x = y.transpose(0, 2, 3, 1)
    layers = {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        params = {node.input[1]: tensors[node.name]} if is_runtime_layer(node) else None
        out = python_layer(inst, model, x, params)
        if is_runtime_layer(node):
            layers[node.name] = (x, out)
        x = out
    ref = execute_onnx(student, {student.graph.input[0].name: y.transpose(0, 2, 3, 1)})[student.graph.output[0].name]
    diff = first_difference(f"the shared fold with rate point {name}'s parameters", "Python", ref.reshape(x.shape), x)
    if diff:
        raise LicError(diff + f" (reference: rate point {name}'s own HW graph in Python)")
    return {"tile_source": source, "tensors": tensors, "layers": layers, "outputs": int(x.size)}


def rate_difference(name: str, rate: str, what: str, ref: np.ndarray, got: np.ndarray) -> str | None:
    """layer_sim's comparison, naming the rate point whose weights were written."""
    from hls.layer_sim import first_difference

    return first_difference(f"{name}, rate point {rate}", what, ref, got,
                            against=f"rate point {rate}'s own expected output")


# ---------------------------------------------------------------------------------------------
# The simulations


def plan(inst, tools: dict) -> tuple[str, str | None]:
    """(how the layer's runtime weights are simulated, why not where they cannot be):
    "verilator" (RTL layer, AXI-lite driven), "memstream+cppsim" (HLS MVAU), "memstream" (HLS MVAU
    without cppsim here), "python-only"."""
    kind = inst.onnx_node.op_type
    if tools["verilator"]:
        return "python-only", tools["verilator"]
    if kind in ("MVAU_rtl", "Thresholding_rtl"):
        return "verilator", None
    if kind == "MVAU_hls":
        return ("memstream", tools["cppsim"]) if tools["cppsim"] else ("memstream+cppsim", None)
    return "python-only", f"no runtime-weight simulation for {kind}"


def compile_layer(inst, model, level: str, folder: Path) -> dict:
    cache = folder / "cache"
    progs: dict = {}
    t = 0.0
    if level == "verilator":
        progs["verilator"], s, cached = verilator_sim.build(inst, cache / "verilator", "axilite")
        t += s
    if level.startswith("memstream"):
        progs["memstream"], s, cached = verilator_sim.build(inst, cache / "verilator", "weights")
        t += s
    if level == "memstream+cppsim":
        progs["cppsim"], s, cached_c = cppsim.build(inst, cache / "cppsim")
        t += s
        cached = cached and cached_c
    return {"programs": progs, "compile_seconds": round(t, 1), "cached": cached}


def decoupled_stream(inst, tensor: np.ndarray, work: Path) -> np.ndarray:
    """FINN's decoupled_npy stream of a weight matrix: (WMEM, PE x SIMD), the MVAU's weight stream."""
    work.mkdir(parents=True, exist_ok=True)
    inst.make_weight_file(tensor.astype(np.float32), "decoupled_npy", str(work / "expected_stream.npy"))
    return np.load(work / "expected_stream.npy").reshape(inst.calc_wmem(), -1)


def simulate_layer(inst, level: str, progs: dict, writes: np.ndarray, flushes: int, x: np.ndarray,
                   want: np.ndarray, tensor: np.ndarray, rate: str, work: Path) -> dict:
    """One layer of one rate point: its row, or LicError naming the layer, the rate point and the
    first differing value."""
    name = inst.onnx_node.name
    row: dict = {"words_written": int(len(writes)), "flush_batches": flushes}
    if level == "verilator":
        got, stats = verilator_sim.run(inst, progs["verilator"], x, work, writes=writes, flush=flushes > 0)
        row["sim_seconds"] = stats.pop("seconds")
        row["cycles"] = stats
        diff = rate_difference(name, rate, "verilator, its weights written over AXI-lite", want, got)
        if diff:
            raise LicError(diff)
        row["bit_exact"] = True
        return row
    stream, stats = verilator_sim.run_weight_stream(inst, progs["memstream"], work, writes, flush=flushes > 0)
    row["memstream_seconds"] = stats.pop("seconds")
    row["memstream_cycles"] = stats
    expect = decoupled_stream(inst, tensor, work)
    diff = rate_difference(name, rate, "verilator: its weight streamer written over AXI-lite, the weight stream",
                            expect, stream)
    if diff:
        raise LicError(diff.replace("own expected output", "weights as FINN streams them (decoupled_npy)"))
    row["weight_stream_exact"] = True
    if level == "memstream+cppsim":
        got, seconds = cppsim.run(inst, progs["cppsim"], x, work,
                                  params={"input_1.npy": stream.reshape(1, inst.calc_wmem(), -1)})
        row["sim_seconds"] = round(seconds, 2)
        diff = rate_difference(name, rate, "cppsim on the weight stream its streamer gave", want, got)
        if diff:
            raise LicError(diff)
        row["bit_exact"] = True
    return row


def simulate_runtime_weights(build: Path, tile: int, enabled: bool = True, sets: list[str] | None = None,
                             layers: list[str] | None = None) -> dict:
    """The gate over every weight set (or those named) and every runtime-writable layer (or those
    named); writes build/report/runtime_weight_sim.json and prints a line per layer and set."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hls.shared_weights import RT_MANIFEST, is_runtime_layer

    build = Path(build)
    t0 = time.time()
    off = switched_off(enabled)
    if off:
        report = {"status": "skipped", "reason": off}
        _write(build, report)
        print(f"runtime-weight simulation skipped ({off})")
        return report
    tools = {"cppsim": cppsim.missing(), "verilator": verilator_sim.missing()}
    report: dict = {"tools": {k: v or "ok" for k, v in tools.items()}}
    if tools["verilator"]:
        report.update(status="skipped", reason=tools["verilator"])
        _write(build, report)
        print("runtime-weight simulation skipped: " + report["reason"])
        return report
    manifest = json.loads((build / RT_MANIFEST).read_text())
    model = ModelWrapper(str(build / "intermediate_models" / "step_hw_codegen.onnx"))
    rt = [getCustomOp(n) for n in model.graph.node if is_runtime_layer(n)]
    if [i.onnx_node.name for i in rt] != [layer["node"] for layer in manifest["layers"]]:
        raise LicError(f"{build / RT_MANIFEST} names other layers than the build's runtime-writable ones")
    folder = build / SIM_DIR
    chosen = [(i, layer) for i, layer in zip(rt, manifest["layers"]) if layers is None or layer["node"] in layers]
    levels = {i.onnx_node.name: plan(i, tools) for i, _ in chosen}
    for inst, _ in chosen:
        if levels[inst.onnx_node.name][0] == "memstream+cppsim":
            cppsim.prepare(inst, model)  # FINN's code generation touches the model: not in the worker
    pool = ThreadPoolExecutor(max_workers=1)
    compiled = {i.onnx_node.name: pool.submit(compile_layer, i, model, levels[i.onnx_node.name][0], folder)
                for i, _ in chosen if levels[i.onnx_node.name][0] != "python-only"}
    rows = report["sets"] = []
    try:
        for entry in manifest["sets"]:
            if sets is not None and entry["name"] not in sets:
                continue
            rate = entry["name"]
            t1 = time.time()
            chain = expected_chain(build, model, rate, Path(entry["package"]), tile)
            writes, flushes = driver_writes(build, entry, manifest["layers"])
            srow = {"set": rate, "quality": entry.get("quality"), "tile_source": chain["tile_source"],
                    "reference": f"rate point {rate}'s own HW graph (hw/rate_points/{rate}.onnx) in Python: all "
                                 f"{chain['outputs']} output integers equal the shared fold with its parameters",
                    "layers": []}
            rows.append(srow)
            for inst, layer in chosen:
                name = inst.onnx_node.name
                level, why = levels[name]
                row = {"name": name, "kind": inst.onnx_node.op_type, "interface": layer["interface"], "level": level}
                srow["layers"].append(row)
                if level == "python-only":
                    row["why"] = why
                    continue
                c = compiled[name].result()
                row.update(compile_seconds=c["compile_seconds"], cached=c["cached"])
                if why:
                    row["why"] = why
                x, want = chain["layers"][name]
                work = folder / "run" / f"rt-{rate}-{name}"
                try:
                    row.update(simulate_layer(inst, level, c["programs"], writes[layer["interface"]], flushes, x, want,
                                              chain["tensors"][name], rate, work))
                except LicError as e:
                    row["bit_exact"] = False
                    _write(build, dict(report, status="failed", error=str(e), seconds=round(time.time() - t0, 1)))
                    raise
                shutil.rmtree(work, ignore_errors=True)  # kept only when it differs
                print(_line(rate, row))
            srow["seconds"] = round(time.time() - t1, 1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report["status"] = "ok"
    report["seconds"] = round(time.time() - t0, 1)
    exact = [r for s in rows for r in s["layers"] if r.get("bit_exact")]
    report["summary"] = (f"{len(rows)} rate points x {len(chosen)} runtime-writable layers: {len(exact)} simulated "
                         f"bit-exact with their weights written over AXI-lite")
    _write(build, report)
    print(f"runtime weights: {report['summary']}; {report['seconds']:.0f} s")
    return report


def _line(rate: str, row: dict) -> str:
    exact = {True: "yes", False: "NO"}.get(row.get("bit_exact"), "-")
    stream = " weight stream exact," if row.get("weight_stream_exact") else ""
    tail = f" ({row['why']})" if row.get("why") else ""
    return (f"  {rate:4s} {row['name']:22s} {row['interface']:13s} {row['level']:17s}{stream} bit-exact {exact}, "
            f"{row['words_written']} words written{tail}")


def _write(build: Path, report: dict) -> None:
    (build / REPORT).parent.mkdir(parents=True, exist_ok=True)
    (build / REPORT).write_text(json.dumps(report, indent=2) + "\n")
