"""The torch-free host runtime: rANS from the package's CDF tables, decoder packages, backends,
tiling, and `lic export` / `lic decode --decoder student`, on the tiny teacher and student."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_lic
from host.backends import make_backend
from host.container import parse
from host.decoder_package import DecoderPackage
from host.runtime import HostDecoder, StageTimes, decode_latents
from host.tiling import TilePlan, axis_windows
from lic.errors import LicError
from training.teacher_codec import EntropyModels, decode_y_hat, encode


@pytest.fixture(scope="module")
def package(tiny_package):
    return DecoderPackage.load(tiny_package)


@pytest.fixture(scope="module")
def v2_file(tiny_teacher, integer_hs) -> bytes:
    """A 200x330 image (latent 16x24 after padding: not square, not a multiple of the tile)."""
    rgb = np.random.default_rng(3).integers(0, 256, (200, 330, 3), dtype=np.uint8)
    return encode(EntropyModels(tiny_teacher, integer_hs), rgb)


def test_latents_equal_compressai_decoding(package, v2_file, tiny_teacher, integer_hs):
    ref = decode_y_hat(EntropyModels(tiny_teacher, integer_hs), parse(v2_file)).numpy()[0]
    got = decode_latents(parse(v2_file), package, StageTimes())
    assert got.dtype == np.int32 and np.array_equal(got, ref)


def test_manifest_records_verification(package):
    m = package.manifest
    assert m["verification"]["qonnx_vs_brevitas_mismatches"] == 0
    assert m["verification"]["onnxruntime_vs_brevitas_max_lsb"] <= 1
    assert m["halo"] == 2 and m["tile"] == 8 and m["latent_channels"] == 24


@pytest.mark.parametrize("n,tile,halo", [(24, 8, 2), (16, 8, 2), (8, 8, 2), (9, 8, 2), (48, 16, 2), (50, 7, 3)])
def test_axis_windows_partition_and_keep_the_halo(n, tile, halo):
    windows = axis_windows(n, tile, halo)
    assert windows[0].keep_from == 0 and windows[-1].keep_to == n
    for a, b in zip(windows, windows[1:]):
        assert a.keep_to == b.keep_from
    for w in windows:
        assert 0 <= w.start and w.start + tile <= n
        assert w.keep_from - w.start >= halo or w.start == 0
        assert w.start + tile - w.keep_to >= halo or w.start + tile == n


@pytest.mark.parametrize("h,w,tile,halo", [(8, 8, 8, 2), (24, 50, 8, 2), (32, 48, 16, 2), (30, 70, 7, 3)])
def test_window_count_counts_the_windows(h, w, tile, halo):
    plan = TilePlan(h, w, tile, halo)
    assert plan.window_count() == len(plan.windows()) > 0


def test_tile_plan_rejects_tiles_without_core():
    with pytest.raises(ValueError):
        axis_windows(20, 4, 2)
    assert not TilePlan(4, 30, 8, 2).exact and TilePlan(8, 30, 8, 2).exact


def test_backends_and_tiling_bit_exact(package, v2_file):
    outputs = {}
    for name in ("onnx", "torch"):
        backend = make_backend(name, package)
        for tile in (None, 8, 5):
            rgb, times = HostDecoder(package, backend, tile).decode(v2_file)
            assert rgb.shape == (200, 330, 3) and rgb.dtype == np.uint8
            assert set(times.seconds) == {"parse", "rans_z", "integer_hs", "rans_y", "synthesis", "dequantise"}
            outputs[name, tile] = rgb
    ref = outputs["torch", None]
    for key, rgb in outputs.items():
        assert np.array_equal(rgb, ref), key


def test_student_output_matches_brevitas_model(package, v2_file, quant_export, tiny_teacher, integer_hs):
    import torch

    from quantize.qat import load_quant_student

    model, *_ = load_quant_student(quant_export)
    y = decode_y_hat(EntropyModels(tiny_teacher, integer_hs), parse(v2_file))
    with torch.no_grad():
        x = model(y)[..., :200, :330].clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    rgb, _ = HostDecoder(package, make_backend("onnx", package)).decode(v2_file)
    assert np.array_equal(rgb, x)


def test_package_refuses_other_files_and_damage(package, tiny_package, tmp_path, tiny_teacher, rgb_image):
    v1 = encode(tiny_teacher, rgb_image)
    decoder = HostDecoder(package, make_backend("onnx", package))
    with pytest.raises(LicError, match="version 1"):
        decoder.decode(v1)
    with pytest.raises(LicError, match="too small"):
        HostDecoder(package, make_backend("onnx", package), tile=4)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for f in tiny_package.iterdir():
        (damaged / f.name).write_bytes(f.read_bytes())
    data = bytearray((damaged / "integer_hs.npz").read_bytes())
    data[100] ^= 1
    (damaged / "integer_hs.npz").write_bytes(bytes(data))
    with pytest.raises(LicError, match="checksum"):
        DecoderPackage.load(damaged)
    with pytest.raises(LicError, match="not a decoder package"):
        DecoderPackage.load(tmp_path)


def test_cli_student_and_teacher_decode_same_file(tmp_path, tiny_package, v2_file, tiny_teacher_path,
                                                  integer_hs_path, capsys):
    f = tmp_path / "a.lic"
    f.write_bytes(v2_file)
    assert run_lic("decode", f, "-o", tmp_path / "s.png", "--package", tiny_package, "--backend", "onnx",
                   "--tile", "8", "--times") == 0
    out = capsys.readouterr().out
    assert "student tiny on onnx, 8x8 tiles" in out and "rans_y" in out
    assert run_lic("decode", f, "-o", tmp_path / "t.png", "--teacher", tiny_teacher_path,
                   "--integer-hs", integer_hs_path) == 0
    assert "teacher" in capsys.readouterr().out
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "t.png").stat().st_size > 0

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.lic").write_bytes(v2_file)
    assert run_lic("decode", folder, "-o", tmp_path / "pngs", "--package", tiny_package) == 0
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["0.png", "1.png", "2.png"]


def test_cli_errors(tmp_path, tiny_package, v2_file, tiny_teacher_path, capsys):
    f = tmp_path / "a.lic"
    f.write_bytes(v2_file)
    cases = [
        (["--decoder", "teacher", "--backend", "onnx"], "teacher decoder runs on --backend torch"),
        (["--decoder", "student"], "no decoder package"),
        (["--decoder", "student", "--teacher", tiny_teacher_path], "come from --package"),
        (["--package", tmp_path], "not a decoder package"),
        (["--package", tiny_package, "--backend", "pynq"], "pynq"),
    ]
    for extra, message in cases:
        assert run_lic("decode", f, "-o", tmp_path / "x.png", *extra) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "x.png").exists()


def test_export_refuses_tile_without_core(tmp_path, quant_export, tiny_teacher_path, integer_hs_path, capsys):
    out = tmp_path / "pkg"
    assert run_lic("export", quant_export, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path,
                   "-o", out, "--tile", "4") == 1
    assert "halo" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_decodes_with_torch_unimportable(tmp_path, tiny_package, v2_file):
    f = tmp_path / "a.lic"
    f.write_bytes(v2_file)
    ref, _ = HostDecoder(DecoderPackage.load(tiny_package), make_backend("onnx", DecoderPackage.load(tiny_package))
                         ).decode(v2_file)
    np.save(tmp_path / "ref.npy", ref)
    script = f"""
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "brevitas", "compressai_torch_only"):
            raise ImportError("torch is not installed on this board")
sys.meta_path.insert(0, NoTorch())
import numpy as np
from lic.cli import main
from host.image_io import load_rgb
assert main(["decode", {str(f)!r}, "-o", {str(tmp_path / 'out.png')!r}, "--package", {str(tiny_package)!r},
             "--backend", "onnx", "--tile", "8"]) == 0
rgb, _ = load_rgb({str(tmp_path / 'out.png')!r})
assert np.array_equal(rgb, np.load({str(tmp_path / 'ref.npy')!r}))
assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch was imported"
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_decode_stream_overlaps_and_matches(package, v2_file, tiny_teacher, integer_hs):
    other = encode(EntropyModels(tiny_teacher, integer_hs),
                   np.random.default_rng(9).integers(0, 256, (64, 70, 3), dtype=np.uint8))
    decoder = HostDecoder(package, make_backend("onnx", package), tile=8)
    items = [("a", v2_file), ("b", other), ("c", v2_file)]
    got = list(decoder.decode_stream(items))
    assert [name for name, _, _ in got] == ["a", "b", "c"]
    for (name, data), (_, rgb, times) in zip(items, got):
        assert np.array_equal(rgb, decoder.decode(data)[0]) and times.seconds["rans_y"] > 0
