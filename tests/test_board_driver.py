"""The board's path without a board: host/accelerator_driver.py and the pynq backend on a recording
stand-in of PYNQ (tests/pynq_standin: MMIO, DMA buffers with separate cached and DDR copies, an
IODMA pair whose "fabric" is the real student), side by side with finn-plus-driver's own code, the
pipelined runtime (order, bytes, overlap of its stages), and a decode with torch, onnx and qonnx
unimportable."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO

STANDIN = Path(__file__).parent / "pynq_standin"
# finn-plus-driver is not a dependency (it imports qonnx, so onnx, which the board cannot install): its
# wheel is fetched from the package registry into build/wheels/ the first time, only to compare against
FINN_PLUS_DRIVER = "finn-plus-driver==1.6.1"
FINN_PLUS_DRIVER_WHEEL = Path(os.environ.get(
    "LIC_FINN_PLUS_DRIVER_WHEEL", REPO / "build" / "wheels" / "finn_plus_driver-1.6.1-py3-none-any.whl"))


def _fetch_driver_wheel() -> str | None:
    """None once the wheel is there, else why it could not be fetched."""
    if FINN_PLUS_DRIVER_WHEEL.is_file():
        return None
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                            FINN_PLUS_DRIVER, "-d", str(FINN_PLUS_DRIVER_WHEEL.parent)],
                           capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "pip download timed out"
    if r.returncode != 0 or not FINN_PLUS_DRIVER_WHEEL.is_file():
        return (r.stderr.strip().splitlines() or ["no wheel written"])[-1]
    return None


@pytest.fixture
def pynq():
    """The stand-in as `pynq`, for this test only (the default backend is pynq wherever it imports)."""
    sys.path.insert(0, str(STANDIN))
    import pynq

    pynq.reset()
    yield pynq
    pynq.reset()
    sys.path.remove(str(STANDIN))
    for name in [m for m in sys.modules if m == "pynq" or m.startswith(("pynq.", "finn_plus_driver"))]:
        del sys.modules[name]


def finn_settings(package, tile: int) -> dict:
    """driver/settings.json as finn-plus 1.6.1's step_make_driver writes it for the tiny student's
    accelerator (tests/test_hw_build.py runs that step on `make hw`'s model: same keys, types and
    shapes), with the IODMA names MakeZYNQProject gives them in the block design (idma0, odma0;
    make_zynq_proj.py:469-472, 537: the part of ZynqBuild that runs Vivado)."""
    m, out = package.latent_channels, tile * package.upscale
    return {"driver_information": {
        "driver_type": "FINNDMAOverlay", "external_weights": False, "runtime_weights": False,
        "platform": "zynq-iodma", "fclk_mhz": 100.0,
        "io_shape_dict": {
            "idt": ["DataType['INT8']"], "idma_names": ["idma0"], "ishape_normal": [[1, tile, tile, m]],
            "ishape_folded": [[1, tile, tile, m, 1]], "ishape_packed": [[1, tile, tile, m, 1]],
            "odt": ["DataType['INT8']"], "odma_names": ["odma0"], "oshape_normal": [[1, out, out, 3]],
            "oshape_folded": [[1, out, out, 3, 1]], "oshape_packed": [[1, out, out, 3, 1]],
            "num_inputs": 1, "num_outputs": 1, "number_of_external_weights": 0,
            "external_weights_input_shapes": {}}},
        "experiment_information": {}}


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory, package):
    """A board build folder as `make bitstream` leaves it: tile.json (as hls/build.py writes it),
    driver/settings.json, bitfile/finn-accel.{bit,hwh} (placeholders: the stand-in loads nothing)."""
    out, m, tile = tmp_path_factory.mktemp("board"), package.manifest, 8
    spec = {"board": "pynq-z2", "tile": tile, "halo": package.halo, "upscale": package.upscale, "input_layout": "NHWC",
            "output_layout": "NHWC", "input_bits": m["input_bits"], "output_bits": m["output_bits"],
            "output_scale": package.output_scale, "file_fingerprint": m["file_fingerprint"],
            "student_sha256": m["files"].get("quant_student.pt"), "sim_model": "hw/student_hw.onnx",
            "bitfile": "bitfile/finn-accel.bit"}
    for name, text in (("tile.json", json.dumps(spec)), ("driver/settings.json", json.dumps(finn_settings(package, tile))),
                       ("bitfile/finn-accel.bit", "bit"), ("bitfile/finn-accel.hwh", "<hwh/>")):
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_text(text)
    return out


@pytest.fixture(scope="module")
def package(tiny_package):
    from host.decoder_package import DecoderPackage

    return DecoderPackage.load(tiny_package)


@pytest.fixture(scope="module")
def files(tiny_teacher, integer_hs):
    """Four board files (format v3), two frame sizes."""
    from training.teacher_codec import EntropyModels, encode

    models = EntropyModels(tiny_teacher, integer_hs, (8, 2))
    sizes = [(130, 150), (130, 150), (70, 200), (130, 150)]
    return [(f"f{i}", encode(models, np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)))
            for i, (h, w) in enumerate(sizes)]


def fabric_of(backend, streams):
    """The stand-in's fabric: a batch of the input DMA buffer's bytes -> the student's output bytes."""
    def run(x: np.ndarray, count: int) -> np.ndarray:
        windows = x.view(np.int8).reshape(count, *streams.ishape_normal[1:])
        return np.ascontiguousarray(backend.run_windows(windows), dtype=np.int8).view(np.uint8)
    return run


def events(log, kinds=("write", "flush", "invalidate")):
    return [e for e in log if e[0] in kinds]


def symbolic(log, buffers: dict):
    """Register writes and cache operations with buffer addresses named: {name: buffer}."""
    names = {}
    for name, buf in buffers.items():
        a = int(buf.device_address)
        names.update({("lo", a & 0xFFFFFFFF): f"{name}.lo", ("hi", a >> 32): f"{name}.hi", ("at", a): name})
    out = []
    for e in events(log):
        if e[0] == "write" and e[2] in (0x10, 0x14):
            out.append(("write", e[1], e[2], names.get(("lo" if e[2] == 0x10 else "hi", e[3]), e[3])))
        elif e[0] in ("flush", "invalidate"):
            out.append((e[0], names.get(("at", e[1]), e[1])))
        else:
            out.append(e)
    return out


def test_pynq_backend_decodes_through_its_dma_buffers(pynq, board_dir, package, files):
    """The pynq backend on the stand-in, the stand-in's fabric being the student in onnxruntime
    (tests/test_hw_build.py: FINN's HW graph gives the same integers; test_pynq_backend_on_finn_sim
    there runs it behind this stand-in): the windows go into the input DMA buffer (flushed, never
    copied), the image comes out of the output buffer (invalidated first: without it the ARM would
    read the zeros of its cached copy), bit for bit what the onnx backend decodes."""
    from host.backends import make_backend
    from host.runtime import HostDecoder

    backend = make_backend("pynq", package, hw_dir=board_dir)
    pynq.FABRIC = fabric_of(make_backend("onnx", package), backend.driver.streams)
    setup = list(pynq.LOG)
    assert setup[0] == ("overlay", str(board_dir / "bitfile/finn-accel.bit"), True) and ("fclk0_mhz", 100.0) in setup
    name, data = files[0]
    for threads in (1, 3):
        pynq.LOG.clear()
        a, _ = HostDecoder(package, backend, threads=threads).decode(data)
        b, _ = HostDecoder(package, make_backend("onnx", package), threads=threads).decode(data)
        assert np.array_equal(a, b)
        assert [e[0] for e in events(pynq.LOG, ("flush", "invalidate"))] == ["flush", "invalidate"]


def test_accelerator_driver_programs_the_iodmas_as_finn_plus_driver(pynq, board_dir, package):
    """finn-plus-driver 1.6.1's FINNDMAOverlay (its own code, from the wheel) and our driver on the
    same stand-in, one batch each as the runtime runs it (flush, execute, invalidate): the same
    overlay and clock set-up, the same buffers (shape, type, cacheable), the same register writes in
    the same order with the same values, the same cache operations. Reads differ by design: ours
    sleep between them."""
    why = _fetch_driver_wheel()
    if why:  # offline: the comparison needs finn-plus-driver's own code
        pytest.skip(f"finn-plus-driver's wheel not at {FINN_PLUS_DRIVER_WHEEL} and not fetched ({why}): "
                    f"`pip download --no-deps {FINN_PLUS_DRIVER} -d {FINN_PLUS_DRIVER_WHEEL.parent}`")
    from host.accelerator_driver import IODMADriver, read_settings

    info = read_settings(board_dir / "driver" / "settings.json")
    bitfile = str(board_dir / "bitfile" / "finn-accel.bit")
    n = 3
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (n, *info["io_shape_dict"]["ishape_normal"][0][1:])).astype(np.int8)
    pynq.FABRIC = lambda data, count: (data.reshape(count, -1)[:, :1].astype(np.int32) * 7 + np.arange(
        int(np.prod(info["io_shape_dict"]["oshape_packed"][0][1:])))).astype(np.uint8)
    pynq.DELAY_S = 0.05

    sys.path.insert(0, str(FINN_PLUS_DRIVER_WHEEL))
    try:
        from finn_plus_driver import get_driver_class

        kwargs = {k: v for k, v in json.loads((board_dir / "driver" / "settings.json").read_text())[
            "driver_information"].items() if k != "driver_type"}
        kwargs["runtime_weight_dir"] = str(board_dir / "driver" / "runtime_weights")
        kwargs["mlo_weight_dir"] = str(board_dir / "driver" / "mlo_weights")
        pynq.LOG_READS = False  # its wait reads the status register in a loop
        theirs = get_driver_class("FINNDMAOverlay")(bitfile, **kwargs)
        theirs.batch_size = n
        setup_theirs = [e for e in pynq.LOG if e[0] in ("overlay", "fclk0_mhz")] + \
            [e[:4] for e in pynq.LOG if e[0] == "allocate"][-2:]
        pynq.LOG.clear()
        ibuf, obuf = theirs.ibuf_packed_device[0], theirs.obuf_packed_device[0]
        ibuf.view(np.int8).reshape(x.shape)[...] = x
        ibuf.flush()
        theirs.execute_on_buffers()
        obuf.invalidate()
        run_theirs, out_theirs = symbolic(pynq.LOG, {"in": ibuf, "out": obuf}), np.array(obuf)
        reads_theirs = pynq.READS.get("odma0", 0)
    finally:
        sys.path.remove(str(FINN_PLUS_DRIVER_WHEEL))

    pynq.LOG.clear()
    pynq.READS.clear()
    ours = IODMADriver(Path(bitfile), info)
    bufs = ours.allocate(n)
    setup_ours = [e for e in pynq.LOG if e[0] in ("overlay", "fclk0_mhz")] + \
        [e[:4] for e in pynq.LOG if e[0] == "allocate"]
    pynq.LOG.clear()
    ours.input_windows(bufs)[...] = x
    out_ours = ours.run(bufs)
    run_ours = symbolic(pynq.LOG, {"in": bufs.ibuf, "out": bufs.obuf})

    assert setup_ours == setup_theirs
    assert run_ours == run_theirs
    assert [e[2] for e in run_ours if e[0] == "write"] == [0x10, 0x14, 0x1C, 0x00] * 2  # odma0, then idma0
    assert run_ours[0] == ("flush", "in") and run_ours[-1] == ("invalidate", "out")
    assert np.array_equal(out_ours.view(np.uint8).reshape(out_theirs.shape), out_theirs)
    # theirs spins on the register for the 50 ms batch; ours sleeps and reads it a few times
    assert pynq.READS["odma0"] < 100 < reads_theirs


def test_pipeline_keeps_order_and_bytes_and_overlaps(pynq, board_dir, package, files, monkeypatch):
    """decode_stream on the pynq backend, the stand-in's fabric the student in onnxruntime and
    busy 0.2 s per batch (the entropy decoding 0.1 s and the image 0.05 s more than they take): the files come back in order, each equal to the serial decode on onnx;
    the next frame's windows are written while the fabric runs, the image of a frame is made while
    the fabric runs the next, and the fabric is started again before the last frame's image is done.
    Stage times are the runtime's trace and the stand-in's fabric timeline. The wait sleeps: a few
    reads of the status register per batch, not a loop."""
    from host.backends import make_backend
    from host.runtime import HostDecoder

    backend = make_backend("pynq", package, hw_dir=board_dir)
    onnx = make_backend("onnx", package)
    pynq.FABRIC, pynq.DELAY_S, pynq.LOG_READS = fabric_of(onnx, backend.driver.streams), 0.2, False
    decoder = HostDecoder(package, backend, threads=2)
    decoder.trace = []
    entropy = decoder.entropy_decode
    # the tiny files decode in a millisecond: stages as slow as a board's, so that overlap can show
    decoder.entropy_decode = lambda *a: (time.sleep(0.1), entropy(*a))[1]
    import host.runtime

    to_rgb8 = host.runtime.windows_to_rgb8
    monkeypatch.setattr(host.runtime, "windows_to_rgb8", lambda *a: (time.sleep(0.05), to_rgb8(*a))[1])
    got = list(decoder.decode_stream(files))
    assert [name for name, _, _ in got] == [name for name, _ in files]
    serial = HostDecoder(package, onnx, tile=8, threads=1)
    for (name, data), (_, rgb, times) in zip(files, got):
        assert not isinstance(rgb, Exception), rgb
        assert np.array_equal(rgb, serial.decode(data)[0]), name
        assert times.seconds["synthesis"] > 0.2 and times.seconds["dequantise"] > 0.05
        assert times.seconds["cache_clean"] > 0 and times.seconds["cache_invalidate"] > 0  # measured on a board

    spans = {(stage, name): (t0, t1) for stage, name, t0, t1 in decoder.trace}
    fabric = sorted(pynq.TIMELINE, key=lambda e: e[1])
    assert len(fabric) == len(files)
    order = [name for name, _ in files]
    overlap = lambda a, b: a[0] < b[1] and b[0] < a[1]
    # frames 0 and 1 share a size; frame 2 changes it, so its buffers wait for frame 1 to finish
    assert overlap(spans["tiles", "f1"], fabric[0][1:3]), "frame 1's windows were not written while frame 0 ran"
    assert overlap(spans["to_rgb8", "f2"], fabric[3][1:3]) or overlap(spans["to_rgb8", "f0"], fabric[1][1:3]), \
        "no image was made while the fabric ran the next frame"
    assert any(overlap(spans["entropy", order[j]], fabric[i][1:3]) for i in range(len(files)) for j in range(i + 1, len(files))), \
        "no later file was entropy-decoded while the fabric ran"
    # the accelerator started frame 1 as soon as frame 0 was done (its image still being made)
    assert fabric[1][1] < spans["to_rgb8", "f0"][1]
    # a 0.2 s batch: read every 2 ms at most while no duration is known (the first batch of each
    # size), then slept through until 1 ms before its end; a loop on the register reads it ~1e5 times
    reads = pynq.READS["odma0"] - len(files)  # less the idle check before each start
    assert reads < 2 * 120 + 2 * 20, reads
    assert sum(1 for e in pynq.LOG if e[0] == "flush") == sum(1 for e in pynq.LOG if e[0] == "invalidate") == len(files)


def test_pipeline_passes_a_bad_file_through(pynq, board_dir, package, files):
    from host.backends import make_backend
    from host.runtime import HostDecoder
    from lic.errors import LicError

    backend = make_backend("pynq", package, hw_dir=board_dir)
    pynq.FABRIC = fabric_of(make_backend("onnx", package), backend.driver.streams)
    items = [files[0], ("bad", files[0][1][:40]), files[1]]
    got = list(HostDecoder(package, backend).decode_stream(items))
    assert [n for n, _, _ in got] == ["f0", "bad", "f1"]
    assert isinstance(got[1][1], LicError) and got[1][2] is None
    assert all(isinstance(got[i][1], np.ndarray) for i in (0, 2))


def test_driver_refuses_what_it_cannot_run(board_dir, tmp_path):
    from host.accelerator_driver import read_settings
    from lic.errors import LicError

    settings = json.loads((board_dir / "driver" / "settings.json").read_text())
    for change, message in (({"runtime_weights": True}, "runtime-writable"), ({"external_weights": True}, "external"),
                            ({"platform": "alveo"}, "zynq-iodma")):
        path = tmp_path / "settings.json"
        path.write_text(json.dumps({"driver_information": {**settings["driver_information"], **change}}))
        with pytest.raises(LicError, match=message):
            read_settings(path)


def test_wait_gives_up_with_one_line(pynq, board_dir):
    from host.accelerator_driver import IODMADriver, read_settings
    from lic.errors import LicError

    info = read_settings(board_dir / "driver" / "settings.json")
    driver = IODMADriver(board_dir / "bitfile" / "finn-accel.bit", info, timeout_s=0.05)
    done = threading.Event()
    pynq.FABRIC = lambda x, n: (done.wait(2), np.zeros(1, np.uint8))[1]
    bufs = driver.allocate(1)
    with pytest.raises(LicError, match="did not finish a batch of 1 in 0.05 s"):
        driver.wait(bufs, driver.start(bufs))
    done.set()


def test_board_path_imports_no_torch_onnx_qonnx(board_dir, tiny_package, files, tmp_path):
    """`lic decode` on the pynq backend (the default where `pynq` imports) with torch, onnx and
    qonnx (and FINN, brevitas, finn-plus-driver) unimportable: the board's whole path (runtime,
    rANS, integer h_s, the accelerator driver). The stand-in's fabric runs the student in
    onnxruntime, which imports none of them either."""
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder

    package = DecoderPackage.load(tiny_package)
    name, data = files[2]
    (tmp_path / "a.lic").write_bytes(data)
    np.save(tmp_path / "ref.npy", HostDecoder(package, make_backend("onnx", package), tile=8).decode(data)[0])
    script = f"""
import sys
BLOCKED = ("torch", "onnx", "qonnx", "finn", "brevitas", "finn_plus_driver", "onnxscript")
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on the board")
sys.meta_path.insert(0, Blocked())
sys.path.insert(0, {str(STANDIN)!r})
import numpy as np, onnxruntime as ort, pynq
from host.backends import default_backend
session = ort.InferenceSession({str(tiny_package / 'student.onnx')!r}, providers=["CPUExecutionProvider"])
def fabric(x, n):
    w = x.view(np.int8).reshape(n, 8, 8, -1).transpose(0, 3, 1, 2).astype(np.float32)
    out = np.concatenate([session.run(None, {{session.get_inputs()[0].name: w[i:i + 1]}})[0] for i in range(n)])
    return np.rint(out / np.float32({package.output_scale!r})).astype(np.int8).transpose(0, 2, 3, 1).copy().view(np.uint8)
pynq.FABRIC = fabric
assert default_backend() == "pynq"
from lic.cli import main
from host.image_io import load_rgb
assert main(["decode", {str(tmp_path / 'a.lic')!r}, "-o", {str(tmp_path / 'out.png')!r}, "--package",
             {str(tiny_package)!r}, "--hw-dir", {str(board_dir)!r}]) == 0
rgb, _ = load_rgb({str(tmp_path / 'out.png')!r})
assert np.array_equal(rgb, np.load({str(tmp_path / 'ref.npy')!r}))
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
assert not loaded, loaded
assert [e[0] for e in pynq.LOG if e[0] in ("flush", "invalidate")] == ["flush", "invalidate"]
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]


def test_board_rate_times_the_pipeline_on_the_fabric(pynq, board_dir, package, files):
    """`lic board-rate --on-board`'s end-to-end timing of decode_stream (here on the stand-in, its
    fabric 0.1 s per batch): the rate is the fabric's when nothing else is slower, and the
    accelerator is busy most of the time."""
    from board.rate import measure_pipeline
    from host.backends import make_backend
    from host.runtime import HostDecoder

    backend = make_backend("pynq", package, hw_dir=board_dir)
    pynq.FABRIC, pynq.DELAY_S, pynq.LOG_READS = fabric_of(make_backend("onnx", package), backend.driver.streams), 0.1, False
    r = measure_pipeline(HostDecoder(package, backend, threads=2), files[0][1], 6)
    assert 6 < r["fps"] <= 10.2 and r["accelerator_busy_share"] > 0.6 and r["frame_alone_ms"] > 100
