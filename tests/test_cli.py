"""The `lic` command as a user meets it: exit codes, one-line errors, no half-written outputs."""

import subprocess
import sys

import pytest

from host.image_io import load_rgb, save_png
from lic.cli import SUBCOMMANDS, main


def lic(*args) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: lic " + command in capsys.readouterr().out


def test_round_trip_odd_size(tmp_path, tiny_teacher_path, rgb_image, capsys):
    save_png(tmp_path / "in.png", rgb_image)
    assert lic("encode", tmp_path / "in.png", "-o", tmp_path / "a.lic", "--teacher", tiny_teacher_path) == 0
    assert lic("decode", tmp_path / "a.lic", "-o", tmp_path / "out.png", "--teacher", tiny_teacher_path) == 0
    out, _ = load_rgb(tmp_path / "out.png")
    assert out.shape == rgb_image.shape
    assert "bpp" in capsys.readouterr().out


def test_greyscale_input_warns(tmp_path, tiny_teacher_path, rgb_image, capsys):
    from PIL import Image

    Image.fromarray(rgb_image).convert("L").save(tmp_path / "g.png")
    assert lic("encode", tmp_path / "g.png", "-o", tmp_path / "g.lic", "--teacher", tiny_teacher_path) == 0
    assert "lic: warning:" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign", "empty"])
def test_bad_files_fail_cleanly_and_write_nothing(tmp_path, tiny_teacher_path, rgb_image, capsys, damage):
    save_png(tmp_path / "in.png", rgb_image)
    lic("encode", tmp_path / "in.png", "-o", tmp_path / "a.lic", "--teacher", tiny_teacher_path)
    data = (tmp_path / "a.lic").read_bytes()
    bad = {"truncate": data[: len(data) - 9], "flip": data[:40] + bytes([data[40] ^ 1]) + data[41:],
           "foreign": (tmp_path / "in.png").read_bytes(), "empty": b""}[damage]
    (tmp_path / "bad.lic").write_bytes(bad)
    capsys.readouterr()
    assert lic("decode", tmp_path / "bad.lic", "-o", tmp_path / "out.png", "--teacher", tiny_teacher_path) == 1
    err = capsys.readouterr().err
    assert err.startswith("lic: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out.png").exists()
    assert list(tmp_path.glob(".out.png*")) == []


def test_wrong_model_is_a_clean_error(tmp_path, tiny_teacher_path, rgb_image, capsys):
    import torch

    sd = torch.load(tiny_teacher_path, weights_only=True)
    sd["g_s.0.weight"] = sd["g_s.0.weight"] * 1.01
    torch.save(sd, tmp_path / "other.pt")
    save_png(tmp_path / "in.png", rgb_image)
    lic("encode", tmp_path / "in.png", "-o", tmp_path / "a.lic", "--teacher", tiny_teacher_path)
    assert lic("decode", tmp_path / "a.lic", "-o", tmp_path / "o.png", "--teacher", tmp_path / "other.pt") == 1
    assert "needs decoder" in capsys.readouterr().err


def test_unknown_model_without_teacher_flag(tmp_path, tiny_teacher_path, rgb_image, capsys):
    save_png(tmp_path / "in.png", rgb_image)
    lic("encode", tmp_path / "in.png", "-o", tmp_path / "a.lic", "--teacher", tiny_teacher_path)
    assert lic("decode", tmp_path / "a.lic", "-o", tmp_path / "o.png") == 1
    assert "not a shipped teacher" in capsys.readouterr().err


def test_missing_input_and_output_folder(tmp_path, tiny_teacher_path, rgb_image, capsys):
    assert lic("encode", tmp_path / "nope.png", "-o", tmp_path / "a.lic", "--teacher", tiny_teacher_path) == 1
    save_png(tmp_path / "in.png", rgb_image)
    assert lic("encode", tmp_path / "in.png", "-o", tmp_path / "no" / "a.lic", "--teacher", tiny_teacher_path) == 1
    err = capsys.readouterr().err
    assert "image not found" in err and "output folder does not exist" in err


def test_real_process_prints_no_traceback(tmp_path):
    (tmp_path / "bad.lic").write_bytes(b"\x89LIC\r\n\x1a\n" + bytes(40))
    r = subprocess.run([sys.executable, "-m", "lic.cli", "decode", str(tmp_path / "bad.lic"), "-o",
                        str(tmp_path / "o.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("lic: error: ") and "Traceback" not in r.stderr


def test_shipped_teacher_round_trips_kodak(kodak, tmp_path, capsys):
    """The default rate point on a real image: decodes, found by fingerprint, sane rate and quality."""
    from bench.metrics import psnr

    assert lic("encode", kodak / "kodim23.png", "-o", tmp_path / "k.lic") == 0
    assert lic("decode", tmp_path / "k.lic", "-o", tmp_path / "k.png") == 0
    a, _ = load_rgb(kodak / "kodim23.png")
    b, _ = load_rgb(tmp_path / "k.png")
    bpp = (tmp_path / "k.lic").stat().st_size * 8 / (a.shape[0] * a.shape[1])
    # measured with the shipped q3 teacher: 0.264 bpp, 31.82 dB
    assert 0.1 < bpp < 0.6
    assert psnr(a, b) > 30.0
