"""The board's ARM half: C kernels (host/native.py) equal their numpy definitions bit for bit, the
stage-by-stage runner (board/stages.py) equals the runtime, the board-rate arithmetic, the
qemu instruction counter, the per-board ARM (PYNQ-Z2's 2x Cortex-A9, ZCU104's / KV260's 4x Cortex-A53),
and (slow, needs `make arm-check`'s setup) the armhf / arm64 check itself."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from host import native
from host.integer_hyper import IntegerHyperSynthesis, IntegerLayer
from lic.errors import LicError

needs_library = pytest.mark.skipif(native.library() is None, reason="build/host/liblic_host.so not built: make setup")


@needs_library
def test_native_hs_equals_numpy_reference(integer_hs):
    rng = np.random.default_rng(0)
    for shape in ((4, 6), (1, 1), (3, 7)):
        for spread in (2, 20, 300):  # mostly zeros, dense, beyond int8 (clipped)
            z = rng.integers(-spread, spread + 1, (integer_hs.in_channels,) + shape)
            assert np.array_equal(integer_hs.indexes(z, "native"), integer_hs.indexes(z, "numpy"))
    assert integer_hs.implementation == "native"


@needs_library
def test_native_hs_on_the_shipped_model():
    from host.decode_cli import default_package

    hs = IntegerHyperSynthesis.load(default_package() / "integer_hs.npz")
    z = np.random.default_rng(1).integers(-6, 7, (hs.in_channels, 3, 5))
    assert np.array_equal(hs.indexes(z, "native"), hs.indexes(z, "numpy"))


@needs_library
def test_native_hs_hard_cases():
    """board.stages.kernel_cases (which `make arm-check` also runs on ARM, NEON paths): threshold
    rows spaced every way the kernel's linear first guess can get wrong, channel counts that are not
    multiples of the kernel's block, threshold rows of every length up to 300."""
    from board.stages import check_kernels, check_rgb8, kernel_cases

    assert len(list(kernel_cases())) == 9
    assert check_kernels() == []
    assert check_rgb8() == []


@needs_library
def test_native_upsampling_conv_equals_upsample_then_conv():
    """The native kernel folds nearest x2 + 3x3 into four 2x2 phase kernels on the low-resolution
    map: equal to upsampling first, on maps down to 1x1 and with weights at the int8 extremes (the
    phase sums then reach 4 x -128), on one thread or split by rows over several."""
    rng = np.random.default_rng(3)
    for shape in ((1, 1), (1, 4), (3, 2), (5, 7)):
        for weights in (rng.integers(-128, 128, (33, 6, 3, 3)), np.full((33, 6, 3, 3), -128), np.full((33, 6, 3, 3), 127)):
            layers = [IntegerLayer(rng.integers(-128, 128, (6, 4, 3, 3)).astype(np.int8),
                                   np.sort(rng.integers(-3000, 3000, (6, 31)), axis=1), False),
                      IntegerLayer(weights.astype(np.int8),
                                   np.sort(rng.integers(-300_000, 300_000, (33, 63)), axis=1), True)]
            hs = IntegerHyperSynthesis(layers, 8, {})
            z = rng.integers(-128, 128, (4,) + shape)
            reference = hs.indexes(z, "numpy")
            for threads in (1, 2, 3):  # rows shared between threads, each with its own halo
                assert np.array_equal(hs.indexes(z, "native", threads=threads), reference), (shape, threads)


def test_native_hs_refused_where_int32_could_overflow():
    w = np.full((1, 1024, 3, 3), 127, np.int8)  # 12-bit inputs: |acc| up to 2^11 x 127 x 9216 > 2^31
    wide = IntegerHyperSynthesis([IntegerLayer(w, np.zeros((1, 3), np.int64), False)], 12, {})
    assert not wide.native_ok and wide.implementation == "numpy"
    with pytest.raises(LicError, match="int32"):
        wide.indexes(np.ones((1024, 2, 2), np.int64), "native")


def test_missing_library_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv(native.LIB_ENV, str(tmp_path / "nope.so"))
    native.library.cache_clear()
    try:
        with pytest.raises(LicError, match="no such library"):
            native.library()
    finally:
        monkeypatch.delenv(native.LIB_ENV)
        native.library.cache_clear()


def _to_rgb8_float32(pixels, scale):
    """The definition: x = int * scale, clamp to [0, 1], x 255, round half to even, in float32."""
    x = pixels.astype(np.float32) * np.float32(scale)
    return np.ascontiguousarray(np.rint(np.clip(x, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0))


@pytest.mark.parametrize("use_library", [True, False])
def test_to_rgb8_equals_float32_definition_for_every_int16(monkeypatch, use_library):
    import host.runtime as runtime

    if use_library and native.library() is None:
        pytest.skip("build/host/liblic_host.so not built: make setup")
    if not use_library:
        monkeypatch.setattr(runtime, "library", lambda: None)
    every = np.arange(-2 ** 15, 2 ** 15, dtype=np.int16).reshape(1, 256, 256).repeat(3, axis=0)
    every[1] = every[1, ::-1]
    # powers of two 2^0 .. 2^-7 take the integer path in C (2^-7: the students' int8 outputs), the rest the table
    for scale in [2.0 ** -k for k in range(9)] + [1 / 255, 0.0037, 2.0]:
        for view in (every, every[:, 3:200, 5:77]):  # a cropped view: strided rows
            want = _to_rgb8_float32(view, scale)
            for threads in (1, 3):  # bands of rows on three threads (197 rows: uneven bands)
                got = runtime.to_rgb8(view, scale, threads)
                assert got.flags.c_contiguous and np.array_equal(got, want)


def test_board_stages_equal_the_runtime(tiny_package, tiny_teacher, integer_hs):
    from board.stages import run_all, stage_runner
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder
    from training.teacher_codec import EntropyModels, encode

    package = DecoderPackage.load(tiny_package)
    rgb = np.random.default_rng(3).integers(0, 256, (200, 330, 3), dtype=np.uint8)
    data = encode(EntropyModels(tiny_teacher, integer_hs), rgb)
    backend = make_backend("onnx", package)
    out, skipped = run_all(package, data, backend.run_windows)
    assert not skipped
    # the runtime on three threads (windows in and the image out shared) equals the stages one by one
    ref, _ = HostDecoder(package, backend, package.tile, threads=3).decode(data)
    assert np.array_equal(out["rgb"], ref)
    assert np.array_equal(out["indexes"], out["indexes_numpy"])
    assert out["tiles"].shape[1:] == (package.tile, package.tile, package.latent_channels)
    assert out["tiles"].dtype == out["fabric_windows"].dtype == np.int8  # the accelerator's INT8 streams
    # each stage alone, from the previous stage's outputs, gives the same result
    assert np.array_equal(stage_runner(package, "to_rgb8", data, out)(), out["rgb"])
    assert np.array_equal(stage_runner(package, "tiles", data, out)(), out["tiles"])


@pytest.mark.parametrize("use_library", [True, False])
def test_fabric_windows_in_and_image_out_equal_their_definitions(monkeypatch, use_library):
    """board.stages.window_cases / check_windows and check_rgb8_windows, which `make arm-check`
    also runs on ARM (NEON paths): the windows clipped and laid out NHWC, and the image from int8
    windows, equal their numpy definitions, in C and in the numpy fallback, on 1 and 3 threads."""
    import host.runtime as runtime
    import host.tiling as tiling
    from board.stages import check_rgb8_windows, check_windows

    if use_library and native.library() is None:
        pytest.skip("build/host/liblic_host.so not built: make setup")
    if not use_library:
        monkeypatch.setattr(runtime, "library", lambda: None)
        monkeypatch.setattr(tiling, "library", lambda: None)
    assert check_windows() == []
    assert check_rgb8_windows() == []


def test_fill_windows_refuses_a_buffer_of_another_shape():
    from host.tiling import TilePlan, fill_windows

    plan = TilePlan(8, 16, 8, 2)
    with pytest.raises(ValueError, match="not a C-contiguous"):
        fill_windows(np.zeros((4, 8, 16), np.int32), plan, np.empty((2, 8, 8, 4), np.int8), 8)
    with pytest.raises(ValueError, match="not a C-contiguous"):
        fill_windows(np.zeros((4, 8, 16), np.int32), plan, np.empty((3, 8, 8, 8), np.int8)[..., ::2], 8)


def test_board_rate_is_the_slowest_stage():
    from board.rate import ARM_STAGES, board_rate, core_split, with_rans_y

    assert core_split([1, 2, 3, 4], 2) == ([3], 6)
    assert core_split([10, 1, 1], 2) == ([1], 10)
    seconds = dict.fromkeys(ARM_STAGES, 0.001)
    seconds["integer_hs"] = 0.05  # 20 fps on one core
    r = board_rate(seconds, fabric_fps=28.0, shared=())
    assert r["limited_by"] == "ARM" and r["board_fps"] == pytest.approx(r["arm_fps_all_cores"])
    assert r["board_fps"] < 28 and r["arm_all_cores_s"] == pytest.approx(0.05 + 0.001 * 2)
    # shared by rows over both cores, the h_s counts half on each; the rest splits in pipeline order
    r = board_rate(seconds, fabric_fps=28.0, shared=("integer_hs",))
    assert r["arm_all_cores_s"] == pytest.approx(0.025 + 0.003) and r["limited_by"] == "fabric"
    assert sorted(r["cores_s"].values()) == pytest.approx([0.027, 0.028])
    assert all("1/2 of integer_hs" in core for core in r["cores_s"])
    assert board_rate(dict.fromkeys(ARM_STAGES, 0.001), 28.0)["limited_by"] == "fabric"
    assert with_rans_y({"entropy": 10, "rans_z": 1, "integer_hs": 4})["rans_y"] == 5
    assert isinstance(with_rans_y({"entropy": "no decoder", "rans_z": 1, "integer_hs": 4})["rans_y"], str)


def test_four_cores_split_the_serial_stages_in_order_and_share_the_rest():
    """ZCU104 / KV260: four A53 cores; the shared stages count 1/4 on each, the other stages go to
    the cores as four consecutive groups with the smallest maximum."""
    from board.rate import ARM_STAGES, board_rate, busiest_share, core_split

    assert core_split([1, 2, 3, 4], 4)[1] == 4
    assert core_split([4, 4, 1, 1, 4], 3) == ([1, 3], 5)
    assert core_split([2.0], 4)[1] == 2.0  # more cores than stages: the rest stay idle
    seconds = {"parse": 0.001, "rans_z": 0.002, "integer_hs": 0.080, "rans_y": 0.040, "tiles": 0.003,
               "to_rgb8": 0.006}
    shared = ("integer_hs", "rans_y")
    r = board_rate(seconds, fabric_fps=40.0, shared=shared, cores=4)
    assert r["cores"] == 4 and len(r["core_stages"]) == 4 and len(r["cores_s"]) == 4
    assert sum(r["core_stages"], []) == [k for k in ARM_STAGES if k not in shared]
    assert r["core_stages"][-1] == ["to_rgb8"]  # the largest serial stage alone
    assert r["arm_all_cores_s"] == pytest.approx(0.006 + 0.120 / 4)
    assert r["arm_one_core_s"] == pytest.approx(0.132) and r["limited_by"] == "ARM"
    assert all("1/4 of integer_hs, 1/4 of rans_y" in core for core in r["cores_s"])
    # the runtime shares the windows in and the image out too: all but parse and rans_z
    every = board_rate(seconds, fabric_fps=40.0, cores=4)
    assert every["arm_all_cores_s"] == pytest.approx(0.002 + 0.129 / 4)
    # y in two equal substreams: four cores take it in halves
    halves = board_rate(seconds, fabric_fps=40.0, cores=4, pieces={"rans_y": [1, 1]})
    assert halves["arm_all_cores_s"] == pytest.approx(0.002 + 0.089 / 4 + 0.040 / 2)
    assert all("1/4 of integer_hs, 1/2 of rans_y, 1/4 of tiles" in core for core in halves["cores_s"])
    assert halves["arm_one_core_s"] == pytest.approx(0.132)
    # 768x512 in 32-latent windows: cores of 32x30 and 32x18 latents. One substream per core puts 62.5%
    # of y on one core; two bands of rows per core (the encoder's choice since Nov 2026) 50% on two
    # cores and 31.25% on four, as the runtime's pool hands them out in stream order
    assert busiest_share([960, 576], 2) == 0.625 and busiest_share([960, 576], 4) == 0.625
    assert busiest_share([480, 480, 288, 288], 2) == 0.5 and busiest_share([480, 480, 288, 288], 4) == 0.3125
    bands = board_rate(seconds, fabric_fps=40.0, cores=4, pieces={"rans_y": [480, 480, 288, 288]})
    assert bands["arm_all_cores_s"] == pytest.approx(0.002 + 0.089 / 4 + 0.040 * 0.3125)
    assert all("31% of rans_y" in core for core in bands["cores_s"])
    two = board_rate(seconds, fabric_fps=40.0, cores=2)
    assert two["arm_fps_all_cores"] < r["arm_fps_all_cores"]


def test_each_board_has_its_arm_clock_cores_and_result_file():
    from board.rate import DEFAULT_OUT, REPO as BENCH_REPO, arm_cpu, estimate_method, estimated_seconds, \
        result_path

    a9, zcu, kv = arm_cpu("pynq-z2"), arm_cpu("zcu104"), arm_cpu("kv260")
    assert (a9["core"], a9["arch"], a9["cores"], a9["clock_mhz"]) == ("Cortex-A9", "armhf", 2, 650)
    assert (zcu["core"], zcu["arch"], zcu["cores"], zcu["clock_mhz"]) == ("Cortex-A53", "arm64", 4, 1200)
    assert (kv["core"], kv["arch"], kv["cores"], kv["clock_mhz"]) == ("Cortex-A53", "arm64", 4, 1333)
    assert all(c["clock_source"] and list(c["cpi_assumed"]) == [1.0, 2.0] for c in (a9, zcu, kv))
    # 1.2e9 instructions at CPI 2 on a 1200 MHz A53: 2 s; a stage that could not run keeps its reason
    assert estimated_seconds({"rans_y": 1.2e9, "png": "no Pillow"}, 2.0, 1200) == {"rans_y": 2.0, "png": "no Pillow"}
    method = estimate_method(zcu, 1.0, 2.0, 1200)
    assert "qemu-aarch64" in method and "-mcpu=cortex-a53" in method and "(assumed)" in method
    assert "1200 MHz Cortex-A53" in method and "4 cores" in method
    # PYNQ-Z2 keeps the file its readers know; the others get their own
    assert result_path("pynq-z2") == DEFAULT_OUT == BENCH_REPO / "build" / "board-rate.json"
    assert result_path("zcu104") == BENCH_REPO / "build" / "board-rate-zcu104.json"
    assert result_path("kv260").name == "board-rate-kv260.json"


def test_board_rate_without_its_arm_root_or_tools_is_a_one_line_error(tmp_path, monkeypatch):
    from board import arm_check

    proc = subprocess.run([sys.executable, "-m", "lic.cli", "board-rate", "--board", "zcu104",
                           "--root", str(tmp_path / "no-root"), "-o", str(tmp_path / "out.json")],
                          cwd=REPO, capture_output=True, text=True)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and err.startswith("lic: error: ")
    assert "setup_root.sh" in err and "arm64" in err and not (tmp_path / "out.json").exists()
    monkeypatch.setattr(arm_check.shutil, "which", lambda name: None)
    with pytest.raises(LicError, match="aarch64-linux-gnu-gcc not found: run `board/armhf/setup_root.sh "
                                       "build/arm64-root arm64`"):
        arm_check.cross_compile(tmp_path, "arm64")
    with pytest.raises(LicError, match="qemu-aarch64 not found"):
        arm_check.qemu_command(tmp_path, "plugin.so", "arm64")


@pytest.mark.parametrize("cc, qemu, caches", [
    ("arm-linux-gnueabihf-gcc", "qemu-arm", "pynq-z2"), ("aarch64-linux-gnu-gcc", "qemu-aarch64", "zcu104")])
def test_block_profiler_is_exact_linear_and_sees_the_caches(tmp_path, cc, qemu, caches):
    if not (shutil.which(qemu) and shutil.which(cc)):
        pytest.skip(f"{qemu} or {cc} not installed (board/armhf/setup_root.sh installs them)")
    from board.arm_cycles import Profile, cache_argument, plugin
    from hls.boards import load_board

    plugin_so = plugin(tmp_path)
    src = tmp_path / "loop.c"
    # n passes of a sum over 64 KiB: twice the L1 D, a quarter of the L2 (PYNQ-Z2 and ZCU104 alike)
    src.write_text("#include <stdlib.h>\nstatic volatile char buf[65536];\n"
                   "int main(int c, char **v) { int s = 0; for (int i = atoi(v[1]); i > 0; i--)"
                   " for (int j = 0; j < 65536; j += 16) s += buf[j]; return s & 1; }\n")
    exe = tmp_path / "loop"
    subprocess.run([cc, "-O1", "-static", "-o", str(exe), str(src)], check=True)
    line = load_board(caches).arm["caches"]["line"]

    def profile(n):
        out = tmp_path / f"{n}.blocks"
        arg = f"{plugin_so},out={out},caches={cache_argument(load_board(caches).arm['caches'])}"
        subprocess.run([qemu, "-plugin", arg, str(exe), str(n)], check=True)
        return Profile.read(out)

    one, two, three = profile(1), profile(2), profile(3)
    step, again = two.minus(one, 1), three.minus(two, 1)
    assert step.blocks == again.blocks and step.instructions >= 3 * 65536 // 16  # the inner loop, exactly
    assert max(step.blocks.values()) >= 65536 // 16 - 1  # its block ran once per element read (the first in another)
    # every pass misses L1 on each line of the 64 KiB (LRU, twice the L1; a few more for the stack) and hits
    # L2, in order: sequential misses, which a prefetcher would have fetched
    assert step.cache == again.cache and 65536 // line <= step.cache["l1d_misses"] <= 65536 // line + 8
    assert step.cache["l2_hits_random"] <= 8
    assert step.cache["l2_misses"] == 0


def test_llvm_mca_source_from_qemus_disassembly():
    from board.arm_cycles import mca_source

    # conditions inside a Thumb IT block move into the mnemonics, branches go to a label, alignment in bits
    assert mca_source(["ite lt", "ldr r3, [r5, #4]", "ldr.w r3, [r5, #8]", "cmp r3, #1", "bls #0x3fee0048"]) == [
        "ite lt", "ldrlt r3, [r5, #4]", "ldrge.w r3, [r5, #8]", "cmp r3, #1", "bls 2f"]
    assert mca_source(["vld1.16 {d6}, [lr:0x40]!", "cbz r3, #0x3fff1f7e", "b.ne #0x4000a0"]) == [
        "vld1.16 {d6}, [lr:64]!", "cbz r3, 2f", "b.ne 2f"]
    # register lists (LLVM's Cortex-A9 model cannot price them) as LDRD/STRD pairs
    assert mca_source(["push.w {r4, r5, r6, r7, r8, lr}", "pop {r4, r5, r6, pc}"]) == [
        "strd r4, r5, [sp, #0]", "strd r6, r7, [sp, #8]", "strd r8, lr, [sp, #16]",
        "ldrd r4, r5, [sp, #0]", "ldrd r6, lr, [sp, #8]", "bx lr"]


def test_board_rate_without_llvm_mca_says_how_to_get_it(monkeypatch):
    from board import arm_cycles

    def missing(*args, **kwargs):
        raise FileNotFoundError("llvm-mca")

    monkeypatch.setattr(arm_cycles.subprocess, "run", missing)
    with pytest.raises(LicError, match=r"llvm-mca not found: `apt-get install llvm`"):
        arm_cycles.check_llvm_mca()


def test_llvm_mca_prices_a_neon_block():
    from board.arm_cycles import block_cycles

    if shutil.which("llvm-mca") is None:
        pytest.skip("llvm-mca not installed (board/armhf/setup_root.sh installs llvm)")
    one = block_cycles("vmlal.s16 q8, d0, d6[0]", "armhf", "cortex-a9")
    # eight independent accumulators issue back to back; eight into one wait for each other
    spread = block_cycles(";".join(f"vmlal.s16 q{8 + i}, d0, d6[0]" for i in range(8)), "armhf", "cortex-a9")
    chained = block_cycles(";".join("vmlal.s16 q8, d0, d6[0]" for _ in range(8)), "armhf", "cortex-a9")
    assert one and 0 < spread < chained
    assert block_cycles("not an instruction", "armhf", "cortex-a9") is None


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["armhf", "arm64"])
def test_arm_check_passes(tmp_path, arch):
    if not (REPO / "build" / f"{arch}-root" / ".complete").is_file():
        pytest.skip(f"{arch} root not set up: board/armhf/setup_root.sh build/{arch}-root {arch}")
    proc = subprocess.run([sys.executable, "-m", "board.arm_check", "--arch", arch, "--limit", "1",
                           "-o", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bit-exact" in proc.stdout and "DIFFERS" not in proc.stdout


def test_demo_reports_both_estimates_of_the_board_rate(tmp_path, monkeypatch):
    from board import rate as board_rate

    secs = {"parse": 0.001, "rans_z": 0.002, "integer_hs": 0.06, "rans_y": 0.02, "tiles": 0.002, "to_rgb8": 0.008}
    path = tmp_path / "board-rate.json"
    monkeypatch.setattr(board_rate, "result_path", lambda board: path)
    rate = lambda scale: board_rate.board_rate({k: v * scale for k, v in secs.items()}, 28.0, ("integer_hs", "rans_y"))
    path.write_text(json.dumps({"arm": {"board": "pynq-z2", "llvm_mcpu": "cortex-a9"},
                                "board": {"method": "instructions x CPI", "cpi_low": rate(0.5), "cpi_high": rate(1.0),
                                          "model_low": rate(0.4), "model_high": rate(0.8)}}))
    line, = board_rate.report_lines(28.0)
    # two cores: 1/2 of h_s + y (40 ms) + the larger serial group (8 ms) at scale 1, the board capped by the fabric
    assert "ARM stages 26.0-52.1 fps, modelled (core: llvm-mca's cortex-a9" in line
    assert "Board rate: 26.0-28.0 fps, modelled" in line
    assert "instructions x an assumed CPI" in line and "ARM stages 20.8-41.7 fps, board 20.8-28.0 fps" in line


def test_board_rate_json_gives_the_host_stages(tmp_path):
    """`lic board-rate`'s A9 estimate feeds hls.estimates.board_rate: its two ARM cores are the host stages."""
    from hls.estimates import board_rate, read_host_times

    secs = {"parse": 0.001, "rans_z": 0.002, "integer_hs": 0.100, "rans_y": 0.030, "tiles": 0.002, "to_rgb8": 0.008,
            "png": 1.0}
    from board.rate import board_rate as arm_rate

    TWO = ("integer_hs", "rans_y")  # the stages the cores share, as the hand-made sums below assume

    path = tmp_path / "board-rate.json"
    arm = {"board": "pynq-z2", "core": "Cortex-A9", "cpi_assumed": [1.0, 2.0]}
    path.write_text(json.dumps({"arm": arm, "board": {"seconds_cpi_high": secs, "cpi_high": arm_rate(secs, 23.5, TWO)}}))
    host_ms, source = read_host_times(path)
    # integer_hs and rans_y half on each core: [parse, rans_z, tiles] + 65 | [to_rgb8] + 65
    assert sorted(host_ms.values()) == pytest.approx([70.0, 73.0])
    assert "Cortex-A9-estimated" in source
    r = board_rate(23.5, host_ms, source)
    assert r["fps"] == pytest.approx(1000 / 73.0) and r["limited_by"].startswith("ARM core 1")
    # a ZCU104 / KV260 estimate: four A53 cores are four host stages
    arm = {"board": "zcu104", "core": "Cortex-A53", "cpi_assumed": [1.0, 2.0]}
    path.write_text(json.dumps({"arm": arm, "board": {"seconds_cpi_high": secs, "cpi_high": arm_rate(secs, 40, TWO, cores=4)}}))
    host_ms, source = read_host_times(path)
    assert len(host_ms) == 4 and "Cortex-A53-estimated at CPI 2" in source
    assert max(host_ms.values()) == pytest.approx(8.0 + 130.0 / 4)
    # with the cycle model: its slow end, every simulated miss stalling
    arm = {"board": "pynq-z2", "core": "Cortex-A9", "llvm_mcpu": "cortex-a9"}
    slow = {k: 2 * v for k, v in secs.items()}
    path.write_text(json.dumps({"arm": arm, "board": {"seconds_cpi_high": secs, "cpi_high": arm_rate(secs, 23.5, TWO),
                                                      "model_high": arm_rate(slow, 23.5, TWO)}}))
    host_ms, source = read_host_times(path)
    assert sorted(host_ms.values()) == pytest.approx([140.0, 146.0]) and "Cortex-A9-modelled" in source
