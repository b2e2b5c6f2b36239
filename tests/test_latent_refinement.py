"""Per-image latent refinement (`lic encode --refine`, quantize/latent_refinement.py) on a real Kodak
crop with the shipped q3 codec: the refined file costs less (lambda * MSE + bpp, measured on the
file and the board's decode), the board's decoder package reads it bit-exact like any other file,
and the same image gives the same bytes."""

import numpy as np
import pytest

from bench import metrics
from conftest import REPO, run_lic
from host.image_io import load_rgb
from lic.errors import LicError

PACKAGE = REPO / "host" / "decoders" / "q3"
STEPS = 40


@pytest.fixture(scope="module")
def crop(kodak):
    rgb, _ = load_rgb(kodak / "kodim23.png")
    return np.ascontiguousarray(rgb[180:330, 250:450])  # 150x200: not a multiple of 64


@pytest.fixture(scope="module")
def codec():
    from host.decoder_package import DecoderPackage
    from quantize.latent_refinement import refinement_for
    from training.teacher_codec import package_encoder

    package = DecoderPackage.load(PACKAGE)
    models = package_encoder(package)  # the q3 tuned encoder + integer h_s
    return package, models, refinement_for(models, STEPS)


def _board_decode(package, data):
    from host.backends import make_backend
    from host.runtime import HostDecoder

    return HostDecoder(package, make_backend("onnx", package)).decode(data)[0]


def _cost(lmbda, rgb, out, data):
    mse = np.mean((out.astype(np.float64) - rgb) ** 2) / 255 ** 2
    return lmbda * 255 ** 2 * mse + metrics.bpp(len(data), *rgb.shape[:2])


def test_refined_file_costs_less_and_the_board_decodes_it_bit_exact(codec, crop):
    import torch

    from host.container import parse
    from training.teacher_codec import decode_y_hat, encode, to_rgb8

    package, models, refinement = codec
    plain, refined = encode(models, crop), encode(models, crop, refinement)
    assert parse(refined).fingerprint == parse(plain).fingerprint == package.file_fingerprint
    board = {k: _board_decode(package, d) for k, d in (("plain", plain), ("refined", refined))}
    with torch.inference_mode():  # the torch student the search ran through decodes the same pixels
        torch_out = to_rgb8(refinement.synthesis(decode_y_hat(models, parse(refined)))[..., :150, :200])
    assert np.array_equal(torch_out, board["refined"])
    lmbda = models.teacher.lmbda
    before, after = _cost(lmbda, crop, board["plain"], plain), _cost(lmbda, crop, board["refined"], refined)
    # measured on this crop (x86): cost 0.837 -> 0.718 (-14%), 30.09 -> 31.48 dB at 0.410 -> 0.408 bpp
    assert after < 0.92 * before, (before, after)
    assert metrics.psnr(crop, board["refined"]) > metrics.psnr(crop, board["plain"]) + 0.9


def test_same_image_same_bytes(codec, crop):
    from training.teacher_codec import encode

    _, models, refinement = codec
    assert encode(models, crop, refinement) == encode(models, crop, refinement)


def test_encode_cli_refines_for_the_teacher_or_the_tuned_encoders_student(crop, tmp_path, capsys):
    from host.image_io import save_png

    save_png(tmp_path / "crop.png", crop)
    # the teacher's file: refined for the teacher's own g_s, decoded by `lic decode`
    assert run_lic("encode", tmp_path / "crop.png", "-o", tmp_path / "t.lic", "--refine", "2") == 0
    assert run_lic("decode", tmp_path / "t.lic", "-o", tmp_path / "t.png") == 0
    assert (tmp_path / "t.png").is_file()
    assert run_lic("encode", tmp_path / "crop.png", "-o", tmp_path / "s.lic", "--teacher", "q3-tuned",
                   "--integer-hs", "--refine", "2") == 0
    assert run_lic("encode", tmp_path / "crop.png", "-o", tmp_path / "x.lic", "--refine", "-3") == 1
    assert "--refine takes a number of steps >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x.lic").exists()


def test_bad_settings_are_one_line_errors(codec):
    from quantize.latent_refinement import Refinement

    synthesis = codec[2].synthesis
    with pytest.raises(LicError, match="at least one step"):
        Refinement(synthesis, 0.01, steps=0)
    with pytest.raises(LicError, match="positive learning rate"):
        Refinement(synthesis, 0.01, lr=float("nan"))
    with pytest.raises(LicError, match="records none"):
        Refinement(synthesis, None)
