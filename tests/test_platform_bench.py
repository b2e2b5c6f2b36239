"""`lic bench`: frame sets, energy counters, VIF, the row schema, FPGA rows from estimates, the GPU
results merge and the no-GPU path. The CPU measurement itself runs on one Kodak image."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import bench_report, metrics, platform_bench
from bench.energy import RaplCounter, rapl_counter, run_window
from bench.frames import HD_SIZES, frame_sets, hd_set, mosaic
from lic.cli import main
from lic.errors import LicError


def _images(n=9, h=512, w=768):
    rng = np.random.default_rng(0)
    return [(f"img{i:02d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(n)]


# --- frames ------------------------------------------------------------------------------------------

def test_hd_frames_are_mosaics_of_whole_images():
    images = _images()
    fs = hd_set("1080p", images, 2)
    assert (fs.width, fs.height) == (1920, 1080)
    assert all(f.shape == (1080, 1920, 3) and f.dtype == np.uint8 for _, f in fs.frames)
    # centre crop of a 3x3 mosaic of 768x512 images: offset (2304-1920)/2 = 192, (1536-1080)/2 = 228
    assert np.array_equal(fs.frames[0][1][0, 0], images[0][1][228, 192])
    assert np.array_equal(fs.frames[0][1][-1, -1], images[8][1][512 - 229, 768 - 193])
    assert not np.array_equal(fs.frames[0][1], fs.frames[1][1])  # images ran out: frame 1 starts one later


def test_frame_sets_and_errors():
    sets = frame_sets(_images(), ["kodak", "720p"], 1, kodak_limit=2)
    assert [(s.name, s.width, s.height, len(s.frames)) for s in sets] == [("kodak", 768, 512, 2), ("720p", 1280, 720, 1)]
    with pytest.raises(LicError, match="needs 9 landscape"):
        hd_set("1080p", _images(4), 1)
    with pytest.raises(LicError, match="unknown frame size"):
        frame_sets(_images(), ["4k"], 1)
    with pytest.raises(LicError, match="smaller than"):
        mosaic([np.zeros((10, 10, 3), np.uint8)] * 4, 2, 30, 10)
    assert set(HD_SIZES) == {"720p", "1080p"}


# --- energy ------------------------------------------------------------------------------------------

def _powercap(root, uj, max_uj=1000):
    d = root / "intel-rapl:0"
    d.mkdir(parents=True, exist_ok=True)
    (d / "name").write_text("package-0\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    sub = root / "intel-rapl:0:0"  # a sub-domain (core): not counted twice
    sub.mkdir(exist_ok=True)
    (sub / "name").write_text("core\n")
    return d


def test_rapl_counter_reads_package_domains_and_handles_wraparound(tmp_path):
    d = _powercap(tmp_path, 900)
    counter, how = rapl_counter(tmp_path)
    assert isinstance(counter, RaplCounter) and "1 package" in how
    (d / "energy_uj").write_text("950\n")
    assert counter.joules() == pytest.approx(50e-6)
    (d / "energy_uj").write_text("20\n")  # wrapped past max_energy_range_uj = 1000
    assert counter.joules() == pytest.approx(120e-6)


def test_no_rapl_is_not_measurable_not_zero(tmp_path):
    counter, how = rapl_counter(tmp_path / "absent")
    assert counter is None and how.startswith("not measurable here")
    (tmp_path / "empty").mkdir()
    assert rapl_counter(tmp_path / "empty")[0] is None


def test_run_window_repeats_until_time_and_count():
    calls = []
    w = run_window(lambda: calls.append(1), None, 0.05, min_iterations=5)
    assert w.iterations == len(calls) >= 5 and w.seconds >= 0.05
    assert w.joules is None and w.watts is None


def test_synthesis_window_and_best_batch_on_cpu():
    """The GPU measurement loop, run on the CPU device (the CUDA calls are its only difference)."""
    from bench.measure import batch_of, best_batch, synthesis_window

    module = torch.nn.Conv2d(4, 3, 3, padding=1)
    ys = [np.ones((4, 6, 8), np.int32), np.ones((4, 6, 8), np.int32), np.ones((4, 8, 6), np.int32)]
    assert batch_of(ys, 5, "cpu", torch.bfloat16).shape == (5, 4, 6, 8)  # most common shape, cycled
    w = synthesis_window(module, ys, 2, "cpu", torch.float32, None, 0.02)
    assert w["frames"] % 2 == 0 and w["fps"] > 0 and w["joules_per_frame"] is None
    b, fps = best_batch(module, ys, "cpu", torch.float32, 0.01, max_batch=4)
    assert b in (1, 2, 4) and fps > 0


# --- VIF ---------------------------------------------------------------------------------------------

def test_vif_identity_monotonic_and_size_limit(kodak):
    from PIL import Image

    with Image.open(kodak / "kodim23.png") as im:
        a = np.asarray(im.convert("RGB"))[:256, :256].copy()
    rng = np.random.default_rng(0)
    noisy = lambda s: np.clip(a.astype(int) + rng.integers(-s, s + 1, a.shape), 0, 255).astype(np.uint8)
    assert metrics.vif_p(a, a) == pytest.approx(1.0, abs=1e-6)
    v5, v30 = metrics.vif_p(a, noisy(5)), metrics.vif_p(a, noisy(30))
    assert 0 < v30 < v5 < 1
    assert metrics.vif_p(a[:40], a[:40]) is None


# --- schema, published anchors, GPU results ----------------------------------------------------------

def _gpu_row(**kw):
    row = {"platform": "gpu", "device": "GPU X", "decoder": "teacher", "width": 768, "height": 512, "fps": 100.0,
           "watts": 200.0, "joules_per_frame": None, "source": "measured", "method": "NVML, 10 s window"}
    row.update(kw)
    return row


def test_finalise_derives_energy_per_frame_and_pixel():
    # 200 W at 100 fps: 2.0 J a frame; over 768 x 512 = 393,216 pixels, 5.0863 uJ a pixel
    r = bench_report.finalise(_gpu_row())
    assert r["joules_per_frame"] == pytest.approx(2.0)
    assert r["uj_per_pixel"] == pytest.approx(5.086263)
    # a 2.0 W board at 20 fps: 0.1 J a frame
    assert bench_report.finalise(_gpu_row(watts=2.0, fps=20.0))["joules_per_frame"] == pytest.approx(0.1)
    # 0.5 J a frame at 100 fps: 50 W
    r = bench_report.finalise({**_gpu_row(watts=None), "joules_per_frame": 0.5})
    assert r["watts"] == pytest.approx(50.0)
    r = bench_report.finalise({k: v for k, v in _gpu_row(watts=None).items() if k != "fps"})
    assert r["fps"] is None and r["joules_per_frame"] is None and r["uj_per_pixel"] is None


@pytest.mark.parametrize("change, message", [({"source": None}, "source"), ({"source": "guessed"}, "source"),
                                             ({"method": ""}, "no method"), ({"fps": -1.0}, "positive")])
def test_rows_without_source_or_method_are_rejected(change, message):
    with pytest.raises(LicError, match=message):
        bench_report.check_rows([bench_report.finalise(_gpu_row(**change))])


def test_published_rows_are_labelled_with_sources():
    rows = [bench_report.finalise(r) for r in bench_report.published_rows()]
    bench_report.check_rows(rows)
    prim = next(r for r in rows if "PRIM" in r["method"])
    assert prim["source"] == "published" and "arXiv:2509.10366" in prim["method"]
    assert prim["fps"] == 184.0 and prim["joules_per_frame"] == 1.77


def test_gpu_results_round_trip_and_refusals(tmp_path):
    path = tmp_path / "gpu.json"
    bench_report.write_gpu_results(path, [_gpu_row(), _gpu_row(decoder="quant_student", batch=8)],
                                   {"gpu": "GPU X", "host_cpu": "CPU Y", "idle_watts": 30.0})
    machine, rows = bench_report.read_gpu_results(path)
    assert machine["gpu"] == "GPU X" and len(rows) == 2 and rows[0]["joules_per_frame"] == pytest.approx(2.0)
    doc = json.loads(path.read_text())
    doc["rows"][0]["source"] = "estimated"
    path.write_text(json.dumps(doc))
    with pytest.raises(LicError, match="not measured GPU rows"):
        bench_report.read_gpu_results(path)
    path.write_text('{"rows": []}')
    with pytest.raises(LicError, match="not a GPU results file"):
        bench_report.read_gpu_results(path)


def test_shipped_gpu_rows_are_measured_h100_rows_with_their_files():
    """The H100 rows `lic bench` merges when it has no gpu.json of its own: measured, every decoder,
    energy read, and they name the weights they decoded and the command that measured them."""
    machine, rows = bench_report.read_gpu_results(platform_bench.SHIPPED_GPU_RESULTS)
    assert "H100" in machine["gpu"] and machine["idle_watts"] > 0
    assert machine["command"].startswith("lic bench --device cuda") and len(machine["models"]["quant_student_sha256"]) == 64
    assert {r["decoder"] for r in rows} == {"teacher", "float_student", "quant_student"}
    for r in rows:
        assert r["source"] == "measured" and r["fps"] > 0 and r["joules_per_frame"] > r["joules_per_frame_above_idle"] > 0
        assert r["quality_frames"] == 6 and 20 < r["psnr"] < 35
    best = {d: max(r["fps"] for r in rows if r["decoder"] == d and r["precision"] == "fp32")
            for d in ("teacher", "float_student")}
    assert best["float_student"] > best["teacher"]  # the student's MAC budget shows on a GPU too


def test_gpu_note_says_when_the_rows_decoded_other_weights():
    ours = {"teacher": "q3-tuned", "quant_student_sha256": "a" * 64, "float_student_sha256": "b" * 64}
    meta = {"machine": "GPU X + CPU Y", "created": "2026-11-28", "command": "lic bench --device cuda",
            "models": {**ours, "quant_student_sha256": "c" * 64}}
    line = platform_bench.gpu_note(Path("gpu.json"), meta, 3, ours)
    assert "measured on GPU X + CPU Y, 2026-11-28" in line and "`lic bench --device cuda`" in line
    assert "other weights" in line and "cccccccccccc" in line and "aaaaaaaaaaaa" in line
    assert "other weights" not in platform_bench.gpu_note(Path("gpu.json"), {**meta, "models": ours}, 3, ours)


# --- FPGA rows ----------------------------------------------------------------------------------------

@pytest.fixture
def estimates(tmp_path):
    """The fields of a `make hw` estimates.json that the FPGA rows read (values of a PYNQ-Z2 build)."""
    return {"board": "pynq-z2", "clock_mhz": 100.0, "tile": 32, "halo": 2, "cycles_per_tile": 1_783_104,
            "latency_cycles_per_tile": 21_104_812, "build_dir": str(tmp_path),
            "resources": {"LUT": {"used": 44543.0}, "BRAM_18K": {"used": 122.0}, "DSP": {"used": 192.0}}}


def _complexity():
    from bench.measure import Complexity

    return Complexity(kmac_per_pixel=4.248, parameters=244_867, weight_bits=4, activation_bytes_per_latent=1000.0)


def test_tiles_count_halos():
    from hls.folding import tiles_per_frame

    assert tiles_per_frame((768, 512), 32, 2) == 2      # 48x32 latents
    assert tiles_per_frame((512, 768), 32, 2) == 2
    assert tiles_per_frame((1280, 720), 32, 2) == 6     # padded to 1280x768: 80x48 latents
    assert tiles_per_frame((1920, 1080), 32, 2) == 15   # 1920x1088: 120x68 latents, 5 x 3 windows of 28-latent step


# A power model with round coefficients, for arithmetic by hand (bench/data/fpga_power_model.json's layout)
TOY_POWER_MODEL = {"toggle_rate": 0.25, "coefficient_source": "ASSUMPTION: round numbers for a test",
                   "families": {"toy": {"ps_watts": 1.5, "dynamic_uw_per_mhz": {"LUT": 0.1, "BRAM_18K": 10.0, "DSP": 5.0}}},
                   "boards": {"pynq-z2": {"family": "toy", "pl_static_watts": 0.3}}}


def test_fpga_rows_without_arm_estimate_leave_board_rate_unknown(estimates, tmp_path):
    from bench.fpga import fpga_rows, model_power

    model = tmp_path / "power.json"
    model.write_text(json.dumps(TOY_POWER_MODEL))
    rows = fpga_rows("pynq-z2", estimates, [("kodak", 768, 512), ("1080p", 1920, 1080)], {}, _complexity(),
                     power_model=model, arm_path=tmp_path / "none.json")
    fabric = [r for r in rows if r["platform"] == "fpga-fabric"]
    board = [r for r in rows if r["platform"] == "fpga-board"]
    # 2 tiles for Kodak, 15 for 1080p (test_tiles_count_halos); 1,783,104 cycles a tile at 100 MHz:
    # 1e8 / 3,566,208 = 28.041 fps and 1e8 / 26,746,560 = 3.7388 fps
    assert [r["tiles"] for r in fabric] == [2, 15]
    assert fabric[0]["fps"] == pytest.approx(28.040989)
    assert fabric[1]["fps"] == pytest.approx(3.7387986)
    # one tile in, last out: FINN's 21,104,812-cycle latency, then a tile every 1,783,104 cycles:
    # (21,104,812 + 1,783,104) / 1e5 = 228.879 ms; (21,104,812 + 14 x 1,783,104) / 1e5 = 460.683 ms
    assert fabric[0]["latency_ms"] == pytest.approx(228.87916) and fabric[1]["latency_ms"] == pytest.approx(460.68268)
    # 4,248 MACs a pixel x 512 x 512 output pixels a tile x 2 tiles = 2,227,175,424 MACs
    assert fabric[0]["gmac_per_frame"] == pytest.approx(2.227175424)
    assert fabric[0]["on_chip_memory_bytes"] == 281_088  # 122 RAMB18 x 18 Kib = 122 x 2,304 bytes
    assert all(r["source"] == "estimated" and r["method"] for r in rows)
    assert all(r["fps"] is None and "ARM stages unknown" in r["method"] for r in board)
    # PL dynamic = units x uW/MHz x 100 MHz x (toggle 25% / the coefficients' 12.5% = 2):
    #   LUT 44,543 x 0.1 x 200 = 0.89086 W, BRAM 122 x 10 x 200 = 0.244 W, DSP 192 x 5 x 200 = 0.192 W
    # PL = 0.3 static + 1.32686 = 1.62686 W; chip = PL + 1.5 W PS = 3.12686 W
    p = model_power(estimates, "pynq-z2", model)
    assert p["pl_dynamic_watts"] == pytest.approx({"LUT": 0.89086, "BRAM_18K": 0.244, "DSP": 0.192})
    assert p["pl_watts"] == pytest.approx(1.62686) and p["chip_watts"] == pytest.approx(3.12686)
    assert fabric[0]["watts"] == pytest.approx(1.62686) and board[0]["watts"] == pytest.approx(3.12686)
    assert "ASSUMPTION" in model_power(estimates, "pynq-z2")["coefficient_source"]  # the shipped model says so
    rows = [bench_report.finalise(r) for r in rows]
    bench_report.check_rows(rows)
    # 1.62686 W / 28.041 fps = 0.058017 J a frame; 1.62686 W / 3.7388 fps = 0.43513 J
    assert rows[0]["joules_per_frame"] == pytest.approx(0.0580172)
    assert rows[2]["joules_per_frame"] == pytest.approx(0.4351290)
    assert rows[1]["joules_per_frame"] is None


def test_fpga_board_rate_is_the_slowest_stage(estimates, tmp_path):
    from bench.fpga import fpga_rows

    arm = tmp_path / "arm.json"
    arm.write_text(json.dumps({"board": "pynq-z2", "frame": [768, 512], "source": "estimated", "method": "qemu counts",
                               "stages_ms": {"parse": 1, "rans_z": 2, "h_s": 30, "rans_y": 40, "stitch": 7}}))
    rows = fpga_rows("pynq-z2", estimates, [("kodak", 768, 512), ("720p", 1280, 720)], {}, _complexity(),
                     board_watts=2.5, board_watts_how="meter", arm_path=arm)
    kodak_board, hd_board = rows[1], rows[3]
    assert kodak_board["fps"] == pytest.approx(1000 / 80) and kodak_board["limited_by"] == "ARM"
    # per-pixel work: 1280 x 720 = 921,600 pixels is 2.34375 x 768 x 512, so 30 ms -> 70.3125 ms
    assert hd_board["stages_ms"]["h_s"] == pytest.approx(70.3125)
    assert kodak_board["watts"] == 2.5 and kodak_board["source"] == "estimated"  # ARM side is an estimate
    # the meter's 2.5 W at the board's 12.5 fps: 0.2 J a frame
    assert bench_report.finalise(kodak_board)["joules_per_frame"] == pytest.approx(0.2)
    arm.write_text("{}")
    with pytest.raises(LicError, match="not an ARM stage file"):
        fpga_rows("pynq-z2", estimates, [("kodak", 768, 512)], {}, _complexity(), arm_path=arm)


def test_vivado_report_power_replaces_the_model(estimates, tmp_path):
    from bench.fpga import fpga_rows

    (tmp_path / "post_route_power.rpt").write_text("| Total On-Chip Power (W)  | 1.734        |\n")
    rows = fpga_rows("pynq-z2", estimates, [("kodak", 768, 512)], {}, _complexity(), arm_path=tmp_path / "x")
    assert rows[0]["watts"] == 1.734 and "report_power" in rows[0]["method"]


# --- the command ---------------------------------------------------------------------------------------

def test_device_cuda_without_gpu_is_one_line(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["bench", "--device", "cuda", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lic: error: --device cuda: no CUDA device")
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.parametrize("args, message", [(["--boards", "nosuch"], "unknown board"),
                                           (["--board-watts", "pynq-z2"], "BOARD=VALUE"),
                                           (["--hd-frames", "0"], "--hd-frames")])
def test_bad_arguments_fail_cleanly(args, message, capsys, tmp_path):
    assert main(["bench", *args, "--gpu-results", str(tmp_path / "absent.json"), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lic: error:") and (message in err or "no such file" in err)


def test_bench_subcommands_dispatch(tmp_path, monkeypatch, capsys):
    """`lic bench NAME` runs another bench module (e.g. engineer 10a's bench.entropy) when it exists."""
    from bench import platform_bench

    (tmp_path / "bench_probe.py").write_text(
        "def add_arguments(p):\n    p.add_argument('--x', type=int, default=1)\n"
        "def run(args):\n    print('probe', args.x)\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(platform_bench, "BENCH_SUBCOMMANDS", {"probe": ("bench_probe", "a probe")})
    assert main(["bench", "probe", "--x", "3"]) == 0
    assert "probe 3" in capsys.readouterr().out


def test_bench_one_image_cpu_rows_no_gpu_merge(kodak, tmp_path, capsys):
    """The whole command on one Kodak image, no FPGA build: measured CPU rows with energy 'not
    measurable' (no RAPL here), the published anchor, a GPU results file merged, files written."""
    bench_report.write_gpu_results(tmp_path / "gpu.json", [_gpu_row()], {"gpu": "GPU X", "host_cpu": "CPU Y"})
    rc = main(["bench", "--data", str(kodak), "--limit", "1", "--sizes", "kodak", "--boards", "none",
               "--rd-limit", "0", "-o", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    bench_report.check_rows(result["rows"])
    cpu = [r for r in result["rows"] if r["platform"] == "cpu"]
    assert sorted(r["decoder"] for r in cpu) == ["float_student", "quant_student", "teacher"]
    for r in cpu:
        assert r["source"] == "measured" and r["fps"] > 0 and set(r["stages_ms"]) == set(
            ("parse", "rans_z", "h_s", "rans_y", "synthesis", "stitch"))
        assert r["bpp"] == cpu[0]["bpp"] and 15 < r["psnr"] < 45 and 0 < r["vif"] < 1
        if rapl_counter()[0] is None:
            assert r["joules_per_frame"] is None and r["watts"] is None and "not measurable here" in r["method"]
    teacher = next(r for r in cpu if r["decoder"] == "teacher")
    assert teacher["psnr"] > next(r for r in cpu if r["decoder"] == "quant_student")["psnr"]
    assert math.isclose(teacher["gmac_per_frame"], teacher["kmac_per_pixel"] * 768 * 512 / 1e6)
    assert {r["source"] for r in result["rows"]} == {"measured", "published"}
    assert any(r["platform"] == "gpu" and r["device"] == "GPU X" for r in result["rows"])
    for f in ("report.md", "fps_vs_energy.png", "stages.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "GPU rows merged" in (tmp_path / "report.md").read_text()


def test_gpu_rows_loop_on_the_cpu_device(kodak):
    """`lic bench --device cuda`'s measuring loop, run on device "cpu" with no energy counter: every
    decoder and precision gets a batch-1 row with quality, and fp32 reproduces the CPU decode."""
    from types import SimpleNamespace

    from PIL import Image

    from bench.frames import FrameSet
    from bench.gpu import gpu_rows
    from bench.measure import encode_frames, entropy_half, load_models, quality, synthesiser

    import copy

    with Image.open(kodak / "kodim23.png") as im:
        crop = np.asarray(im.convert("RGB"))[128:256, 256:384].copy()
    fs = FrameSet("tiny", 128, 128, [("kodim23-crop", crop)], "test crop")
    models = load_models()
    # The loop is under test, not the teacher's speed: its g_s (10x the student's work) is swapped for a
    # copy of the float student so that twelve windows fit in a fast test on a shared 2-core machine.
    models.modules["teacher"] = copy.deepcopy(models.modules["float_student"])
    files = encode_frames(models, fs)
    entropy, _ = entropy_half(models, fs, files)
    session = SimpleNamespace(counter=None, idle_watts=None, energy_how="none (test)",
                              machine={"gpu": "cpu (test)", "host_cpu": "test"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a loaded 2-core machine spin far slower than one
    try:
        rows = gpu_rows(models, fs, files, entropy, 0.01, session, device="cpu", max_batch=1)
        # same thread count: float convolutions sum in a thread-dependent order
        reference = quality(fs, files, [synthesiser(models, "teacher")(entropy[0].lic, entropy[0].y)[0]])
    finally:
        torch.set_num_threads(threads)
    teacher = {r["precision"]: r for r in rows if r["decoder"] == "teacher" and r["batch"] == 1}
    assert set(teacher) == {"fp32", "fp16", "bf16"}
    assert teacher["fp32"]["psnr"] == reference["psnr"]
    assert abs(teacher["bf16"]["psnr"] - reference["psnr"]) < 1.0
    assert all(r["fps"] > 0 and r["joules_per_frame"] is None and r["source"] == "measured" for r in rows)
    assert {r["decoder"] for r in rows} == {"teacher", "float_student", "quant_student"}
    bench_report.check_rows([bench_report.finalise(r) for r in rows])


def test_track_writes_tensorboard_events(tmp_path, capsys):
    from tensorboardX.event_file_writer import EventFileWriter  # noqa: F401  (installed: the export needs it)

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 50, "loss": 0.5, "psnr_student": 20.0}\n'
                                   '{"step": 100, "loss": 0.25, "psnr_student": 21.5}\n{"step": 15')
    assert main(["track", str(run), "-o", str(tmp_path / "tb")]) == 0
    assert "2 records" in capsys.readouterr().out
    events = list((tmp_path / "tb" / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100
    from tensorboardX.proto import event_pb2  # read the records back: what TensorBoard will show
    import struct

    data, scalars = events[0].read_bytes(), []
    while data:
        (n,) = struct.unpack("<Q", data[:8])
        ev = event_pb2.Event.FromString(data[12:12 + n])
        scalars += [(v.tag, ev.step, round(v.simple_value, 3)) for v in ev.summary.value]
        data = data[12 + n + 4:]
    assert ("loss", 100, 0.25) in scalars and ("psnr_student", 50, 20.0) in scalars
    assert main(["track", str(tmp_path), "-o", str(tmp_path / "tb")]) == 1
    assert "no log.jsonl" in capsys.readouterr().err


def test_arm_stages_from_board_rate_result(estimates, tmp_path, monkeypatch):
    """`lic board-rate`'s JSON (issue 10) feeds the board row for its board only, at the slow end of
    its model (older files: of its CPI range)."""
    from bench import fpga

    seconds = lambda k: {"parse": 1e-4, "rans_z": 2e-3, "integer_hs": 0.03, "rans_y": 0.05, "tiles": 1e-3,
                         "to_rgb8": 9e-3, "entropy": 0.082}
    from board import rate as board_rate

    def doc(board, fps_low, fps_high, cores):
        return {"arm": {"board": board}, "fabric": {"board": board},
                "board": {"method": "estimated: qemu x CPI 1..2", "seconds_cpi_low": seconds(1),
                          "seconds_cpi_high": seconds(2),
                          "cpi_low": {"arm_fps_all_cores": fps_low, "cores": cores},
                          "cpi_high": {"arm_fps_all_cores": fps_high, "cores": cores}}}
    files = {"pynq-z2": tmp_path / "board-rate.json", "zcu104": tmp_path / "board-rate-zcu104.json",
             "kv260": tmp_path / "board-rate-kv260.json"}
    monkeypatch.setattr(board_rate, "result_path", files.get)
    files["pynq-z2"].write_text(json.dumps(doc("pynq-z2", 20.0, 12.5, 2)))
    arm = fpga.arm_stages("pynq-z2")
    assert arm["source"] == "estimated" and arm["arm_fps"] == 12.5 and "CPI-high" in arm["method"]
    assert "2 cores" in arm["method"]
    assert arm["stages_ms"]["h_s"] == pytest.approx(30.0) and arm["stages_ms"]["stitch"] == pytest.approx(10.0)
    assert fpga.arm_stages("zcu104") is None  # an A9 estimate says nothing about the A53 boards
    rows = fpga.fpga_rows("pynq-z2", estimates, [("kodak", 768, 512)], {}, _complexity())
    assert rows[1]["fps"] == pytest.approx(12.5) and rows[1]["limited_by"] == "ARM"
    # the A53 boards read their own estimate (4 cores), and a file written for another board is not theirs
    files["zcu104"].write_text(json.dumps(doc("zcu104", 60.0, 30.0, 4)))
    files["kv260"].write_text(json.dumps(doc("zcu104", 60.0, 30.0, 4)))
    arm = fpga.arm_stages("zcu104")
    assert arm["board"] == "zcu104" and arm["arm_fps"] == 30.0 and "4 cores" in arm["method"]
    assert fpga.arm_stages("kv260") is None
    # a result with the cycle model: its slow end (every simulated miss stalling) is the board row's
    modelled = doc("pynq-z2", 20.0, 12.5, 2)
    modelled["board"].update({"model_method": "modelled: llvm-mca + simulated misses",
                              "seconds_model_low": seconds(1), "seconds_model_high": seconds(1.5),
                              "model_low": {"arm_fps_all_cores": 30.0, "cores": 2},
                              "model_high": {"arm_fps_all_cores": 18.0, "cores": 2}})
    files["pynq-z2"].write_text(json.dumps(modelled))
    arm = fpga.arm_stages("pynq-z2")
    assert arm["arm_fps"] == 18.0 and "every miss stalling" in arm["method"] and "30.0 fps" in arm["method"]


def test_nvml_counter_without_a_gpu_is_a_clear_error():
    """nvidia-ml-py is pinned and imports anywhere; without an NVIDIA driver the counter says so."""
    import pynvml  # noqa: F401

    from bench.energy import NvmlCounter

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(LicError, match="NVML energy counter not readable"):
        NvmlCounter(0)
