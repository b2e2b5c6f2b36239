"""One bitstream for every rate point (issue 46): `lic hw --shared-weights` (`make hw SHARED=1`).

The four students share one architecture and bit widths, so one fold of the fabric can run any of
them if their weights and thresholds are written at run time instead of baked into the bitstream:

  step_runtime_writable_weights   (before FINN's step_minimize_bit_width_initial) sets FINN's
      `runtime_writeable_weights` on every MVAU and Thresholding layer. With it FINN keeps each MVAU's
      weight type as the student declared it (INT8 / INT4: no minimisation to the values), sizes the
      accumulator for the worst case of that type and the input type (matrixvectoractivation.py
      minimize_accumulator_width), and leaves the thresholds one bit wider than that accumulator
      (thresholding.py minimize_weight_bit_width returns early; RoundAndClipThresholds sets the type):
      widths that cover every student of these bit widths, not only the one the build was made from.
      The memories get an AXI-lite port (memstream_axi for the MVAUs' weights, thresholding_axi's
      USE_AXILITE for the thresholds), which CreateStitchedIP exports as s_axilite_<k>, k counting the
      layers with one in graph order.
  write_weight_sets (after FINN's steps): every rate point's package (its quant_student.pt) goes
      through the same FINN steps up to step_minimize_bit_width_initial with the same flag; its
      graph must be the shared one layer for layer (op, shapes, types, threshold counts), and its
      weights and thresholds must fit the shared build's types, or the build stops naming the layer
      and the student. Each layer's tensor is then written by FINN's own writer
      (make_weight_file(..., "decoupled_runtime", ...), the file finn-plus's step_make_driver writes for
      runtime weights: one 32-bit word per line, in the order of the layer's AXI-lite addresses),
      read back (decode_weight_file) and compared with what was written, into
      runtime_weights/<set>/, with runtime_weights/weights.json naming the layers, their AXI-lite
      interfaces and, for each set, the decoding contract (file_fingerprint) it serves; each student's
      HW graph is kept as hw/rate_points/<set>.onnx.
  hls/runtime_weight_sim.py (with simulation on): every set written through the driver's AXI-lite
      writes into the simulated layers, each layer's output equal to that rate point's own, or the
      build stops.

host/accelerator_driver.py IODMADriver.load_weights writes a set; host/fabric.py accepts the package
of any set for a shared build.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from host.accelerator_driver import AXILITE_MB_S, RT_FORMAT, read_words
from lic.errors import LicError

RT_DIR = "runtime_weights"
RT_MANIFEST = "runtime_weights/weights.json"
RATE_POINT_GRAPHS = "hw/rate_points"  # each set's student through the shared steps, <set>.onnx
# The switch time below is bytes / AXILITE_MB_S (host/accelerator_driver.py, which reads the weight
# sets and owns their format): an estimate, and a lower bound on the time.
AXILITE_RATE_SOURCE = ("Zynq-7000 TRM UG585 Table 22-8: CPU programmed I/O through the M_AXI_GP ports, "
                       "estimated throughput < 25 MB/s (an upper bound on the rate, so the time is a lower bound)")
# FINN's CreateDataflowPartition inside ZynqBuild puts the input IODMA in partition 0, the layers in 1
# and the output IODMA in 2; finn-plus's step_make_driver names its runtime-weight files
# <partition>_<layer>_<node>.dat (make_driver.py); ours keep that name.
PARTITION = 1


def is_runtime_layer(node) -> bool:
    return node.op_type.startswith(("MVAU", "Thresholding"))


def step_runtime_writable_weights(model, cfg, b=None):
    """FINN's runtime_writeable_weights on every MVAU and Thresholding layer, before any width
    minimisation (FINN's step_minimize_bit_width_initial comes next)."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if is_runtime_layer(node):
            inst = getCustomOp(node)
            if node.op_type.startswith("MVAU") and inst.get_nodeattr("mem_mode") != "internal_decoupled":
                raise LicError(f"{node.name}: runtime-writable weights need mem_mode internal_decoupled, not "
                               f"{inst.get_nodeattr('mem_mode')}")
            inst.set_nodeattr("runtime_writeable_weights", 1)
    return model


# ---------------------------------------------------------------------------------------------
# Decoding FINN's "decoupled_runtime" files back into tensors


def _signed(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    v = values.astype(np.int64) & ((1 << bits) - 1)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v) if signed else v


def _words_per_line(inst) -> int:
    width = inst.get_instream_width(1)
    return max(1, 2 ** math.ceil(math.log2(width / 32)))


def decode_mvau_words(inst, words: np.ndarray) -> np.ndarray:
    """The (MW, MH) integer weight matrix a MVAU's decoupled_runtime words hold: each memory line
    (PE x SIMD weights, the first PE's last, FINN's PE flip) in words_per_line 32-bit words, low word
    first; the (1, PE, WMEM, SIMD) order of get_hw_compatible_weight_tensor undone by applying it to
    the entries' indices."""
    pe, simd = inst.get_nodeattr("PE"), inst.get_nodeattr("SIMD")
    mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
    wdt = inst.get_input_datatype(1)
    bits, per = wdt.bitwidth(), _words_per_line(inst)
    lines = words.reshape(-1, per)
    if lines.shape[0] != inst.calc_wmem():
        raise LicError(f"{inst.onnx_node.name}: {lines.shape[0]} memory lines in its weight file, not {inst.calc_wmem()}")
    n = pe * simd
    # element k of a line sits at bits (n-1-k)*bits .. (n-k)*bits-1 of the line (the first element is the
    # most significant hex digit in pack_innermost_dim_as_hex_string)
    values = np.zeros((lines.shape[0], n), np.int64)
    for k in range(n):
        lo = (n - 1 - k) * bits
        w, off = divmod(lo, 32)
        chunk = lines[:, w].astype(np.int64) >> off
        if off + bits > 32:
            chunk |= lines[:, w + 1].astype(np.int64) << (32 - off)
        values[:, k] = chunk
    values = _signed(values, bits, wdt.signed())
    pe_flipped = values.reshape(1, -1, pe, simd)
    hw = np.flip(pe_flipped, axis=-2).transpose(0, 2, 1, 3)  # (1, PE, WMEM, SIMD)
    index = inst.get_hw_compatible_weight_tensor(np.arange(mw * mh, dtype=np.float64).reshape(mw, mh))
    out = np.zeros(mw * mh, np.int64)
    out[np.asarray(index, np.int64).reshape(-1)] = hw.reshape(-1)
    return out.reshape(mw, mh)


def decode_threshold_words(inst, words: np.ndarray) -> np.ndarray:
    """The (channels, steps) thresholds a Thresholding_rtl's decoupled_runtime words hold: per channel
    fold, 2^clog2(PE) slots of 2^clog2(steps) words each (the AXI-lite address is fold | pe | step,
    thresholding_axi.sv), padding slots skipped."""
    pe, channels = inst.get_nodeattr("PE"), inst.get_nodeattr("NumChannels")
    steps = inst.get_nodeattr("numSteps")
    wdt = inst.get_input_datatype(1)
    per_value = -(-wdt.bitwidth() // 32)
    slot = 1 << max(0, math.ceil(math.log2(steps)))
    values = words.reshape(-1, per_value)
    if per_value > 1:
        merged = sum(values[:, j].astype(object) << (32 * j) for j in range(per_value))
        values = np.array([int(v) for v in merged], dtype=object)
    else:
        values = values[:, 0]
    values = _signed(np.asarray(values, np.int64), wdt.bitwidth(), wdt.signed())
    out, i = [], 0
    for _fold in range(channels // pe):
        for c in range(2 ** (pe - 1).bit_length()):
            if (c == 0 or c % pe != 0) and c < pe:
                out.append(values[i:i + steps])
            i += slot
    if i != len(values):
        raise LicError(f"{inst.onnx_node.name}: {len(values)} thresholds in its weight file, not {i}")
    return np.stack(out)


def decode_weight_file(inst, path: Path) -> np.ndarray:
    words = read_words(path)
    if inst.onnx_node.op_type.startswith("MVAU"):
        return decode_mvau_words(inst, words)
    return decode_threshold_words(inst, words)


def axilite_bytes(inst) -> int:
    """The address space of a layer's AXI-lite port (memstream_axi.sv / thresholding_axi.sv ADDR_WIDTH)."""
    if inst.onnx_node.op_type.startswith("MVAU"):
        width = inst.get_instream_width_padded(1)
        return 4 * inst.calc_wmem() * 2 ** math.ceil(math.log2(max(1, -(-width // 32))))
    pe, cf = inst.get_nodeattr("PE"), inst.get_nodeattr("NumChannels") // inst.get_nodeattr("PE")
    clog = lambda n: math.ceil(math.log2(n)) if n > 1 else 0
    fold = -(-inst.get_input_datatype(1).bitwidth() // 32)
    return 4 * 2 ** (clog(cf) + clog(pe) + clog(inst.get_nodeattr("numSteps")) + clog(fold))


# ---------------------------------------------------------------------------------------------
# Every rate point through the same steps, checked against the shared build


def rate_packages(explicit: list[Path] | None) -> list[Path]:
    """The packages whose weights the shared build carries: those given, else every shipped package
    (host/decoders) and every one `make packages` built (build/decoders), which must then cover every
    student of training/students/students.json."""
    from host.decode_cli import BUILT_PACKAGES, SHIPPED_PACKAGES
    from host.decoder_package import MANIFEST

    if explicit:
        return [Path(p).resolve() for p in explicit]
    found = [m.parent for root in (SHIPPED_PACKAGES, BUILT_PACKAGES) for m in sorted(root.glob(f"*/{MANIFEST}"))]
    from quantize.qat import load_quant_student  # noqa: F401  (students.json's reader lives beside it)
    from quantize.ship_students import read_students
    from host.decoder_package import sha256_file

    shas = {json.loads((p / MANIFEST).read_text())["files"].get("quant_student.pt"): p for p in found}
    missing = [f"q{s['quality']}" for s in read_students() if sha256_file(s["quant"]) not in shas]
    if missing:
        raise LicError(f"--shared-weights: no decoder package for student {', '.join(missing)} of "
                       f"training/students/students.json: run `make packages` (build/decoders/), or pass "
                       f"--rate-packages DIR ...")
    return [p for p in shas.values()]


PREFIX_STEPS = ("step_qonnx_to_finn", "step_tidy_up", "step_streamline", "decoder_layout", "resize_to_upsample",
                "step_convert_to_hw", "exact_thresholds", "verify_hw_graph", "runtime_writable",
                "step_minimize_bit_width_initial")


def student_graph(build_module, board, package_dir: Path, tile: int, scratch: Path):
    """The package's student through the shared build's steps up to step_minimize_bit_width_initial,
    runtime-writable as there: its HW-layer graph with its own weights and thresholds (checked against
    its QONNX on a tile by step_verify_hw_graph). build_module: hls.build, handed in (it imports this
    module; the layering allows no import cycle)."""
    from finn.builder import build_dataflow_steps as finn_steps
    from qonnx.core.modelwrapper import ModelWrapper

    hb = build_module
    sb = hb.Build(board, package_dir, scratch, tile, 1.0, False, simulate=False)
    scratch.mkdir(parents=True, exist_ok=True)
    model = ModelWrapper(str(hb.export_tile_qonnx(sb)))
    cfg = sb.cfg([])
    ours = {"decoder_layout": hb.step_decoder_layout, "resize_to_upsample": hb.step_resize_to_upsample,
            "exact_thresholds": hb.step_exact_thresholds, "verify_hw_graph": hb.step_verify_hw_graph,
            "runtime_writable": step_runtime_writable_weights}
    for step in PREFIX_STEPS:
        model = ours[step](model, cfg, sb) if step in ours else getattr(finn_steps, step)(model, cfg)
    return sb.package, model


_SAME = ("MW", "MH", "weightDataType", "inputDataType", "outputDataType", "accDataType", "numSteps", "ActVal",
         "NumChannels", "noActivation", "binaryXnorMode")


def _attrs(inst) -> dict:
    types = inst.get_nodeattr_types()
    return {k: inst.get_nodeattr(k) for k in _SAME if k in types}


def check_student(shared_initial, final, student, label: str) -> list[tuple[object, np.ndarray]]:
    """(final layer, the student's tensor for it) for every runtime-writable layer, or LicError naming
    the layer and the student: the graphs must match layer for layer, the weights must fit the shared
    weight type and their accumulation its accumulator type, the thresholds (rounded up and clipped to
    the layer's input range, as FINN's RoundAndClipThresholds does) its threshold type."""
    from qonnx.util.basic import calculate_matvec_accumulator_range
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    ops = lambda m: [n.op_type for n in m.graph.node]
    if ops(student) != ops(shared_initial):
        raise LicError(f"{label}: its HW-layer graph is not the shared build's ({ops(student)} vs {ops(shared_initial)}); "
                       f"a shared build needs one architecture")
    s_nodes = [n for n in student.graph.node if is_runtime_layer(n)]
    i_nodes = [n for n in shared_initial.graph.node if is_runtime_layer(n)]
    f_nodes = [n for n in final.graph.node if is_runtime_layer(n)]
    if len(f_nodes) != len(s_nodes):
        raise LicError(f"{label}: {len(s_nodes)} MVAU/Thresholding layers, the shared build has {len(f_nodes)}")
    out = []
    for s, i, f in zip(s_nodes, i_nodes, f_nodes):
        si, ii, fi = getCustomOp(s), getCustomOp(i), getCustomOp(f)
        name = f"layer {f.name} ({s.name} of the student)"
        for key, want in _attrs(ii).items():
            got = _attrs(si).get(key)
            if got != want:
                raise LicError(f"{label}: {name} has {key} {got}, the shared build {want}" +
                               ("; its weights need more bits than the shared fold allows" if "DataType" in key else ""))
        t = np.asarray(student.get_initializer(s.input[1]), np.float64)
        if f.op_type.startswith("MVAU"):
            wdt, idt = fi.get_input_datatype(1), fi.get_input_datatype(0)
            if t.shape != (fi.get_nodeattr("MW"), fi.get_nodeattr("MH")):
                raise LicError(f"{label}: {name} weights {t.shape}, the shared build's {(fi.get_nodeattr('MW'), fi.get_nodeattr('MH'))}")
            if not (np.all(t == np.rint(t)) and t.min() >= wdt.min() and t.max() <= wdt.max()):
                need = DataType.get_smallest_possible(t.min() if -t.min() > t.max() else -t.max() - 1)
                raise LicError(f"{label}: {name} weights span {t.min():g}..{t.max():g} ({need.name}); the shared "
                               f"fold has {wdt.name}: they need more bits than the shared fold allows")
            lo, hi = calculate_matvec_accumulator_range(t, idt)
            adt = DataType[fi.get_nodeattr("accDataType")]
            if lo < adt.min() or hi > adt.max():
                raise LicError(f"{label}: {name} accumulates {lo:g}..{hi:g}, beyond the shared {adt.name}")
            out.append((f, t.astype(np.int64)))
        else:
            idt, tdt = fi.get_input_datatype(0), fi.get_input_datatype(1)
            t = np.clip(np.ceil(t), idt.min(), idt.max() + 1)
            if t.shape != (fi.get_nodeattr("NumChannels"), fi.get_nodeattr("numSteps")):
                raise LicError(f"{label}: {name} thresholds {t.shape}, the shared build's "
                               f"{(fi.get_nodeattr('NumChannels'), fi.get_nodeattr('numSteps'))}")
            if t.min() < tdt.min() or t.max() > tdt.max():
                raise LicError(f"{label}: {name} thresholds span {t.min():g}..{t.max():g}; the shared fold has "
                               f"{tdt.name}: they need more bits than the shared fold allows")
            if np.any(np.diff(t, axis=-1) < 0):
                raise LicError(f"{label}: {name} thresholds are not ascending (the RTL's binary search needs them so)")
            out.append((f, t.astype(np.int64)))
    return out


def _types(inst) -> dict:
    t = {"input_type": inst.get_input_datatype(0).name, "param_type": inst.get_input_datatype(1).name,
         "output_type": inst.get_output_datatype().name}
    if "accDataType" in inst.get_nodeattr_types():
        t["acc_type"] = inst.get_nodeattr("accDataType")
    return t


def write_weight_sets(b, packages: list[Path], build_module) -> dict:
    """Every rate point's runtime-weight files and runtime_weights/weights.json (see the module doc);
    build_module: hls.build (student_graph)."""
    from qonnx.core.modelwrapper import ModelWrapper

    out = b.out
    final = ModelWrapper(str(out / "intermediate_models" / "step_generate_estimate_reports.onnx"))
    initial = ModelWrapper(str(out / "intermediate_models" / "step_minimize_bit_width_initial.onnx"))
    rt_nodes = [n for n in final.graph.node if is_runtime_layer(n)]
    from qonnx.custom_op.registry import getCustomOp

    for n in rt_nodes:
        if not getCustomOp(n).get_nodeattr("runtime_writeable_weights"):
            raise LicError(f"{n.name} is not runtime-writable in the shared build")
    shutil.rmtree(out / RT_DIR, ignore_errors=True)
    shutil.rmtree(out / RATE_POINT_GRAPHS, ignore_errors=True)
    (out / RT_DIR).mkdir(parents=True)
    layers = [{"node": n.name, "interface": f"s_axilite_{k}", "kind": "weights" if n.op_type.startswith("MVAU") else
               "thresholds", "axilite_bytes": axilite_bytes(getCustomOp(n)), **_types(getCustomOp(n))}
              for k, n in enumerate(rt_nodes)]
    sets, names = [], set()
    for pkg_dir in packages:
        package, student = student_graph(build_module, b.board, pkg_dir, b.tile, out / "shared_check" / Path(pkg_dir).name)
        m = package.manifest
        name = package.name if package.name not in names else f"{package.name}-{len(names)}"
        names.add(name)
        label = f"student of package {name} ({pkg_dir})"
        tensors = check_student(initial, final, student, label)
        # the rate point's own HW graph: what hls/runtime_weight_sim.py's expected outputs are checked against
        (out / RATE_POINT_GRAPHS).mkdir(parents=True, exist_ok=True)
        student.save(str(out / RATE_POINT_GRAPHS / f"{name}.onnx"))
        files, words = [], 0
        for k, ((node, tensor), layer) in enumerate(zip(tensors, layers)):
            inst = getCustomOp(node)
            rel = f"{name}/{PARTITION}_{k}_{node.name}.dat"
            path = out / RT_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            inst.make_weight_file(tensor.astype(np.float32), "decoupled_runtime", str(path))
            back = decode_weight_file(inst, path)
            if not np.array_equal(back, tensor):
                raise LicError(f"{label}: {node.name}'s runtime-weight file does not decode back to its tensor")
            n_words = len(read_words(path))
            if 4 * n_words > layer["axilite_bytes"]:
                raise LicError(f"{node.name}: {n_words} words overrun its AXI-lite space of {layer['axilite_bytes']} bytes")
            files.append(rel)
            words += n_words
        sets.append({"name": name, "quality": m.get("quality"), "file_fingerprint": m["file_fingerprint"],
                     "legacy_file_fingerprints": list(m.get("legacy_file_fingerprints") or ()),
                     "student_sha256": m["files"].get("quant_student.pt"), "package": str(pkg_dir),
                     "files": files, "words": words, "bytes": 4 * words,
                     "estimated_switch_ms": 4 * words / (AXILITE_MB_S * 1e6) * 1e3,
                     "decoded_back": "every file read back equals the tensor written"})
    shutil.rmtree(out / "shared_check", ignore_errors=True)
    manifest = {
        "format": RT_FORMAT, "partition": PARTITION, "layers": layers, "sets": sets,
        "write": ("each file's words, in order, to its layer's AXI-lite region (word i at byte offset 4 i of the "
                  "overlay's ip_dict entry '<partition cell>/<interface>'); a memory line of the MVAU's weights is "
                  "stored when its last word is written (finn-rtllib axilite.sv)"),
        "switch_time": {"assumed_mb_s": AXILITE_MB_S, "source": AXILITE_RATE_SOURCE, "what": "estimated"},
        "bitstream_initial_weights": b.package.name,
    }
    (out / RT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
