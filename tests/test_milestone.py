"""bench/milestone.py: the long run's verdict on a candidate against the shipped student."""

import json

import pytest

from bench import milestone
from lic.errors import LicError

STUDENTS = "training/students"


def _point(**psnr_bpp):
    return {"mean": {k: {"psnr": p, "bpp": b, "ms_ssim": 0.9} for k, (p, b) in psnr_bpp.items()}}


def test_a_candidate_beats_only_with_more_psnr_and_on_its_own_files_no_more_bits():
    shipped = _point(quant_student=(25.91, 0.40), refined_deployable=(27.05, 0.3664))
    checks = {c["decoder"]: c for c in milestone.compare(
        shipped, _point(quant_student=(25.95, 0.40), refined_deployable=(27.20, 0.3664 * 1.004)),
        ("quant_student", "refined_deployable"))}
    assert set(checks) == {"quant_student", "refined_deployable"}
    assert checks["quant_student"]["beats"] and checks["quant_student"]["psnr_gain_db"] == 0.04
    assert checks["refined_deployable"]["beats"]  # 0.4% more bits: within one image in 200
    more_bits = milestone.compare(shipped, _point(refined_deployable=(27.30, 0.3664 * 1.01)), ("refined_deployable",))
    assert not more_bits[0]["beats"]  # no curve to read it off: more bits do not count
    equal = milestone.compare(shipped, _point(quant_student=(25.91, 0.40)), ("quant_student",))
    assert not equal[0]["beats"]  # a tie is not a milestone
    with pytest.raises(LicError, match="refined_deployable was not measured for the candidate"):
        milestone.compare(shipped, _point(quant_student=(26.5, 0.40)), ("quant_student", "refined_deployable"))


def test_the_shipped_student_does_not_beat_itself(tmp_path, capsys):
    out = tmp_path / "verdict.json"
    assert milestone.main(["--quality", "3", "--float", f"{STUDENTS}/student_q3.float.pt", "--quant",
                           f"{STUDENTS}/student_q3.pt", "--limit", "1", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["sets"]) == {"kodak", "held_out"} and result["beats"] is False
    for s in result["sets"].values():
        assert s["images"] == 1 and [c["decoder"] for c in s["checks"]] == ["float_student", "quant_student"]
        assert all(c["psnr_gain_db"] == 0 for c in s["checks"])
    assert "does not beat the shipped student" in capsys.readouterr().out


def test_refine_needs_the_candidates_encoder(tmp_path, capsys):
    assert milestone.main(["--quality", "3", "--float", f"{STUDENTS}/student_q3.float.pt", "--quant",
                           f"{STUDENTS}/student_q3.pt", "--refine", "5", "-o", str(tmp_path / "v.json")]) == 1
    assert "--encoder" in capsys.readouterr().err and not (tmp_path / "v.json").exists()


def test_the_deployable_codec_is_judged_at_equal_rate_on_the_shipped_curve():
    """Kodak, the tuned deployable codec (measured): shipped q3 0.3303 / 25.96, q4 0.4199 / 26.13; a
    candidate at 0.3444 bpp meets the shipped curve at 25.99 dB (linear in log-rate)."""
    shipped, q4 = _point(tuned_deployable=(25.96, 0.3303)), _point(tuned_deployable=(26.13, 0.4199))
    q2 = _point(tuned_deployable=(25.62, 0.2415))
    above, = milestone.compare(shipped, _point(tuned_deployable=(26.09, 0.3444)), ("tuned_deployable",), (q2, q4))
    assert above["beats"] and above["shipped_psnr_at_equal_rate"] == pytest.approx(25.990, abs=1e-3)
    assert above["psnr_gain_at_equal_rate_db"] == pytest.approx(0.100, abs=1e-3)  # not the +0.13 of two rates
    assert "+0.100 dB at equal rate" in milestone.summary(
        {"sets": {"kodak": {"images": 24, "checks": [above]}}, "beats": True})
    below, = milestone.compare(shipped, _point(tuned_deployable=(25.98, 0.3444)), ("tuned_deployable",), (q2, q4))
    assert not below["beats"]
    fewer_bits, = milestone.compare(shipped, _point(tuned_deployable=(25.90, 0.30)), ("tuned_deployable",), (q2, q4))
    assert fewer_bits["beats"] and fewer_bits["shipped_psnr_at_equal_rate"] == pytest.approx(25.856, abs=1e-3)
    beyond, = milestone.compare(shipped, _point(tuned_deployable=(26.50, 0.45)), ("tuned_deployable",), (q2, q4))
    assert not beyond["beats"] and "shipped_psnr_at_equal_rate" not in beyond  # no extrapolation


def test_the_verdict_decodes_only_what_it_compares(tmp_path, monkeypatch):
    """With --encoder: the candidate and the shipped point decode their float, quantised and tuned
    deployable codecs; the neighbouring rate points only the deployable one (their curve), never the
    teacher's own decode."""
    from bench import students

    decoded = []
    real = students.decode_same_files

    def spy(teacher, decoders, images, desc, *args, **kwargs):
        decoded.append((desc, tuple(decoders)))
        return real(teacher, decoders, images, desc, *args, **kwargs)

    monkeypatch.setattr(students, "decode_same_files", spy)
    out = tmp_path / "verdict.json"
    assert milestone.main(["--quality", "3", "--float", f"{STUDENTS}/student_q3.float.pt", "--quant",
                           f"{STUDENTS}/student_q3.pt", "--encoder", "training/teachers/encoder_q3.pt",
                           "--limit", "1", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    for s in result["sets"].values():
        assert [c["decoder"] for c in s["checks"]] == ["float_student", "quant_student", "tuned_deployable"]
        assert s["shipped_neighbours"] == [2, 4] and all(c["psnr_gain_db"] == 0 for c in s["checks"])
    per_set = [("q3", ("float_student", "quant_student")), ("q3 tuned encoder", ("tuned_deployable",))] * 2 + [
        ("q2 tuned encoder", ("tuned_deployable",)), ("q4 tuned encoder", ("tuned_deployable",))]
    assert decoded == per_set * 2  # Kodak, then the held-out photos


def test_show_prints_a_written_verdict_and_refuses_what_is_not_one(tmp_path, capsys):
    assert milestone.main(["--show", "bench/data/board_students/zcu104/verdict-refined.json"]) == 0
    out = capsys.readouterr().out
    assert "candidate 0.3630 / 27.05 (+0.019 dB at equal rate: shipped at the candidate's rate 27.034) beats\n" in out
    assert "does not beat the shipped student" in out
    (tmp_path / "bad.json").write_text("{")
    assert milestone.main(["--show", str(tmp_path / "bad.json")]) == 1
    assert "not a readable verdict" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        milestone.main(["--quality", "3"])
    assert "--float, --quant, -o" in capsys.readouterr().err
