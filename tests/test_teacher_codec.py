import numpy as np
import pytest
import torch

from host.container import parse
from lic.errors import LicError
from training.teacher_codec import decode, decode_y_hat, encode, pad_replicate, to_tensor


def test_streams_equal_compressai_own_compress(tiny_teacher, rgb_image):
    """Our spelled-out encoder must write exactly what ScaleHyperprior.compress writes."""
    lic = parse(encode(tiny_teacher, rgb_image))
    with torch.inference_mode():
        ref = tiny_teacher.model.compress(pad_replicate(to_tensor(rgb_image)))
    assert lic.streams == [ref["strings"][1][0], ref["strings"][0][0]]


def test_decode_equals_compressai_decompress(tiny_teacher, rgb_image):
    data = encode(tiny_teacher, rgb_image)
    lic = parse(data)
    with torch.inference_mode():
        ref = tiny_teacher.model.compress(pad_replicate(to_tensor(rgb_image)))
        ref_x = tiny_teacher.model.decompress(ref["strings"], ref["shape"])["x_hat"]
        y_hat = decode_y_hat(tiny_teacher, lic)
    out = decode(tiny_teacher, data)
    assert out.shape == rgb_image.shape and out.dtype == np.uint8
    expect = ref_x[0, :, :75, :100].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(out, expect)
    assert y_hat.shape[-2:] == (128 // 16, 128 // 16)


@pytest.mark.parametrize("h,w", [(1, 1), (63, 65), (64, 64), (130, 17)])
def test_any_size_round_trips(tiny_teacher, h, w):
    rgb = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = decode(tiny_teacher, encode(tiny_teacher, rgb))
    assert out.shape == (h, w, 3)


def test_wrong_model_is_refused(tiny_teacher, rgb_image):
    from dataclasses import replace

    other = replace(tiny_teacher, fingerprint=bytes(16), name="other")
    with pytest.raises(LicError, match="needs decoder"):
        decode(other, encode(tiny_teacher, rgb_image))
