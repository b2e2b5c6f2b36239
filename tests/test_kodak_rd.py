"""Full-Kodak rate-distortion of the shipped models (`make test-slow`, ~3 min on 2 cores).

Bounds come from the measured run recorded in README.md ("Teachers"); they guard against
regressions in the codec path, not against better teachers.
"""

import json

import pytest

from lic.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(kodak, tmp_path_factory):
    out = tmp_path_factory.mktemp("kodak_rd")
    assert main(["eval", "--data", str(kodak), "--quality", "all", "--baselines", "jpeg", "-o", str(out)]) == 0
    return json.loads((out / "results.json").read_text())


def test_teacher_curve_rises_and_beats_jpeg(results):
    pts = [p["mean"] for p in results["curves"]["teacher"]["points"]]
    assert len(pts) >= 4
    assert all(a["bpp"] < b["bpp"] and a["psnr"] < b["psnr"] for a, b in zip(pts, pts[1:]))
    jpeg = next(b for b in results["bd"] if b["test"] == "jpeg" and b["anchor"] == "teacher")
    assert jpeg["bd_rate_percent"] > 0  # measured +13.5%: JPEG needs more bits than the teacher


def test_integer_hs_costs_rate_not_quality(results):
    v1 = next(p for p in results["curves"]["teacher"]["points"] if p["quality"] == 3)
    v2 = results["curves"]["teacher-int-hs"]["points"][0]
    assert [r["psnr"] for r in v2["images"]] == [r["psnr"] for r in v1["images"]]  # same pixels
    assert 1.0 < v2["mean"]["bpp"] / v1["mean"]["bpp"] < 1.30  # measured 1.228
