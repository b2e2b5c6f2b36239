"""`lic cache-targets` and training from the cache (`lic distill/qat/distill-hyper --cache`)."""

import fcntl
import json
import shutil
import threading

import numpy as np
import pytest
import torch

from conftest import run_lic as lic
from host.image_io import save_png
from training.data import held_out_images, training_images
from training.target_cache import CachedTargets


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_teacher_path):
    d = tmp_path_factory.mktemp("cache-images")
    rng = np.random.default_rng(3)
    save_png(d / "landscape.png", rng.integers(0, 256, (70, 140, 3), dtype=np.uint8))
    save_png(d / "portrait.png", rng.integers(0, 256, (150, 66, 3), dtype=np.uint8))
    save_png(d / "small.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    out = tmp_path_factory.mktemp("cache") / "tiny"
    assert lic("cache-targets", "--teacher", tiny_teacher_path, "--data", d, "--size", "64x128", "-o", out) == 0
    return out


def test_cache_holds_the_teachers_own_targets(cache, tiny_teacher):
    m = json.loads((cache / "manifest.json").read_text())
    # two images cover 64x128 (the portrait one once turned), each as is and mirrored; the small one is skipped
    assert len(m["entries"]) == 4 and [e["mirrored"] for e in m["entries"]] == [False, True, False, True]
    assert m["teacher_fingerprint"] == tiny_teacher.fingerprint.hex()
    x = np.load(cache / "x.npy")
    assert x.shape == (4, 64, 128, 3)
    assert np.array_equal(x[1], x[0][:, ::-1])
    model = tiny_teacher.model
    with torch.no_grad():
        img = torch.from_numpy(x[1].copy()).permute(2, 0, 1)[None].float() / 255
        y_hat = torch.round(model.g_a(img))
        x_t = (model.g_s(y_hat).clamp(0, 1)[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(np.load(cache / "y_hat.npy")[1], y_hat[0].numpy().astype(np.int8))
    assert np.array_equal(np.load(cache / "x_teacher.npy")[1], x_t)
    assert np.load(cache / "z.npy").shape == (4, model.N, 1, 2)


def test_cached_batches_are_aligned_windows(cache, tiny_teacher):
    batches = CachedTargets(cache, tiny_teacher.fingerprint, crop=32, seed=0)
    x, y_hat, x_t, feats = batches(3)
    assert x.shape == x_t.shape == (3, 3, 32, 32) and y_hat.shape == (3, tiny_teacher.model.M, 2, 2)
    assert feats == []
    whole = CachedTargets(cache, tiny_teacher.fingerprint, crop=512, seed=0)
    assert whole(1)[0].shape == (1, 3, 64, 128)
    z, y = whole.hyper(2)
    assert z.shape[2:] == (1, 2) and y.shape[2:] == (4, 8)


def test_one_builder_at_a_time_and_a_finished_cache_is_kept(cache, tmp_path, tiny_teacher_path, capsys):
    """A second build of the same folder waits for the first, then keeps its cache of the same targets;
    other targets (another size) are built again."""
    out = tmp_path / "tiny"
    src = tmp_path / "images"
    src.mkdir()
    for m in json.loads((cache / "manifest.json").read_text())["entries"][::2]:
        shutil.copy(m["image"], src)
    args = ("cache-targets", "--teacher", tiny_teacher_path, "--data", src, "--size", "64x128", "-o", out)
    with open(out.with_name("tiny.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first builder, still at work
        second = threading.Thread(target=lambda: codes.append(lic(*args)))
        codes = []
        second.start()
        second.join(timeout=5)
        assert second.is_alive() and not out.exists()
        assert lic(*args[:-1], tmp_path / "first") == 0  # what the first builder leaves when done
        (tmp_path / "first").rename(out)
        first = (out / "x_teacher.npy").stat().st_ino
        fcntl.flock(lock, fcntl.LOCK_UN)
        second.join(timeout=60)
    assert codes == [0]
    err = capsys.readouterr().err
    assert "waiting for another build" in err and "already holds these targets: kept" in err
    assert (out / "x_teacher.npy").stat().st_ino == first  # not written again
    assert lic(*args[:6], "64x64", "-o", out) == 0  # other targets: rebuilt
    assert json.loads((out / "manifest.json").read_text())["width"] == 64


def test_cache_device_is_checked_and_recorded(cache, tmp_path, tiny_teacher_path, capsys):
    m = json.loads((cache / "manifest.json").read_text())
    assert m["hardware"].endswith("threads")  # the CPU it ran on
    for device, why in (("meta", "cpu or cuda only"), ("nonsense", "not a torch device")) + (
            () if torch.cuda.is_available() else (("cuda", "no CUDA device"),)):
        assert lic("cache-targets", "--teacher", tiny_teacher_path, "--data", tmp_path, "--device", device,
                   "-o", tmp_path / "c") == 1
        assert why in capsys.readouterr().err
        assert not (tmp_path / "c").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cache_on_the_gpu_matches_the_cpu_one(cache, tmp_path, tiny_teacher_path):
    src = tmp_path / "images"
    src.mkdir()
    x = np.load(cache / "x.npy")
    save_png(src / "a.png", x[0])
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    for out, device in ((cpu, "cpu"), (gpu, "cuda")):
        assert lic("cache-targets", "--teacher", tiny_teacher_path, "--data", src, "--size", "64x128",
                   "--device", device, "-o", out) == 0
    assert np.array_equal(np.load(cpu / "x.npy"), np.load(gpu / "x.npy"))
    y_c, y_g = np.load(cpu / "y_hat.npy"), np.load(gpu / "y_hat.npy")
    assert np.mean(y_c != y_g) < 1e-3  # float rounding may flip a handful, TF32 would flip many
    assert np.abs(np.load(cpu / "x_teacher.npy").astype(int) - np.load(gpu / "x_teacher.npy")).max() <= 1


def _cache_copy(cache, folder, **manifest_fields):
    folder.mkdir()
    for f in ("x.npy", "x_teacher.npy", "y_hat.npy", "z.npy"):
        (folder / f).write_bytes((cache / f).read_bytes())
    manifest = json.loads((cache / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **manifest_fields}))
    return folder


def test_cache_of_another_teacher_is_refused(cache, tmp_path, tiny_teacher_path, capsys):
    other = _cache_copy(cache, tmp_path / "other", teacher_fingerprint="00" * 16)
    assert lic("distill", "--teacher", tiny_teacher_path, "--cache", other, "--channels", "8", "--steps", "1",
               "--run-dir", tmp_path / "run") == 1
    assert "not of this run's teacher" in capsys.readouterr().err
    assert lic("distill", "--teacher", tiny_teacher_path, "--cache", tmp_path / "nothing", "--steps", "1",
               "--run-dir", tmp_path / "run2") == 1
    assert "not a teacher-target cache" in capsys.readouterr().err


def test_distill_qat_and_hyper_train_from_the_cache(cache, tmp_path, tiny_teacher_path):
    common = ["--teacher", tiny_teacher_path, "--cache", cache, "--batch-size", "2", "--threads", "1"]
    student = tmp_path / "s.pt"
    assert lic("distill", *common, "--crop", "512", "--channels", "8", "--steps", "2", "--run-dir", tmp_path / "d",
               "--export", student) == 0
    prov = json.loads(student.with_suffix(".provenance.json").read_text())
    assert prov["data"].startswith("teacher-target cache")
    assert lic("qat", "--student", student, *common, "--steps", "1", "--calib-batches", "1",
               "--run-dir", tmp_path / "q", "--export", tmp_path / "q.pt") == 0
    assert lic("distill-hyper", "--teacher", tiny_teacher_path, "--cache", cache, "--channels", "8", "--steps", "2",
               "--batch-size", "2", "--run-dir", tmp_path / "h", "--export", tmp_path / "h.npz") == 0
    assert (tmp_path / "h.npz").is_file()


def test_held_out_photos_are_not_training_images():
    held = held_out_images()
    if not held:
        pytest.skip("BSDS500 not found beside the repository")
    assert len(held) == 50
    train = training_images([held[0].parent.parent])
    assert not set(held) & set(train) and len(train) == 450


def test_integer_hs_trains_on_a_tuned_encoders_cache_too(cache, tmp_path, tiny_teacher_path, tiny_teacher, capsys):
    """A tuned encoder's cache (another teacher fingerprint, same decoder) feeds distill-hyper beside the
    teacher's own; the student decoder, which learns from g_a's output images, still refuses it."""
    assert json.loads((cache / "manifest.json").read_text())["decoder_fingerprint"] == tiny_teacher.fingerprint.hex()
    tuned = _cache_copy(cache, tmp_path / "tuned", teacher_fingerprint="11" * 16)
    common = ["--teacher", tiny_teacher_path, "--channels", "8", "--batch-size", "3", "--threads", "1"]
    assert lic("distill-hyper", *common, "--cache", cache, tuned, "--steps", "2", "--run-dir", tmp_path / "h",
               "--export", tmp_path / "h.npz") == 0
    prov = json.loads((tmp_path / "h.provenance.json").read_text())
    assert prov["data"] == f"teacher-target cache {cache} + {tuned}"
    assert lic("distill", "--teacher", tiny_teacher_path, "--cache", tuned, "--channels", "8", "--steps", "1",
               "--run-dir", tmp_path / "d") == 1
    assert "not of this run's teacher" in capsys.readouterr().err
    foreign = _cache_copy(cache, tmp_path / "foreign", teacher_fingerprint="11" * 16, decoder_fingerprint="22" * 16)
    assert lic("distill-hyper", *common, "--cache", cache, foreign, "--steps", "1", "--run-dir", tmp_path / "h2") == 1
    assert "or an encoder tuned from it" in capsys.readouterr().err


def test_distill_hyper_init_starts_from_an_earlier_run(cache, tmp_path, tiny_teacher_path, capsys):
    common = ["--teacher", tiny_teacher_path, "--cache", cache, "--batch-size", "2", "--threads", "1"]
    assert lic("distill-hyper", *common, "--channels", "8", "--steps", "2", "--run-dir", tmp_path / "a",
               "--export", tmp_path / "a.npz") == 0
    init = tmp_path / "a" / "checkpoint.pt"
    # no step taken: the export is the earlier run's, bit for bit
    assert lic("distill-hyper", *common, "--channels", "8", "--init", init, "--steps", "0", "--run-dir", tmp_path / "b",
               "--export", tmp_path / "b.npz") == 0
    assert (tmp_path / "b.npz").read_bytes() == (tmp_path / "a.npz").read_bytes()
    assert json.loads((tmp_path / "b.provenance.json").read_text())["init"] == str(init)
    assert lic("distill-hyper", *common, "--channels", "4", "--init", init, "--steps", "1",
               "--run-dir", tmp_path / "c") == 1
    assert "another shape" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert lic("distill-hyper", *common, "--channels", "8", "--init", tmp_path / "junk.pt", "--steps", "1",
               "--run-dir", tmp_path / "d") == 1
    assert "not a `lic distill-hyper` checkpoint" in capsys.readouterr().err


def test_training_and_caching_run_without_tf32(monkeypatch):
    """Every training process and the GPU cache take convs in full fp32: TF32 would train a quantised
    student on other quantiser steps than the decoders it ships to (the flags exist on CPU builds too)."""
    from training.loop import setup_distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        setup_distributed()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = True  # torch's defaults, for the tests after this one
        torch.backends.cuda.matmul.allow_tf32 = False


TUNED_Q3 = "training/teachers/encoder_q3.pt"
STUDENTS = "training/students"


def _pictures(folder):
    """Two smooth 64x128 test pictures with some texture: refinement has something to find in them."""
    folder.mkdir()
    y, x = np.mgrid[0:64, 0:128]
    rng = np.random.default_rng(5)
    for i in range(2):
        img = np.stack([(x * (2 + i)) % 256, (y * 3.1) % 256, ((x + y) * 1.3 + 40 * i) % 256], axis=2)
        save_png(folder / f"p{i}.png", np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8))
    return folder


def test_refined_cache_holds_what_lic_encode_refine_writes_and_resumes(tmp_path, capsys):
    from quantize.latent_refinement import refinement_for
    from training.teacher import load_teacher
    from training.teacher_codec import EntropyModels, shipped_integer_hs

    src, out = _pictures(tmp_path / "images"), tmp_path / "refined"
    args = ("cache-targets", "--teacher", TUNED_Q3, "--data", src, "--size", "64x128", "--refine", "3",
            "--threads", "1", "-o", out)
    assert lic(*args) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["refined"]["steps"] == 3 and m["refined"]["for"].startswith("student_q3.pt sha256 ")
    assert not (out / "progress.json").exists()
    y_hat = np.load(out / "y_hat.npy")

    models = EntropyModels(load_teacher(TUNED_Q3), shipped_integer_hs(3))
    x = torch.from_numpy(np.load(out / "x.npy")[1].copy()).permute(2, 0, 1)[None].float() / 255
    y, _ = refinement_for(models, 3).latents(models, x, 64, 128)
    assert np.array_equal(y_hat[1], torch.round(y)[0].numpy().astype(np.int8))  # the mirrored entry too
    with torch.no_grad():
        assert not np.array_equal(y_hat[1], torch.round(models.teacher.model.g_a(x))[0].numpy().astype(np.int8))

    # an interrupted build (one entry done, marked) continues instead of starting over
    tmp = out.with_name(out.name + ".tmp")
    out.rename(tmp)
    what = {k: m[k] for k in ("teacher_fingerprint", "height", "width", "entries", "refined")}
    (tmp / "progress.json").write_text(json.dumps({"what": what, "entries_done": 1, "clipped": 0, "seconds": 1.0}))
    marked = np.load(tmp / "y_hat.npy", mmap_mode="r+")
    marked[0], marked[1:] = 7, 0
    marked.flush()
    del marked
    assert lic(*args) == 0
    assert "1 of 4 entries done" in capsys.readouterr().err
    again = np.load(out / "y_hat.npy")
    assert (again[0] == 7).all() and np.array_equal(again[1:], y_hat[1:])
    assert not tmp.exists()

    # the student trained on it (recipe step 8) says in its provenance whom the latents were refined for
    assert lic("qat", "--student", f"{STUDENTS}/student_q3.float.pt", "--init", f"{STUDENTS}/student_q3.pt",
               "--teacher", TUNED_Q3, "--cache", out, "--crop", "64", "--batch-size", "2", "--steps", "1",
               "--w-teacher", "0", "--threads", "1", "--run-dir", tmp_path / "q", "--export", tmp_path / "q.pt") == 0
    made = json.loads((tmp_path / "q.provenance.json").read_text())["caches"]
    m = json.loads((out / "manifest.json").read_text())
    assert made == [{"cache": str(out), **{k: m[k] for k in ("command", "teacher", "teacher_fingerprint", "refined",
                                                              "seconds", "hardware")}}]


def _refined_cache(src, out, *options):
    assert lic("cache-targets", "--teacher", TUNED_Q3, "--data", src, "--size", "64x128", "--refine", "3",
               "--threads", "1", "-o", out, *options) == 0
    return np.load(out / "y_hat.npy"), json.loads((out / "manifest.json").read_text())


def test_refining_a_batch_refines_each_entry_on_its_own(tmp_path):
    # 4 entries in batches of 3: a full batch and a ragged last one
    src = _pictures(tmp_path / "images")
    one, m1 = _refined_cache(src, tmp_path / "one")
    three, m3 = _refined_cache(src, tmp_path / "three", "--batch-size", "3")
    assert (m1["batch"], m3["batch"]) == (1, 3) and m1["refined"] == m3["refined"]
    assert np.mean(one != three) < 2e-3  # the same search per entry; batched convolutions round differently
    assert np.array_equal(np.load(tmp_path / "one" / "x.npy"), np.load(tmp_path / "three" / "x.npy"))


def test_integer_hs_scale_indexes_of_a_batch_are_each_images_own():
    from training.teacher import load_teacher
    from training.teacher_codec import EntropyModels, scale_indexes, shipped_integer_hs

    models = EntropyModels(load_teacher(TUNED_Q3), shipped_integer_hs(3))
    eb = models.teacher.model.entropy_bottleneck
    z = torch.randint(-6, 7, (2, models.teacher.model.N, 2, 3)).float() + eb._get_medians()
    both = scale_indexes(models, z)
    assert both.shape[0] == 2 and not torch.equal(both[0], both[1])
    assert all(torch.equal(both[i], scale_indexes(models, z[i:i + 1])[0]) for i in range(2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_refined_cache_on_the_gpu_matches_the_cpu_one(tmp_path):
    src = _pictures(tmp_path / "images")
    cpu, _ = _refined_cache(src, tmp_path / "cpu")
    gpu, m = _refined_cache(src, tmp_path / "gpu", "--device", "cuda")
    assert m["batch"] == 16 and np.mean(cpu != gpu) < 2e-3


def test_refine_is_checked(tmp_path, capsys):
    assert lic("cache-targets", "--teacher", TUNED_Q3, "--data", tmp_path, "--refine", "-1", "-o", tmp_path / "c") == 1
    assert "--refine takes a number of steps >= 0" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert lic("cache-targets", "--teacher", TUNED_Q3, "--data", tmp_path, "--batch-size", "0",
               "-o", tmp_path / "c") == 1
    assert "--batch-size takes a number of entries >= 1" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_refined_for_a_candidate_student(tmp_path, capsys):
    """`--student` refines for a candidate with its own tuned encoder (the long run's prefined phase):
    the same weights under another name give the same latents, named for the candidate; a student of
    another teacher, or --student without --refine, is refused in one line."""
    src = _pictures(tmp_path / "images")
    candidate = tmp_path / "candidate.pt"
    shutil.copyfile(f"{STUDENTS}/student_q3.pt", candidate)
    shipped, m_shipped = _refined_cache(src, tmp_path / "shipped")
    mine, m_mine = _refined_cache(src, tmp_path / "mine", "--student", candidate)
    assert np.array_equal(shipped, mine)
    assert m_mine["refined"]["for"].startswith("candidate.pt sha256 ")
    assert m_mine["refined"]["for"].split()[-1] == m_shipped["refined"]["for"].split()[-1]

    capsys.readouterr()
    assert lic("cache-targets", "--teacher", TUNED_Q3, "--data", src, "--size", "64x128", "--refine", "3",
               "--student", f"{STUDENTS}/student_q1.pt", "-o", tmp_path / "wrong") == 1
    err = capsys.readouterr().err.strip()
    assert "student_q1.pt was distilled from teacher" in err and len(err.splitlines()) == 1
    assert lic("cache-targets", "--teacher", TUNED_Q3, "--data", src, "--student", candidate, "-o",
               tmp_path / "no-refine") == 1
    assert "needs --refine" in capsys.readouterr().err
