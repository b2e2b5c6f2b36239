"""One bitstream for every rate point (issue 46): `lic hw --shared-weights` on two tiny students of
one architecture (hls/shared_weights.py), their runtime-weight files decoded back against each
student's own baked build, the refusal of a student that needs more bits, and the board driver
writing each set to its layers' AXI-lite regions on the recording PYNQ stand-in, only when it changes."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_lic
from lic.errors import LicError

STANDIN = Path(__file__).parent / "pynq_standin"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("LIC_SIMULATE_LAYERS", "0")
    mp.delenv("XILINX_VIVADO", raising=False)
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def second_package(tmp_path_factory, quant_export, tiny_teacher_path, integer_hs_path):
    """The tiny student's architecture, bit widths and scales, other weights (its float weights
    perturbed by 30%, a stand-in for another rate point's student)."""
    import torch

    d = tmp_path_factory.mktemp("quant-b")
    obj = torch.load(quant_export, map_location="cpu", weights_only=False)
    g = torch.Generator().manual_seed(5)
    for k, v in obj["state_dict"].items():
        if k.endswith(".weight") and v.dim() == 4:
            obj["state_dict"][k] = v * (1 + 0.3 * torch.randn(v.shape, generator=g))
    torch.save(obj, d / "quant.pt")
    out = d / "tiny-b"
    assert run_lic("export", d / "quant.pt", "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path,
                   "-o", out, "--tile", "8") == 0
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory, monkeypatch_module, tiny_package, second_package):
    """The shared build (weights of both) and each student's own baked build."""
    root = tmp_path_factory.mktemp("shared")
    shared = root / "shared"
    assert run_lic("hw", "--board", "pynq-z2", "--package", tiny_package, "--tile", "8", "--shared-weights",
                   "--rate-packages", tiny_package, second_package, "-o", shared) == 0
    baked = {}
    for name, pkg in (("tiny", tiny_package), ("tiny-b", second_package)):
        baked[name] = root / f"baked-{name}"
        assert run_lic("hw", "--board", "pynq-z2", "--package", pkg, "--tile", "8", "-o", baked[name]) == 0
    return shared, baked


def final_model(build):
    from qonnx.core.modelwrapper import ModelWrapper

    return ModelWrapper(str(build / "intermediate_models" / "step_generate_estimate_reports.onnx"))


def runtime_layers(model):
    from hls.shared_weights import is_runtime_layer

    return [n for n in model.graph.node if is_runtime_layer(n)]


def test_shared_build_is_runtime_writable(builds):
    from qonnx.custom_op.registry import getCustomOp

    shared, baked = builds
    nodes = runtime_layers(final_model(shared))
    assert nodes and all(getCustomOp(n).get_nodeattr("runtime_writeable_weights") == 1 for n in nodes)
    assert not any(getCustomOp(n).get_nodeattr("runtime_writeable_weights") for n in runtime_layers(final_model(baked["tiny"])))
    steps = list(json.loads((shared / "report" / "time_per_step.json").read_text()))
    assert steps[steps.index("step_minimize_bit_width_initial") - 1] == "step_runtime_writable_weights"
    spec = json.loads((shared / "tile.json").read_text())
    assert spec["shared_weights"] == "runtime_weights/weights.json"
    est = json.loads((shared / "estimates.json").read_text())
    assert set(est["shared_weights"]["sets"]) == {"tiny", "tiny-b"}
    m = json.loads((shared / "runtime_weights" / "weights.json").read_text())
    assert [layer["interface"] for layer in m["layers"]] == [f"s_axilite_{k}" for k in range(len(nodes))]
    assert [layer["node"] for layer in m["layers"]] == [n.name for n in nodes]
    # the widths cover any student of these bit widths: the accumulators are FINN's worst case
    for layer, node in zip(m["layers"], nodes):
        if layer["kind"] == "weights":
            assert layer["acc_type"] == getCustomOp(node).get_nodeattr("accDataType")


def test_weight_files_decode_to_each_students_baked_integers(builds):
    """Each set's file of each layer, decoded from FINN's decoupled_runtime format, is that student's
    baked build's integer weight matrix exactly; its thresholds are the baked ones wherever the
    baked layer's input can reach (the shared thresholds are clipped to the wider worst-case
    accumulator, the baked ones to the narrower one: the same comparisons for every input)."""
    from qonnx.custom_op.registry import getCustomOp

    from hls.shared_weights import decode_weight_file

    shared, baked = builds
    m = json.loads((shared / "runtime_weights" / "weights.json").read_text())
    nodes = runtime_layers(final_model(shared))
    decoded = {}
    for s in m["sets"]:
        b_nodes = runtime_layers(final_model(baked[s["name"]]))
        b_model = final_model(baked[s["name"]])
        assert len(b_nodes) == len(nodes) == len(s["files"])
        for node, b_node, rel in zip(nodes, b_nodes, s["files"]):
            got = decode_weight_file(getCustomOp(node), shared / "runtime_weights" / rel)
            want = b_model.get_initializer(b_node.input[1])
            if node.op_type.startswith("MVAU"):
                assert np.array_equal(got, want), (s["name"], node.name)
            else:
                idt = getCustomOp(b_node).get_input_datatype(0)
                assert np.array_equal(np.clip(got, idt.min(), idt.max() + 1), want), (s["name"], node.name)
            decoded[(s["name"], node.name)] = got
    assert any(not np.array_equal(decoded[("tiny", n.name)], decoded[("tiny-b", n.name)]) for n in nodes)


def test_a_student_needing_more_bits_is_refused(builds):
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from hls.shared_weights import check_student

    shared, _ = builds
    initial = ModelWrapper(str(shared / "intermediate_models" / "step_minimize_bit_width_initial.onnx"))
    final = final_model(shared)
    assert len(check_student(initial, final, initial, "itself")) == len(runtime_layers(final))
    names = [n.name for n in runtime_layers(final)]
    # weights beyond the shared weight type
    student = ModelWrapper(initial.model.__deepcopy__())
    mvau = next(n for n in student.graph.node if n.op_type.startswith("MVAU"))
    w = student.get_initializer(mvau.input[1]).copy()
    w.flat[0] = DataType[getCustomOp(mvau).get_nodeattr("weightDataType")].max() + 1
    student.set_initializer(mvau.input[1], w)
    with pytest.raises(LicError, match=f"layer {names[0]} .*more bits than the shared fold allows"):
        check_student(initial, final, student, "student q9")
    # a wider declared weight type (a W+1 student)
    student = ModelWrapper(initial.model.__deepcopy__())
    mvau = next(n for n in student.graph.node if n.op_type.startswith("MVAU"))
    inst = getCustomOp(mvau)
    wider = DataType[f"INT{DataType[inst.get_nodeattr('weightDataType')].bitwidth() + 1}"]
    inst.set_nodeattr("weightDataType", wider.name)
    with pytest.raises(LicError, match=f"student q9: layer {names[0]} .*weightDataType {wider.name}.*more bits"):
        check_student(initial, final, student, "student q9")


# ---- the board side, on the recording stand-in of PYNQ ----------------------------------------


@pytest.fixture
def pynq():
    sys.path.insert(0, str(STANDIN))
    import pynq

    import host.fabric

    pynq.reset()
    host.fabric._DRIVERS.clear()
    yield pynq
    pynq.reset()
    host.fabric._DRIVERS.clear()
    sys.path.remove(str(STANDIN))
    for name in [m for m in sys.modules if m == "pynq" or m.startswith("pynq.")]:
        del sys.modules[name]


def board_folder(shared: Path, package, tmp_path: Path) -> Path:
    """The shared build as `make bitstream` would leave it: its tile.json and runtime_weights/, FINN's
    settings.json with runtime_weights on, placeholder bitfiles."""
    import shutil

    from test_board_driver import finn_settings

    out = tmp_path / "board"
    out.mkdir()
    shutil.copy(shared / "tile.json", out / "tile.json")
    shutil.copytree(shared / "runtime_weights", out / "runtime_weights")
    settings = finn_settings(package, json.loads((shared / "tile.json").read_text())["tile"])
    settings["driver_information"]["runtime_weights"] = True
    for name, text in (("driver/settings.json", json.dumps(settings)), ("bitfile/finn-accel.bit", "bit"),
                       ("bitfile/finn-accel.hwh", "<hwh/>")):
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text(text)
    return out


def test_driver_switches_weight_sets_write_for_write(pynq, builds, tiny_package, second_package, tmp_path):
    """Two packages on one shared bitstream: the first batch of each writes its set, every file word
    for word, in order, to its own layer's AXI-lite region (not all at offset 0, as finn-plus-driver
    does), then one batch of zeros flushes the weight streamers; a batch with the same set writes
    nothing; the stand-in's fabric runs the student whose weights are in its memories, and each
    backend's output is its own student's (the onnx backend), bit for bit."""
    from host.accelerator_driver import AXILITE_MB_S, read_words
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage

    shared, _ = builds
    pkgs = {"tiny": DecoderPackage.load(tiny_package), "tiny-b": DecoderPackage.load(second_package)}
    hw = board_folder(shared, pkgs["tiny"], tmp_path)
    m = json.loads((hw / "runtime_weights" / "weights.json").read_text())
    for k, layer in enumerate(m["layers"]):
        pynq.AXILITE[f"StreamingDataflowPartition_1/{layer['interface']}"] = (0x40000000 + (k << 20), layer["axilite_bytes"])
    sets = {s["name"]: [read_words(hw / "runtime_weights" / f) for f in s["files"]] for s in m["sets"]}

    def loaded() -> str:
        for name, files in sets.items():
            if all(np.array_equal(pynq.MEMORY.get(f"StreamingDataflowPartition_1/{layer['interface']}",
                                                  np.zeros(0, np.uint32))[:len(w)], w)
                   for layer, w in zip(m["layers"], files)):
                return name
        return "none"

    onnx = {name: make_backend("onnx", p) for name, p in pkgs.items()}
    backends = {name: make_backend("pynq", p, hw_dir=hw) for name, p in pkgs.items()}
    assert backends["tiny"].driver is backends["tiny-b"].driver  # one overlay for every rate point
    streams = backends["tiny"].driver.streams
    runs = []

    def fabric(x, count):
        runs.append(loaded())
        windows = x.view(np.int8).reshape(count, *streams.ishape_normal[1:])
        return np.ascontiguousarray(onnx[runs[-1]].run_windows(windows), dtype=np.int8).view(np.uint8)

    pynq.FABRIC = fabric
    tile, c = backends["tiny"].tile, pkgs["tiny"].latent_channels
    x = np.random.default_rng(3).integers(-20, 20, (2, tile, tile, c)).astype(np.int8)
    for name in ("tiny", "tiny", "tiny-b", "tiny"):
        pynq.LOG.clear()
        runs.clear()
        out = np.array(backends[name].run_windows(x.copy()))
        assert np.array_equal(out, onnx[name].run_windows(x.copy())), name
        info = backends[name].last_weight_load
        writes = [e for e in pynq.LOG if e[0] == "write" and e[1].startswith("StreamingDataflowPartition")]
        if info["loaded"]:
            want = [("write", f"StreamingDataflowPartition_1/{layer['interface']}", 4 * i, int(v))
                    for layer, w in zip(m["layers"], sets[name]) for i, v in enumerate(w)]
            assert writes == want
            assert runs == [name, name]  # the flush batch, then the real one, both on the new weights
            assert info["estimated_switch_s"] == pytest.approx(4 * sum(map(len, sets[name])) / (AXILITE_MB_S * 1e6))
        else:
            assert writes == [] and runs == [name]
    assert [backends[n].last_weight_load["loaded"] for n in ("tiny",)] == [True]


def test_shared_build_refuses_a_package_it_has_no_weights_for(pynq, builds, tiny_package, quant_export,
                                                             tiny_teacher_path, tmp_path):
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage

    shared, _ = builds
    hw = board_folder(shared, DecoderPackage.load(tiny_package), tmp_path)
    m = json.loads((hw / "runtime_weights" / "weights.json").read_text())
    m["sets"] = [s for s in m["sets"] if s["name"] != "tiny"]
    (hw / "runtime_weights" / "weights.json").write_text(json.dumps(m))
    with pytest.raises(LicError, match="carries no weights for package"):
        make_backend("pynq", DecoderPackage.load(tiny_package), hw_dir=hw)


# ---------------------------------------------------------------------------------------------
# The runtime-weight path simulated (hls/runtime_weight_sim.py)


def need_simulators():
    from hls import cppsim, verilator_sim

    for why in (verilator_sim.missing(), cppsim.missing()):
        if why:
            pytest.skip(why)


def simulate(shared, **kw):
    from hls.finn_workarounds import prepare_finn_import
    from hls.runtime_weight_sim import simulate_runtime_weights

    prepare_finn_import(shared / "finn_tmp")
    return simulate_runtime_weights(shared, 8, **kw)


def test_every_set_written_over_axilite_is_bit_exact(builds, monkeypatch):
    """Both sets, every runtime-writable layer: the driver's AXI-lite writes of the set's files into
    the simulated layer (Thresholding_rtl in Verilator; an HLS MVAU's weight streamer in Verilator,
    its weight stream then the weights of FINN's cppsim program), then the driver's flush batch, then
    the set's own tile: each output equals that set's own expected output, bit for bit (the set not
    baked into the build, tiny-b, included)."""
    need_simulators()
    monkeypatch.delenv("LIC_SIMULATE_LAYERS")
    shared, _ = builds
    report = simulate(shared)
    assert report["status"] == "ok"
    assert json.loads((shared / "report" / "runtime_weight_sim.json").read_text()) == report
    assert [s["set"] for s in report["sets"]] == ["tiny", "tiny-b"]
    m = json.loads((shared / "runtime_weights" / "weights.json").read_text())
    for s in report["sets"]:
        assert s["reference"].startswith(f"rate point {s['set']}'s own HW graph")
        assert [r["name"] for r in s["layers"]] == [layer["node"] for layer in m["layers"]]
        for r in s["layers"]:
            assert r["bit_exact"] is True, (s["set"], r)
            assert r["level"] == ("verilator" if r["kind"] == "Thresholding_rtl" else "memstream+cppsim")
            assert r["flush_batches"] == 1 and r["words_written"] > 0
            if r["kind"] == "MVAU_hls":
                assert r["weight_stream_exact"] is True
            else:
                assert r["cycles"]["axilite_writes"] == r["words_written"]
    # the words the harness wrote are the driver's: each file's words in order at 4 i
    from hls.runtime_weight_sim import driver_writes
    from host.accelerator_driver import read_words

    writes, flushes = driver_writes(shared, m["sets"][1], m["layers"])
    assert flushes == 1
    for layer, rel in zip(m["layers"], m["sets"][1]["files"]):
        w = read_words(shared / "runtime_weights" / rel)
        assert np.array_equal(writes[layer["interface"]], np.stack([4 * np.arange(len(w)), w], 1))


@pytest.mark.parametrize("mutation, layer", [("address", "Thresholding_rtl_0"), ("address", "MVAU_hls_0"),
                                             ("swap", "MVAU_hls_0"), ("no flush", "MVAU_hls_4")])
def test_a_wrong_write_is_caught(builds, monkeypatch, mutation, layer):
    """The driver's writes of set tiny-b changed on their way to one layer: every address one word
    on, two differing words of the file swapped, or the driver's flush batch left out (the weight
    streamer then still holds lines it prefetched from the build's own weights): the gate stops,
    naming the layer, the rate point and the first differing value."""
    need_simulators()
    from hls import runtime_weight_sim

    monkeypatch.delenv("LIC_SIMULATE_LAYERS")
    shared, _ = builds
    real = runtime_weight_sim.driver_writes

    def mutated(build, entry, layers):
        writes, flushes = real(build, entry, layers)
        interface = next(la["interface"] for la in layers if la["node"] == layer)
        w = writes[interface].copy()
        if mutation == "address":
            w[:, 0] += 4
        elif mutation == "swap":
            i = int(np.flatnonzero(w[1:, 1] != w[:-1, 1])[0])
            w[[i, i + 1], 1] = w[[i + 1, i], 1]
        else:
            flushes = 0
        writes[interface] = w
        return writes, flushes

    monkeypatch.setattr(runtime_weight_sim, "driver_writes", mutated)
    with pytest.raises(LicError, match=rf"^{layer}, rate point tiny-b \(.+\) differs from rate point tiny-b's "
                                       r".+ in \d+ of \d+ values; first at index \(.*\): expected -?\d+, got -?\d+$"):
        simulate(shared, sets=["tiny-b"], layers=[layer])
    report = json.loads((shared / "report" / "runtime_weight_sim.json").read_text())
    assert report["status"] == "failed" and report["error"].startswith(layer)


@pytest.mark.slow
def test_shipped_rate_points_written_over_axilite_at_tile_8(tmp_path, monkeypatch):
    """`lic hw --shared-weights` of the shipped architecture at tile 8 with the gate on, q3 (baked)
    and every other rate point `make packages` built: RTL MVAUs with their weight streamer, RTL
    thresholds and the HLS MVAU, every set bit-exact with its weights written over AXI-lite."""
    need_simulators()
    from hls.build import REPO

    others = sorted((REPO / "build" / "decoders").glob("q*/manifest.json"))
    if not others:
        pytest.skip("no build/decoders/q* packages (`make packages`)")
    monkeypatch.delenv("XILINX_VIVADO", raising=False)
    monkeypatch.setenv("LIC_SIMULATE_LAYERS", "1")
    out = tmp_path / "shared"
    packages = [REPO / "host" / "decoders" / "q3", *(m.parent for m in others)]
    assert run_lic("hw", "--board", "pynq-z2", "--tile", "8", "--shared-weights", "--rate-packages", *packages,
                   "-o", out) == 0
    report = json.loads((out / "report" / "runtime_weight_sim.json").read_text())
    assert report["status"] == "ok" and len(report["sets"]) == len(packages)
    kinds = {r["kind"] for s in report["sets"] for r in s["layers"]}
    assert {"MVAU_rtl", "Thresholding_rtl"} <= kinds
    assert all(r["bit_exact"] for s in report["sets"] for r in s["layers"])
    assert all(s["tile_source"].startswith("y_hat of Kodak") for s in report["sets"])
    est = json.loads((out / "estimates.json").read_text())
    assert est["shared_weights"]["simulated"]["status"] == "ok"
