"""The pipelined board runtime on Debian's armhf Python and numpy under qemu-user (the PYNQ-Z2's
userland ABI, board/arm_check.py): the pynq backend, host/accelerator_driver.py and decode_stream's
three threads over the recording stand-in of PYNQ, whose fabric checks each batch's windows
against x86's and answers with x86's output windows of the real student (onnxruntime has no armhf
build). Needs `make arm-check` (or `make board-rate`) to have set up build/armhf-root, the
cross-compiled C code in build/armhf and the reference files in build/arm-check/refs; emulated
times say nothing about a board."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import REPO

STANDIN = REPO / "tests" / "pynq_standin"
ROOT, LIBS, REFS = REPO / "build" / "armhf-root", REPO / "build" / "armhf", REPO / "build" / "arm-check" / "refs"


@pytest.mark.slow
def test_pipelined_runtime_on_armhf(tmp_path):
    from board.arm_check import qemu_command, qemu_env
    from host.decode_cli import default_package
    from host.decoder_package import DecoderPackage
    from lic.errors import LicError

    refs = sorted(REFS.glob("*.x86.npz"))
    if not refs or not (LIBS / "liblic_host.so").is_file():
        pytest.skip(f"no armhf build or references ({LIBS}, {REFS}): run `make arm-check` first")
    try:
        cmd = qemu_command(ROOT)
    except LicError as e:
        pytest.skip(str(e))
    package = DecoderPackage.load(default_package())
    name = refs[0].name.removesuffix(".x86.npz")
    with np.load(refs[0]) as ref:
        n, tile = ref["tiles"].shape[:2]
        out = ref["fabric_windows"].shape[1]
    settings = {"driver_information": {
        "driver_type": "FINNDMAOverlay", "external_weights": False, "runtime_weights": False, "platform": "zynq-iodma",
        "fclk_mhz": 100.0, "io_shape_dict": {
            "idt": ["DataType['INT8']"], "idma_names": ["idma0"], "ishape_normal": [[1, tile, tile, package.latent_channels]],
            "ishape_folded": [[1, tile, tile, package.latent_channels, 1]],
            "ishape_packed": [[1, tile, tile, package.latent_channels, 1]], "odt": ["DataType['INT8']"],
            "odma_names": ["odma0"], "oshape_normal": [[1, out, out, 3]], "oshape_folded": [[1, out, out, 3, 1]],
            "oshape_packed": [[1, out, out, 3, 1]], "num_inputs": 1, "num_outputs": 1}}}
    m = package.manifest
    spec = {"board": "pynq-z2", "tile": int(tile), "halo": package.halo, "upscale": package.upscale,
            "input_layout": "NHWC", "output_layout": "NHWC", "input_bits": m["input_bits"], "output_bits": m["output_bits"],
            "output_scale": package.output_scale, "file_fingerprint": m["file_fingerprint"],
            "student_sha256": m["files"].get("quant_student.pt"), "bitfile": "bitfile/finn-accel.bit"}
    for f, text in (("tile.json", json.dumps(spec)), ("driver/settings.json", json.dumps(settings)),
                    ("bitfile/finn-accel.bit", "bit"), ("bitfile/finn-accel.hwh", "<hwh/>")):
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_text(text)
    script = tmp_path / "run.py"
    script.write_text(f"""
import json, platform, sys
sys.path[:0] = [{str(REPO)!r}, {str(STANDIN)!r}]
import numpy as np
import pynq
from host.backends import make_backend, default_backend
from host.decoder_package import DecoderPackage
from host.runtime import HostDecoder

ref = dict(np.load({str(refs[0])!r}))
batches = []
def fabric(x, count):
    batches.append(bool(np.array_equal(x.view(np.int8).reshape(ref["tiles"].shape), ref["tiles"])))
    return ref["fabric_windows"].view(np.uint8)
pynq.FABRIC, pynq.DELAY_S, pynq.LOG_READS = fabric, 0.3, False
assert default_backend() == "pynq"
package = DecoderPackage.load({str(package.root)!r})
decoder = HostDecoder(package, make_backend("pynq", package, hw_dir={str(tmp_path)!r}), threads=2)
decoder.trace = []
data = open({str(REFS / (name + '.lic'))!r}, "rb").read()
got = list(decoder.decode_stream([("f%d" % i, data) for i in range(3)]))
spans = {{(s, f): (a, b) for s, f, a, b in decoder.trace}}
fab = sorted(pynq.TIMELINE, key=lambda e: e[1])
overlap = lambda a, b: a[0] < b[1] and b[0] < a[1]
print(json.dumps({{
    "platform": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
    "names": [g[0] for g in got], "equal": [bool(np.array_equal(g[1], ref["rgb"])) for g in got],
    "windows_equal": batches, "tiles_during_fabric": overlap(spans["tiles", "f1"], fab[0][1:3]),
    "entropy_during_fabric": any(overlap(spans["entropy", "f%d" % j], fab[i][1:3]) for i in range(3) for j in range(i + 1, 3)),
    "rgb_during_next_fabric": any(overlap(spans["to_rgb8", "f%d" % i], fab[i + 1][1:3]) for i in range(2)),
    "flushes": sum(e[0] == "flush" for e in pynq.LOG), "invalidates": sum(e[0] == "invalidate" for e in pynq.LOG),
    "status_reads": pynq.READS["odma0"]}}))
""")
    env = qemu_env({"LIC_HOST_LIB": LIBS / "liblic_host.so", "LIC_RANS_LIB": LIBS / "liblic_rans.so"})
    env.pop("OPENBLAS_NUM_THREADS", None)
    r = subprocess.run(cmd + [str(script)], env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(result)
    assert result["platform"] == "armv7l"
    assert result["names"] == ["f0", "f1", "f2"] and all(result["equal"]) and result["windows_equal"] == [True] * 3
    assert result["flushes"] == result["invalidates"] == 3
    assert result["tiles_during_fabric"] and result["entropy_during_fabric"] and result["rgb_during_next_fabric"]
    assert os.path.isdir(STANDIN)
