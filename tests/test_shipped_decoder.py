"""The shipped default student and its decoder package, on a real Kodak image: the decode paths a
user runs, bit-exact against each other, and quality bounds from the measured numbers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench import metrics
from conftest import REPO, run_lic
from host.backends import make_backend
from host.decoder_package import DecoderPackage
from host.image_io import load_rgb
from lic.errors import LicError
from host.runtime import HostDecoder

PACKAGE = REPO / "host" / "decoders" / "q3"
STUDENTS = REPO / "training" / "students"


@pytest.fixture(scope="module")
def package():
    return DecoderPackage.load(PACKAGE)


@pytest.fixture(scope="module")
def kodim23(kodak, package):
    """(image, the board's file for it, the teacher's decode of the teacher's own file)."""
    from training.teacher import load_default
    from training.teacher_codec import EntropyModels, decode, encode, package_encoder

    rgb, _ = load_rgb(kodak / "kodim23.png")
    models = package_encoder(package)
    teacher = EntropyModels(load_default(3), models.integer_hs)
    return rgb, encode(models, rgb), decode(teacher, encode(teacher, rgb))


def test_package_is_the_default_and_verified(package):
    from host.decode_cli import default_package
    from training.teacher_codec import find_shipped

    assert default_package() == PACKAGE
    m = package.manifest
    assert m["verification"]["qonnx_vs_brevitas_mismatches"] == 0
    assert m["verification"]["onnxruntime_vs_brevitas_max_lsb"] == 0
    assert find_shipped(package.file_fingerprint) is not None  # the shipped teacher + integer h_s decode its files
    assert m["student"]["kmac_per_pixel"] * 8 <= 42.176  # >= 8x fewer MACs than the teacher's g_s


def test_every_backend_and_tiling_agree(package, kodim23):
    rgb, data, teacher_rgb = kodim23
    ref, _ = HostDecoder(package, make_backend("onnx", package)).decode(data)
    for backend, tile in (("onnx", package.tile), ("onnx", 32), ("torch", None), ("torch", package.tile)):
        out, _ = HostDecoder(package, make_backend(backend, package), tile).decode(data)
        assert np.array_equal(out, ref), (backend, tile)
    # measured on kodim23: teacher 31.82 dB (its own file); shipped W8/4/4/8/8 A8/8/8/8 student 28.57 dB on the
    # file of the q3 tuned encoder
    assert metrics.psnr(rgb, teacher_rgb) == pytest.approx(31.82, abs=0.01)
    assert metrics.psnr(rgb, ref) == pytest.approx(28.57, abs=0.01)


def test_cli_picks_the_shipped_student(tmp_path, kodim23, package, capsys):
    from training.teacher_codec import decode, find_shipped

    _, data, _ = kodim23
    f = tmp_path / "k.lic"
    f.write_bytes(data)
    assert run_lic("decode", f, "-o", tmp_path / "s.png") == 0
    assert "student q3 on onnx" in capsys.readouterr().out
    # the teacher's g_s decodes the board's files too (the encoder tuned for the student writes them)
    assert run_lic("decode", f, "-o", tmp_path / "t.png", "--decoder", "teacher") == 0
    assert np.array_equal(load_rgb(tmp_path / "t.png")[0], decode(find_shipped(package.file_fingerprint), data))


def test_shipped_students_have_provenance():
    entries = json.loads((STUDENTS / "students.json").read_text())["students"]
    assert any(e["quality"] == 3 for e in entries)
    for e in entries:
        for key in ("float", "quant"):
            prov = json.loads((STUDENTS / e[key]).with_suffix(".provenance.json").read_text())
            assert prov["teacher_fingerprint"] == e["teacher_fingerprint"]
            assert {"command", "steps", "train_time_s", "hardware", "data"} <= set(prov)


def test_eval_students_and_demo_run(tmp_path, kodak):
    assert run_lic("eval-students", "--quality", "3", "--limit", "1", "--refine", "2", "-o", tmp_path / "ev") == 0
    summary = (tmp_path / "ev" / "summary.md").read_text()
    assert "| 3 |" in summary and "latents refined for the quantised student" in summary
    assert run_lic("demo", "--limit", "2", "--no-hw", "--refine", "3", "-o", tmp_path / "demo") == 0
    demo = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert demo["bit_exact"]["onnx_tiled_equals_whole_frame"] is True
    assert demo["refine_steps"] == 3 and "latents refined for the student, 3 steps" in \
        (tmp_path / "demo" / "report.md").read_text()
    assert (tmp_path / "demo" / "crops.png").is_file() and (tmp_path / "demo" / "report.md").is_file()


def test_every_q3_encoder_writes_files_the_q3_package_decodes(tmp_path, capsys):
    """A file names what decoding it needs, not what encoded it: the teacher's own v2/v3 files and
    the tuned encoder's decode with the student package of their rate point, and the contract is
    the same for both (the README's one-liners: encode with the teacher, decode with the student)."""
    from host.container import parse

    src = Path(__file__).resolve().parent / "golden" / "source.png"
    fingerprints = set()
    for name, args in (("teacher", ["--integer-hs"]), ("teacher-v3", ["--integer-hs", "--tiles"]),
                       ("tuned", ["--teacher", "q3-tuned", "--integer-hs"])):
        lic = tmp_path / f"{name}.lic"
        assert run_lic("encode", src, "-o", lic, *args) == 0
        fingerprints.add(parse(lic.read_bytes()).fingerprint)
        assert run_lic("decode", lic, "-o", tmp_path / f"{name}.png", "--decoder", "student") == 0
        assert "student q3" in capsys.readouterr().out
    assert fingerprints == {DecoderPackage.load(PACKAGE).file_fingerprint}


def test_one_copy_of_every_shipped_file(tmp_path, monkeypatch):
    """The shipped package refers to the student and integer h_s it was made from instead of holding
    second copies; export makes such links only for packages shipped in host/decoders/, where the
    bytes are the same; a copy that lost its links is one clear line."""
    import export.package as export_package_module
    from export.package import link_shipped_files
    from host.decoder_package import INTEGER_HS, QUANT_STUDENT

    shipped = {p.read_bytes(): p for d in ("training/students", "training/teachers")
               for p in (REPO / d).iterdir() if p.is_file()}
    for f in sorted((REPO / "host" / "decoders").rglob("*")):
        if f.is_file() and not f.is_symlink():
            assert f.read_bytes() not in shipped, f"{f} is a second copy of {shipped[f.read_bytes()]}"
    q3 = REPO / "host" / "decoders" / "q3"
    assert (q3 / QUANT_STUDENT).resolve() == (REPO / "training" / "students" / "student_q3.pt").resolve()

    student = REPO / "training" / "students" / "student_q3.pt"
    outside = tmp_path / "pkg"
    outside.mkdir()
    (outside / QUANT_STUDENT).write_bytes(student.read_bytes())
    assert link_shipped_files(outside, outside, {QUANT_STUDENT: student}) == []  # a copy outside the repository
    built = tmp_path / "built"  # a package outside host/decoders/ (build/decoders/...): plain files
    built.mkdir()
    (built / QUANT_STUDENT).write_bytes(student.read_bytes())
    assert link_shipped_files(built, built, {QUANT_STUDENT: student}) == []
    shipped = tmp_path / "decoders"  # stands in for host/decoders/
    monkeypatch.setattr(export_package_module, "SHIPPED_PACKAGES", shipped)
    tmp, inside = shipped / ".q9.tmp", shipped / "q9"
    tmp.mkdir(parents=True)
    (tmp / QUANT_STUDENT).write_bytes(student.read_bytes())
    (tmp / INTEGER_HS).write_bytes(b"not the shipped one")
    hs = REPO / "training" / "teachers" / "integer_hs_q3.npz"
    assert link_shipped_files(tmp, inside, {QUANT_STUDENT: student, INTEGER_HS: hs}) == [QUANT_STUDENT]
    tmp.rename(inside)
    assert (inside / QUANT_STUDENT).is_symlink() and (inside / QUANT_STUDENT).read_bytes() == student.read_bytes()
    assert not (inside / INTEGER_HS).is_symlink()
    copied = tmp_path / "copied"
    shutil.copytree(q3, copied, symlinks=True)  # cp -r: the relative links now point nowhere
    with pytest.raises(LicError, match="links to .* which is not there; copy packages with their links followed"):
        DecoderPackage.load(copied)
