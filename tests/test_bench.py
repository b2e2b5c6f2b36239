import json
import math

import numpy as np
import pytest

from bench import metrics
from bench.baselines import CODECS, get_codec
from bench.rd import REFERENCE_BMSHJ2018, bd_psnr, bd_rate, compare, plot_rd
from lic.errors import LicError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REF_BPP = [r["bpp"] for r in REFERENCE_BMSHJ2018]
REF_PSNR = [r["psnr"] for r in REFERENCE_BMSHJ2018]


@pytest.fixture(scope="module")
def kodim23(kodak) -> np.ndarray:
    from PIL import Image

    with Image.open(kodak / "kodim23.png") as im:
        return np.asarray(im.convert("RGB")).copy()


@pytest.fixture(scope="module")
def crop(kodim23) -> np.ndarray:
    """128x128 around the parrots' heads: enough texture that quality settings change the size."""
    return np.ascontiguousarray(kodim23[192:320, 320:448])


# --- metrics --------------------------------------------------------------------------------------

def test_psnr_identical_is_capped():
    a = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    assert metrics.psnr(a, a) == metrics.PSNR_CAP_DB


def test_psnr_known_mse():
    a = np.full((10, 20, 3), 100, np.uint8)
    b = a.copy()
    b[..., 1] += 6  # one channel off by 6 everywhere: MSE over all samples = 36 / 3 = 12
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 12), abs=1e-9)
    assert metrics.psnr(a, b) == metrics.psnr(b, a)


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_ms_ssim(kodim23):
    img = kodim23[:256, :256]
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(img.astype(int) + np.random.default_rng(1).integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    assert 0.5 < metrics.ms_ssim(img, noisy) < 0.99
    assert metrics.ms_ssim(img[:100], img[:100]) is None  # too small for five scales


def test_bpp():
    assert metrics.bpp(1000, 100, 80) == pytest.approx(1.0)
    assert metrics.bpp(768 * 512 // 8, 512, 768) == pytest.approx(1.0)


# --- baselines ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(CODECS))
def test_baseline_round_trip(name, crop):
    codec = get_codec(name)
    qs = sorted(codec.qualities)
    picks = [qs[0], qs[len(qs) // 2], qs[-1]]
    results = [codec.encode_decode(crop, q) for q in picks]
    for n, out in results:
        assert out.shape == crop.shape and out.dtype == np.uint8
        assert 20.0 < metrics.psnr(crop, out) < 50.0
    sizes = [n for n, _ in results]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3, f"{name}: bytes must fall with quality: {sizes}"
    psnrs = [metrics.psnr(crop, out) for _, out in results]
    assert psnrs[0] < psnrs[-1]


@pytest.mark.parametrize("name", list(CODECS))
def test_baseline_odd_size(name, kodim23):
    """4:2:0 codecs pad odd sizes internally; the decoded image must still be the input's size."""
    img = np.ascontiguousarray(kodim23[:75, :101])
    n, out = get_codec(name).encode_decode(img, get_codec(name).qualities[-1])
    assert out.shape == img.shape and n > 0


def test_baseline_defaults_are_sorted_by_rate():
    for codec in CODECS.values():
        assert list(codec.qualities) == sorted(set(codec.qualities)), codec.name


def test_unknown_codec():
    with pytest.raises(LicError, match="unknown baseline codec"):
        get_codec("bpg")


def test_missing_heif_plugin_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # what Python does when it is not installed
    with pytest.raises(LicError, match="pillow-heif"):
        get_codec("heif")


# --- BD-rate and plots ----------------------------------------------------------------------------

def test_bd_rate_against_itself_is_zero():
    assert bd_rate(REF_BPP, REF_PSNR, REF_BPP, REF_PSNR) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(REF_BPP, REF_PSNR, REF_BPP, REF_PSNR) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_of_doubled_rate_is_plus_100_percent():
    assert bd_rate(REF_BPP, REF_PSNR, [2 * b for b in REF_BPP], REF_PSNR) == pytest.approx(100.0, abs=1e-6)
    assert bd_rate(REF_BPP, REF_PSNR, [b / 2 for b in REF_BPP], REF_PSNR) == pytest.approx(-50.0, abs=1e-6)


def test_bd_psnr_of_shifted_curve():
    assert bd_psnr(REF_BPP, REF_PSNR, REF_BPP, [p + 1.0 for p in REF_PSNR]) == pytest.approx(1.0, abs=1e-9)
    # A better codec has negative BD-rate and positive BD-PSNR.
    assert bd_rate(REF_BPP, REF_PSNR, REF_BPP, [p + 1.0 for p in REF_PSNR]) < 0


def test_bd_point_order_does_not_matter():
    assert bd_rate(REF_BPP[::-1], REF_PSNR[::-1], [2 * b for b in REF_BPP], REF_PSNR) == pytest.approx(100.0)


def test_bd_refuses_bad_curves():
    with pytest.raises(LicError, match="at least 4"):
        bd_rate(REF_BPP, REF_PSNR, REF_BPP[:3], REF_PSNR[:3])
    with pytest.raises(LicError, match="do not overlap"):
        bd_rate(REF_BPP, REF_PSNR, REF_BPP, [p + 20 for p in REF_PSNR])
    with pytest.raises(LicError, match="increasing"):
        bd_rate(REF_BPP, REF_PSNR, REF_BPP, [30, 29, 31, 32, 33])


def test_compare_reports_reason_instead_of_raising():
    ref = list(zip(REF_BPP, REF_PSNR))
    ok = compare(ref, [(2 * b, p) for b, p in ref])
    assert ok["bd_rate_percent"] == pytest.approx(100.0) and ok["reason"] is None and ok["psnr_overlap"] == 1.0
    bad = compare(ref, ref[:1])
    assert bad["bd_rate_percent"] is None and bad["bd_psnr_db"] is None and "at least 4" in bad["reason"]


def test_compare_flags_a_bd_rate_that_moves_with_the_interpolator():
    # measured (`lic eval-students`, Kodak, Nov 27): the deployable codec's tuned pairs, whose q2 and q3
    # points sat 0.02 dB apart, against Pillow JPEG's six lowest settings; akima gave -5.2%, PCHIP -15.5%
    deployable = [(0.17488267686631942, 25.22189632683322), (0.24652777777777776, 25.593881158877526),
                  (0.3005574544270833, 25.61630075906969), (0.38378228081597227, 25.75555728433049)]
    jpeg = [(0.1408021714952257, 23.85221750663386), (0.210113525390625, 25.848560403643205),
            (0.2561, 26.67), (0.359, 28.14), (0.449, 29.14), (0.61, 30.49)]
    out = compare(deployable, jpeg)
    assert out["bd_rate_percent"] < 0 and "unstable: pchip interpolation gives" in out["reason"]
    spaced = deployable[:2] + [(0.3161892361111111, 25.771527278915908), (0.3987257215711805, 25.919383098490712)]
    stable = compare(spaced, jpeg)
    assert stable["reason"] is None and stable["bd_rate_percent"] == pytest.approx(-20.4, abs=0.5)


def test_plot_rd_writes_png(tmp_path):
    ref = list(zip(REF_BPP, REF_PSNR))
    path = tmp_path / "sub" / "rd.png"
    plot_rd({"ref": ref, "worse": [(2 * b, p) for b, p in ref], "one point": [(0.3, 29.0)]}, path, "test",
            ms_ssim_curves={"ref": [(r["bpp"], r["ms_ssim"]) for r in REFERENCE_BMSHJ2018]}, dashed=["ref"])
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["rd.png"]  # no temp file left behind


# --- lic eval -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eval_data(kodak, tmp_path_factory):
    """Three small crops (above MS-SSIM's minimum size) so --limit 2 has something to leave out."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("eval_data")
    for i in (1, 7, 23):
        with Image.open(kodak / f"kodim{i:02d}.png") as im:
            im.crop((0, 0, 256, 192)).save(folder / f"kodim{i:02d}.png")
    return folder


def test_lic_eval_end_to_end(tiny_teacher_path, eval_data, tmp_path, capsys):
    from lic.cli import main
    from training.teacher import load_teacher
    from training.teacher_codec import encode

    out = tmp_path / "eval"
    rc = main(["eval", "--data", str(eval_data), "--teacher", str(tiny_teacher_path), "--baselines", "jpeg,webp",
               "--limit", "2", "-o", str(out)])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["rd.png", "results.json", "summary.md"]

    results = json.loads((out / "results.json").read_text())
    assert results["images"] == ["kodim01.png", "kodim07.png"]
    curves = results["curves"]
    assert list(curves) == ["teacher", "jpeg", "webp", "reference"]
    assert len(curves["jpeg"]["points"]) == len(CODECS["jpeg"].qualities)
    for name in ("teacher", "jpeg", "webp"):
        for point in curves[name]["points"]:
            assert set(point["mean"]) == {"bpp", "psnr", "ms_ssim", "encode_s", "decode_s"}
            assert [r["image"] for r in point["images"]] == results["images"]
            for r in point["images"]:
                assert {"image", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s"} <= set(r)
                assert r["bpp"] > 0 and 0 < r["psnr"] <= metrics.PSNR_CAP_DB and 0 <= r["ms_ssim"] <= 1
            assert point["mean"]["bpp"] == pytest.approx(np.mean([r["bpp"] for r in point["images"]]))

    # The teacher's rate is the whole .lic file, as encode() writes it.
    from host.image_io import load_rgb

    teacher = load_teacher(str(tiny_teacher_path))
    rgb, _ = load_rgb(eval_data / "kodim01.png")
    expected_bpp = len(encode(teacher, rgb)) * 8 / (192 * 256)
    assert curves["teacher"]["points"][0]["images"][0]["bpp"] == pytest.approx(expected_bpp)
    assert curves["teacher"]["points"][0]["fingerprint"] == teacher.fingerprint.hex()

    bd = {(b["anchor"], b["test"]): b for b in results["bd"]}
    assert set(bd) == {("teacher", "jpeg"), ("teacher", "webp"), ("reference", "teacher"),
                       ("reference", "jpeg"), ("reference", "webp")}
    # One teacher is one point: no curve to compare, and the report says why.
    assert bd[("reference", "teacher")]["bd_rate_percent"] is None
    assert "at least 4" in bd[("reference", "teacher")]["reason"]
    # Classical codecs against CompressAI's published curve: real numbers, JPEG far behind WebP.
    assert bd[("reference", "jpeg")]["bd_rate_percent"] > bd[("reference", "webp")]["bd_rate_percent"]

    summary = (out / "summary.md").read_text()
    assert "| curve | setting | bpp |" in summary and "| jpeg | quality=5 |" in summary
    assert summary in capsys.readouterr().out
    assert (out / "rd.png").read_bytes().startswith(PNG_MAGIC)


def test_lic_eval_errors_are_one_line(eval_data, tmp_path, capsys):
    from lic.cli import main

    assert main(["eval", "--data", str(tmp_path / "nowhere"), "--baselines", "jpeg", "-o", str(tmp_path)]) == 1
    assert "image folder not found" in capsys.readouterr().err
    assert main(["eval", "--data", str(eval_data), "--baselines", "gif", "-o", str(tmp_path)]) == 1
    assert "unknown baseline codec" in capsys.readouterr().err
    assert main(["eval", "--data", str(eval_data), "--limit", "0", "-o", str(tmp_path)]) == 1
    assert "--limit" in capsys.readouterr().err
