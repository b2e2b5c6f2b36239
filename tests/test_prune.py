"""`lic prune`: structured channel pruning of a float student (tiny teacher, 8-channel students)."""

import json

import pytest
import torch

from host.decoder_package import sha256_file
from host.image_io import save_png
from lic.cli import main
from lic.errors import LicError
from quantize.qat import load_quant_student
from training.distill import KDWeights, load_float_student
from training.prune import (apply_pruning, channels_for_kmac, config_kmac, keep_most_important, l1_importance,
                            target_channels, taylor_importance, with_channels)
from training.student_decoder import StudentConfig, StudentSynthesis, conv_layers, layer_plan

from conftest import TINY_TRAINING as TINY


def lic(*args) -> int:
    return main([str(a) for a in args])


def _random_batches(latent_channels: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def batches(size):
        y_hat = torch.randint(-4, 5, (size, latent_channels, 4, 4), generator=g).float()
        x = torch.rand(size, 3, 64, 64, generator=g)
        return x, y_hat, torch.rand(size, 3, 64, 64, generator=g), []
    return batches


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_teacher_path):
    d = tmp_path_factory.mktemp("prune-cache-images")
    g = torch.Generator().manual_seed(3)
    for i in range(2):
        save_png(d / f"{i}.png", (torch.rand(64, 128, 3, generator=g) * 255).byte().numpy())
    out = tmp_path_factory.mktemp("prune-cache") / "tiny"
    assert lic("cache-targets", "--teacher", tiny_teacher_path, "--data", d, "--size", "64x128", "-o", out) == 0
    return out


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prune", "--help"])
    assert e.value.code == 0
    assert "usage: lic prune" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs", [
    {"channels": (8, 6, 6, 4)},
    {"channels": (8, 6, 6, 4), "latent_convs": 1, "convs_per_stage": (2, 1, 1, 2)},
    {"channels": (8, 6, 6, 4), "upsample": "deconv4"},
    {"channels": (8, 6, 6, 4), "head_kernel": 0},
])
def test_surgery_keeps_the_kept_channels(kwargs):
    """Zero the filters and biases of the channels to be removed: those channels are then 0 after their
    ReLU, the original computes exactly what the pruned student computes, and the outputs agree."""
    torch.manual_seed(0)
    cfg = StudentConfig(latent_channels=12, **kwargs)
    student = StudentSynthesis(cfg).eval()
    target = with_channels(cfg, (5, 3, 4, 2))
    plan, new = layer_plan(cfg), layer_plan(target)
    g = torch.Generator().manual_seed(1)
    keep = [sorted(torch.randperm(s.out_ch, generator=g)[:n.out_ch].tolist()) for s, n in zip(plan[:-1], new[:-1])]
    with torch.no_grad():
        for conv, kept, spec in zip(conv_layers(student), keep, plan):
            gone = sorted(set(range(spec.out_ch)) - set(kept))
            if isinstance(conv, torch.nn.ConvTranspose2d):
                conv.weight[:, gone] = 0
            else:
                conv.weight[gone] = 0
            conv.bias[gone] = 0
    pruned = apply_pruning(student, target, keep)
    assert pruned.cfg == target and pruned.cfg.channels == (5, 3, 4, 2)
    y_hat = torch.randint(-5, 6, (2, 12, 3, 3)).float()
    with torch.no_grad():
        a, b = student(y_hat), pruned(y_hat)
    assert a.shape == b.shape == (2, 3, 48, 48)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    # and the surgery copies, it does not share: the source is untouched by training the pruned one
    assert conv_layers(pruned)[0].weight.data_ptr() != conv_layers(student)[0].weight.data_ptr()


def test_taylor_ranks_a_zeroed_channel_least(float_export):
    student, cfg, _ = load_float_student(float_export)
    with torch.no_grad():
        convs = conv_layers(student)
        convs[0].weight[3] = 0  # head, channel 3
        convs[0].bias[3] = 0
        convs[2].weight[5] = 0  # s1c0, channel 5
        convs[2].bias[5] = 0
    imp = taylor_importance(student, _random_batches(cfg.latent_channels), 3, 2, KDWeights())
    assert [t.shape[0] for t in imp] == [s.out_ch for s in layer_plan(cfg)[:-1]]
    assert imp[0][3] == 0 and imp[2][5] == 0
    assert (imp[0][torch.arange(8) != 3] > 0).all() and (imp[2][torch.arange(8) != 5] > 0).all()
    keep = keep_most_important(imp, cfg, with_channels(cfg, (7, 7, 7, 7)))
    assert 3 not in keep[0] and 5 not in keep[2] and all(len(k) == 7 for k in keep)
    # the gradients it used are not left on the student
    assert all(p.grad is None for p in student.parameters())
    # weight magnitude, for comparison, sees the zeroed filters too (but nothing of the data)
    l1 = l1_importance(student)
    assert l1[0][3] == 0 and l1[2][5] == 0


def test_targets():
    cfg = StudentConfig(latent_channels=192, channels=(128, 96, 48, 24))
    assert target_channels("96,64,32,16", cfg) == (96, 64, 32, 16)
    shipped = with_channels(cfg, (96, 64, 32, 16))
    assert round(config_kmac(shipped), 3) == 4.248  # docs/students.md's figure for the shipped student
    widths = channels_for_kmac(cfg, 4.3, 4)
    assert config_kmac(with_channels(cfg, widths)) <= 4.3 and all(w % 4 == 0 for w in widths)
    assert config_kmac(with_channels(cfg, channels_for_kmac(cfg, 1000, 4))) == config_kmac(cfg)  # no pruning needed
    for text, says in (("129,96,48,24", "stage 0 has 128 channels, cannot keep 129"), ("0,96,48,24", "at least one"),
                       ("96,64,32", "3 entries, the student has 4 stages"), ("96,x,1,1", "comma-separated ints")):
        with pytest.raises(LicError, match=says):
            target_channels(text, cfg)
    with pytest.raises(LicError, match="costs"):
        channels_for_kmac(cfg, 0.01, 4)


def test_prune_qat_export(tmp_path, float_export, cache, tiny_teacher, tiny_teacher_path, integer_hs_path, capsys):
    """The whole path on the cache: prune 8,8,8,8 -> 6,4,4,2, fine-tune 2 steps, then `lic qat` and
    `lic export` take the file; a second call resumes without measuring again."""
    out, run = tmp_path / "pruned.pt", tmp_path / "run"
    args = ["prune", "--student", float_export, "--teacher", tiny_teacher_path, "--cache", cache, *TINY,
            "--channels", "6,4,4,2", "--importance-batches", "2", "--run-dir", run, "--export", out]
    assert lic(*args, "--steps", "1") == 0
    err = capsys.readouterr().err
    assert "head: keeps 6 of 8 channels" in err and "kMAC/px" in err
    assert lic(*args, "--steps", "2") == 0
    err = capsys.readouterr().err
    assert "not measured again" in err and "resuming" in err
    student, cfg, fingerprint = load_float_student(out)
    assert cfg.channels == (6, 4, 4, 2) and fingerprint == tiny_teacher.fingerprint
    with torch.no_grad():
        assert student(torch.zeros(1, 24, 4, 4)).shape == (1, 3, 64, 64)
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert "command" in prov and prov["kind"] == "float-student" and prov["steps"] == 2
    assert prov["init"] == str(float_export) and prov["init_sha256"] == sha256_file(float_export)
    assert prov["init_provenance"] == json.loads(float_export.with_suffix(".provenance.json").read_text())
    pr = prov["pruning"]
    assert pr["criterion"] == "taylor" and pr["source_channels"] == [8, 8, 8, 8] and pr["channels"] == [6, 4, 4, 2]
    assert len(pr["convs"]["head"]["kept"]) == 6 and len(pr["convs"]["head"]["importance"]) == 8
    assert pr["kmac_per_pixel"]["after"] < pr["kmac_per_pixel"]["before"]
    assert "caches" in prov  # trained from the cache, whose making is recorded

    # another target in the same run folder is refused
    assert lic(*args[:-6], "--channels", "6,4,4,3", "--run-dir", run, "--export", out) == 1
    assert "records another pruning" in capsys.readouterr().err

    quant = tmp_path / "quant.pt"
    assert lic("qat", "--student", out, "--teacher", tiny_teacher_path, "--cache", cache, *TINY, "--steps", "2",
               "--calib-batches", "2", "--weight-bits", "8,4,4,8,8", "--act-bits", "8", "--run-dir",
               tmp_path / "qrun", "--export", quant) == 0
    _, qcfg_student, _, _ = load_quant_student(quant)
    assert qcfg_student.channels == (6, 4, 4, 2)
    assert lic("export", quant, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path, "--tile", "8",
               "-o", tmp_path / "pkg") == 0
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["student"]["kmac_per_pixel"] == pytest.approx(pr["kmac_per_pixel"]["after"], abs=1e-3)


def test_l1_and_kmac_target_from_images(tmp_path, float_export, common):
    """--kmac with the weight-magnitude criterion, on images (--data), no fine-tuning (--steps 0)."""
    out = tmp_path / "p.pt"
    assert lic("prune", "--student", float_export, *common, "--kmac", "0.5", "--multiple", "2", "--criterion", "l1",
               "--steps", "0", "--run-dir", tmp_path / "run", "--export", out) == 0
    _, cfg, _ = load_float_student(out)
    assert config_kmac(cfg) <= 0.5 and all(c % 2 == 0 for c in cfg.channels)
    assert json.loads(out.with_suffix(".provenance.json").read_text())["pruning"]["criterion"] == "l1"


@pytest.mark.parametrize("target, says", [
    (["--channels", "9,4,4,2"], "stage 0 has 8 channels, cannot keep 9"),
    (["--channels", "6,0,4,2"], "stage 1 must keep at least one channel"),
    (["--channels", "6,4,4"], "--channels has 3 entries, the student has 4 stages"),
    (["--kmac", "0.001"], "--kmac 0.001: even"),
    (["--kmac", "-1"], "--kmac must be positive"),
])
def test_bad_targets_are_one_line(tmp_path, float_export, common, capsys, target, says):
    assert lic("prune", "--student", float_export, *common, *target, "--steps", "1", "--run-dir", tmp_path / "run",
               "--export", tmp_path / "p.pt") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lic: error: ") and says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.pt").exists()
