import pytest
import torch
from torch import nn

from training.student_decoder import (StudentConfig, StudentSynthesis, count_macs, grow_latent_convs, kmac_per_pixel,
                                      layer_plan, macs_per_output_pixel, receptive_halo, teacher_synthesis)

TINY = dict(latent_channels=8, channels=8)


@pytest.mark.parametrize("upsample", ["nearest", "deconv4", "deconv5"])
def test_output_is_16x_input(upsample):
    model = StudentSynthesis(StudentConfig(**TINY, upsample=upsample))
    out = model(torch.randn(2, 8, 4, 3))
    assert out.shape == (2, 3, 64, 48)


@pytest.mark.parametrize("upsample", ["nearest", "deconv4", "deconv5"])
def test_per_stage_channels_and_extra_convs(upsample):
    cfg = StudentConfig(latent_channels=8, channels=(12, 10, 6, 4), convs_per_stage=2, upsample=upsample)
    model = StudentSynthesis(cfg)
    assert model(torch.randn(1, 8, 2, 2)).shape == (1, 3, 32, 32)
    plan = layer_plan(cfg)
    assert len(plan) == 1 + 4 * 2
    assert [s.out_ch for s in plan] == [12, 12, 10, 10, 6, 6, 4, 4, 3]
    assert [s.relu for s in plan] == [True] * 8 + [False]  # no ReLU on the image


def test_no_head_reads_latent_directly():
    cfg = StudentConfig(**TINY, head_kernel=0)
    model = StudentSynthesis(cfg)
    assert isinstance(model.layers[0], nn.Upsample) and model.layers[1].in_channels == 8
    assert model(torch.randn(1, 8, 2, 2)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("bad", [dict(upsample="bilinear"), dict(activation="gdn"), dict(channels=(8, 8)),
                                 dict(convs_per_stage=0), dict(head_kernel=5), dict(latent_convs=-1),
                                 dict(head_kernel=0, latent_convs=1)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        StudentConfig(**{**TINY, **bad})


def test_config_roundtrip():
    cfg = StudentConfig(latent_channels=8, channels=(8, 6, 4, 4), upsample="deconv4")
    assert StudentConfig.from_dict(cfg.to_dict()) == cfg


# --- MAC counting ------------------------------------------------------------------------------

def test_macs_single_conv():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    assert count_macs(conv, (7, 6)) == 5 * 3 * 9 * 7 * 6


def test_macs_strided_grouped_conv():
    conv = nn.Conv2d(4, 6, 3, stride=2, groups=2)  # 8x8 -> 3x3
    assert count_macs(conv, (8, 8)) == 6 * 2 * 9 * 3 * 3


def test_macs_conv_transpose_counts_direct_implementation():
    deconv = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1)  # 5x5 -> 10x10
    total, shape = count_macs(deconv, (5, 5), return_output_shape=True)
    assert shape == (1, 6, 10, 10)
    assert total == 4 * 6 * 16 * 5 * 5  # per *input* pixel: no MACs on inserted zeros


def test_macs_conv_transpose_teacher_geometry_and_groups():
    deconv = nn.ConvTranspose2d(4, 6, 5, stride=2, padding=2, output_padding=1, groups=2)
    assert count_macs(deconv, (3, 4)) == 4 * 3 * 25 * 3 * 4


def test_macs_linear_and_sequential():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 2))
    assert count_macs(model, (2, 2), in_channels=3) == 12 * 7 + 7 * 2


def test_macs_gdn_is_c_squared_per_pixel():
    from lic.compressai_compat import compressai  # noqa: F401
    from compressai.layers import GDN

    model = nn.Sequential(nn.Conv2d(2, 4, 1), GDN(4, inverse=True))
    assert count_macs(model, (3, 5)) == 4 * 2 * 15 + 4 * 4 * 15


def test_teacher_gs_macs_match_formula():
    N, M, h, w = 8, 12, 2, 3
    g_s = teacher_synthesis(N, M)
    hw = h * w
    expected = (M * N * 25 * hw + N * N * 4 * hw          # deconv M->N at hw in, IGDN at 2x
                + N * N * 25 * 4 * hw + N * N * 16 * hw   # deconv, IGDN at 4x
                + N * N * 25 * 16 * hw + N * N * 64 * hw  # deconv, IGDN at 8x
                + N * 3 * 25 * 64 * hw)                   # deconv N->3
    assert count_macs(g_s, (h, w)) == expected


def test_teacher_gs_reference_size():
    # ScaleHyperprior N=128, M=192: 10,797,056 MAC per latent pixel / 256 output pixels.
    assert kmac_per_pixel(teacher_synthesis(128, 192)) == pytest.approx(42.176)


def test_student_macs_per_pixel_formula():
    C, M = 16, 192
    model = StudentSynthesis(StudentConfig(latent_channels=M, channels=C, upsample="nearest"))
    per_latent_px = M * C * 9 + C * C * 9 * (4 + 16 + 64) + C * 3 * 9 * 256
    assert macs_per_output_pixel(model) == pytest.approx(per_latent_px / 256)
    # independent of tile size (no strided reductions)
    assert macs_per_output_pixel(model, (3, 5)) == pytest.approx(per_latent_px / 256)


def test_grown_latent_convs_decode_the_same_until_trained():
    """Convs added at the latents' resolution start as identities after a ReLU: the grown student's
    output equals the trained one's exactly; they cost 1/256 of their MACs per output pixel and widen
    the halo by one latent each."""
    torch.manual_seed(0)
    small = StudentSynthesis(StudentConfig(**TINY))
    with torch.no_grad():
        for p in small.parameters():
            p.normal_(0, 0.3)
    grown = grow_latent_convs(small, 2)
    y = torch.randn(2, 8, 3, 5) * 3
    with torch.no_grad():
        assert torch.equal(grown(y), small(y))
    assert [s.name for s in layer_plan(grown.cfg)][:3] == ["head", "latent0", "latent1"]
    assert kmac_per_pixel(grown) - kmac_per_pixel(small) == pytest.approx(2 * 8 * 8 * 9 / 256 / 1000)
    assert receptive_halo(grown.cfg) == receptive_halo(small.cfg) + 2
    with pytest.raises(ValueError):
        grow_latent_convs(grown, 1)
