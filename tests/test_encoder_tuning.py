"""`lic tune-encoder` (quantize/encoder_tuning.py) and the tuned-encoder files it exports: only g_a
changes, the result has its own fingerprint but decodes with its teacher's decoder side, runs resume,
and a package exported for a tuned encoder decodes its files and refuses the teacher's."""

import pytest
import torch

from conftest import REPO, run_lic
from lic.errors import LicError

STUDENT = REPO / "training" / "students" / "student_q3.pt"
TINY = ["--crop", "64", "--batch-size", "1", "--threads", "1", "--save-every", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, image_folder):
    d = tmp_path_factory.mktemp("tuned")
    assert run_lic("tune-encoder", "--student", STUDENT, "--data", image_folder, "--steps", "2", "--lr", "1e-3",
                   *TINY, "--run-dir", d / "run", "--export", d / "encoder.pt") == 0
    return d


def test_only_g_a_changes_and_the_fingerprint_does(tuned):
    from training.teacher import load_default, load_teacher

    teacher, enc = load_default(3), load_teacher(str(tuned / "encoder.pt"))
    assert enc.decoder_fingerprint == teacher.fingerprint != enc.fingerprint
    assert (enc.quality, enc.lmbda) == (3, teacher.lmbda)
    before, after = teacher.model.state_dict(), enc.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("g_a.") for k in changed)
    assert any(k.endswith(".weight") for k in changed)


def test_export_holds_the_trained_g_a_to_int8_steps(tuned):
    """Conv weights are stored as int8 steps of the change: each within half a step of training's."""
    from training.teacher import load_teacher

    trained = torch.load(tuned / "run" / "checkpoint.pt", weights_only=False)["g_a"]
    stored = torch.load(tuned / "encoder.pt", weights_only=True)
    loaded = load_teacher(str(tuned / "encoder.pt")).model.g_a.state_dict()
    for k, v in trained.items():
        if k in stored["g_a_delta_scale"]:
            half_step = stored["g_a_delta_scale"][k][:, None, None, None] / 2
            assert ((loaded[k] - v).abs() <= half_step * 1.001 + 1e-7).all(), k
        else:
            assert torch.equal(loaded[k], v), k


def test_resume_and_refusal(tuned, image_folder, tmp_path, capsys):
    assert run_lic("tune-encoder", "--student", STUDENT, "--data", image_folder, "--steps", "3", *TINY,
                   "--run-dir", tuned / "run") == 0
    assert "resuming" in capsys.readouterr().err
    assert torch.load(tuned / "run" / "checkpoint.pt", weights_only=False)["step"] == 3
    # another student in the same run dir
    assert run_lic("tune-encoder", "--student", REPO / "training" / "students" / "student_q1.pt", "--data",
                   image_folder, "--steps", "4", *TINY, "--run-dir", tuned / "run") == 1
    assert "another student" in capsys.readouterr().err
    assert run_lic("tune-encoder", "--student", STUDENT, "--crop", "96", "--run-dir", tmp_path / "r") == 1
    assert "multiple of 64" in capsys.readouterr().err


def test_damaged_or_foreign_tuned_encoders_are_one_line_errors(tuned, tmp_path, no_tuned_encoders):
    from training.teacher import load_teacher

    obj = torch.load(tuned / "encoder.pt", weights_only=True)
    foreign = dict(obj, teacher_fingerprint="00" * 16)
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(LicError, match="not a shipped teacher"):
        load_teacher(str(tmp_path / "foreign.pt"))
    damaged = {k: v for k, v in obj.items() if k != "g_a_delta_scale"}
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(LicError, match="damaged"):
        load_teacher(str(tmp_path / "damaged.pt"))
    with pytest.raises(LicError, match="no shipped tuned encoder"):
        load_teacher("q2-tuned")


@pytest.fixture
def no_tuned_encoders(monkeypatch):
    from training import teacher

    shipped = teacher.read_manifest()
    monkeypatch.setattr(teacher, "read_manifest",
                        lambda: [{k: v for k, v in e.items() if not k.startswith("tuned")} for e in shipped])


def test_tuned_files_need_the_integer_hs(tuned, kodak, tmp_path, capsys):
    image = sorted(kodak.glob("*.png"))[0]
    assert run_lic("encode", image, "-o", tmp_path / "a.lic", "--teacher", tuned / "encoder.pt") == 1
    assert "--integer-hs" in capsys.readouterr().err
    assert run_lic("encode", image, "-o", tmp_path / "a.lic", "--teacher", tuned / "encoder.pt",
                   "--integer-hs") == 0
    assert (tmp_path / "a.lic").is_file()


def test_package_for_a_tuned_encoder_decodes_its_rate_points_files(tuned, rgb_image, tmp_path):
    """A file names its decoding contract (teacher + integer h_s), not its encoder: the package made for
    a tuned encoder decodes that encoder's files and its teacher's alike, and no other rate point's."""
    from export.package import export_package
    from host.backends import make_backend
    from host.runtime import HostDecoder
    from training.teacher import load_default, load_teacher
    from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

    package = export_package(STUDENT, tmp_path / "pkg", teacher_spec=str(tuned / "encoder.pt"), tile=8)
    hs = shipped_integer_hs(3)
    tuned_models = EntropyModels(load_teacher(str(tuned / "encoder.pt")), hs)
    teacher_models = EntropyModels(load_default(3), hs)
    assert package.file_fingerprint == tuned_models.fingerprint == teacher_models.fingerprint
    decoder = HostDecoder(package, make_backend("onnx", package))
    for models in (tuned_models, teacher_models):
        assert decoder.decode(encode(models, rgb_image))[0].shape == rgb_image.shape
    with pytest.raises(LicError, match="use the package of that file's rate point"):
        decoder.decode(encode(EntropyModels(load_default(1), shipped_integer_hs(1)), rgb_image))


def test_init_from_another_teachers_encoder_is_refused(tuned, image_folder, tmp_path, capsys):
    assert run_lic("tune-encoder", "--student", REPO / "training" / "students" / "student_q1.pt", "--init",
                   tuned / "encoder.pt", "--data", image_folder, "--steps", "1", *TINY, "--run-dir", tmp_path) == 1
    assert "another teacher" in capsys.readouterr().err


@pytest.mark.parametrize("quality", [1, 2, 3, 4])
def test_shipped_tuned_encoders_load_with_provenance(quality):
    import json

    from training.teacher import TEACHERS_DIR, load_teacher, shipped_entry

    entry = shipped_entry(quality)
    tuned = load_teacher(f"q{quality}-tuned")  # checks the manifest's fingerprint
    assert tuned.decoder_fingerprint.hex() == entry["fingerprint"] and tuned.quality == quality
    prov = json.loads((TEACHERS_DIR / entry["tuned_encoder"]).with_suffix(".provenance.json").read_text())
    assert prov["teacher_fingerprint"] == entry["fingerprint"]
    assert {"command", "steps", "train_time_s", "hardware", "data", "student_sha256"} <= set(prov)
