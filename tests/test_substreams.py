"""Format v3: y as rANS substreams, one per tile core or per band of rows of each core. Same latents,
same pixels as v2; older versions and v3 files of one substream per core still decode; a header whose
tile geometry does not fit its streams is a one-line error."""

import numpy as np
import pytest
import torch

from conftest import run_lic
from host.backends import make_backend
from host.container import FORMAT_V2, FORMAT_V3, LicFile, parse
from host.decoder_package import DecoderPackage
from host.runtime import HostDecoder, StageTimes, decode_latents
from host.tiling import TilePlan
from lic.errors import LicError
from training.teacher_codec import EntropyModels, decode, decode_y_hat, encode

TILES = (8, 2)  # the tiny package's 8-latent tiles: a 16x24 latent frame gives 3 x 5 substreams
WIDE = (16, 2)  # 16-latent tiles: the same frame has 1 x 2 windows, so each core is coded in 2 bands of rows


@pytest.fixture(scope="module")
def package(tiny_package):
    return DecoderPackage.load(tiny_package)


def _image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (200, 330, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def files(tiny_teacher, integer_hs):
    return {v: encode(EntropyModels(tiny_teacher, integer_hs, t), _image())
            for v, t in ((2, None), (3, TILES), ("3b", WIDE))}


def test_v3_layout(files):
    v2, v3 = parse(files[2]), parse(files[3])
    assert (v2.version, v3.version) == (FORMAT_V2, FORMAT_V3) and v3.tiles == TILES and v2.tiles is None
    cores = TilePlan(16, 24, *TILES).cores()
    assert len(v3.streams) == 1 + len(cores) == 16 and v3.streams[0] == v2.streams[0]
    covered = np.zeros((16, 24), dtype=int)
    for rows, cols in cores:
        covered[rows, cols] += 1
    assert (covered == 1).all()


def test_v3_bands_of_rows_when_windows_are_fewer_than_the_cores_of_a_board(files):
    """Two windows, four substreams: each core in two bands of rows, top band first, so the A53 boards'
    four cores share y and the PYNQ-Z2's two get equal shares (the cores are 14 and 10 latents wide)."""
    plan = TilePlan(16, 24, *WIDE)
    assert len(plan.cores()) == 2 and plan.encoder_bands() == 2
    v3 = parse(files["3b"])
    assert v3.tiles == WIDE and len(v3.streams) == 1 + 4
    assert plan.substreams(2) == [(slice(0, 8), slice(0, 14)), (slice(8, 16), slice(0, 14)),
                                  (slice(0, 8), slice(14, 24)), (slice(8, 16), slice(14, 24))]
    assert TilePlan(16, 24, *TILES).encoder_bands() == 1  # 15 windows: one substream each, as before
    with pytest.raises(ValueError, match="17 bands"):
        plan.substreams(17)


def test_v3_one_substream_per_core_still_decodes(files, package, tiny_teacher, integer_hs, monkeypatch):
    """v3 files as written before bands of rows (one substream per core) decode to the same latents."""
    monkeypatch.setattr(TilePlan, "encoder_bands", lambda self: 1)
    old = parse(encode(EntropyModels(tiny_teacher, integer_hs, WIDE), _image()))
    assert len(old.streams) == 1 + 2
    y = decode_latents(parse(files["3b"]), package, StageTimes())
    assert np.array_equal(decode_latents(old, package, StageTimes(), threads=2), y)


def test_v3_same_latents_and_pixels_as_v2(files, package, tiny_teacher, integer_hs):
    y2 = decode_latents(parse(files[2]), package, StageTimes())
    for threads in (1, 2):
        for v3 in (files[3], files["3b"]):
            assert np.array_equal(decode_latents(parse(v3), package, StageTimes(), threads=threads), y2)
    em = EntropyModels(tiny_teacher, integer_hs)
    assert torch.equal(decode_y_hat(em, parse(files[3])), decode_y_hat(em, parse(files[2])))
    assert np.array_equal(decode(em, files[3]), decode(em, files[2]))
    backend = make_backend("onnx", package)
    for tile in (None, 8):
        rgb2 = HostDecoder(package, backend, tile, threads=1).decode(files[2])[0]
        assert np.array_equal(HostDecoder(package, backend, tile, threads=2).decode(files[3])[0], rgb2)


def test_v1_still_decodes_through_the_c_decoder(tiny_teacher, rgb_image):
    from lic.compressai_compat import compressai  # noqa: F401

    data = encode(tiny_teacher, rgb_image)
    lic = parse(data)
    m = tiny_teacher.model
    z_hat = m.entropy_bottleneck.decompress([lic.streams[0]], (2, 2))
    ref = m.gaussian_conditional.decompress([lic.streams[1]], m.gaussian_conditional.build_indexes(m.h_s(z_hat)))
    assert lic.version == 1 and torch.equal(decode_y_hat(tiny_teacher, lic), ref)


def test_header_geometry_must_fit_the_streams(files, package):
    v3 = parse(files[3])
    fit = "streams do not fit its tile geometry"
    for tiles, streams, message in [(WIDE, v3.streams, f"16 {fit} \\(2 tiles: 1 \\+ 2 streams, or 1 \\+ 2 x"),
                                    ((1, 0), v3.streams, f"16 {fit} \\(384 tiles"),
                                    (TILES, v3.streams[:-1], f"15 {fit} \\(15 tiles"),
                                    (WIDE, v3.streams[:1] + (v3.streams[1:] * 3)[:34], f"35 {fit} .* at least one row")]:  # 17 bands of 16 rows
        bad = LicFile(3, v3.fingerprint, v3.height, v3.width, list(streams), tiles=tiles).to_bytes()
        with pytest.raises(LicError, match=message):
            decode_latents(parse(bad, "bad.lic"), package, StageTimes(), "bad.lic")
    raw = bytearray(files[3])
    raw[31:35] = (4).to_bytes(2, "big") + (2).to_bytes(2, "big")  # tile 4, halo 2: no core
    body = bytes(raw[:-4])
    import zlib
    with pytest.raises(LicError, match="leaves no core"):
        parse(body + zlib.crc32(body).to_bytes(4, "big"))
    with pytest.raises(LicError, match="y substream 3: rANS stream"):
        swapped = list(v3.streams)
        swapped[4], swapped[5] = swapped[5], swapped[4]
        decode_latents(parse(LicFile(3, v3.fingerprint, v3.height, v3.width, swapped, tiles=TILES).to_bytes()),
                       package, StageTimes())


def test_lic_encode_tiles(tmp_path, rgb_image, tiny_teacher_path, integer_hs_path, capsys):
    from host.image_io import save_png

    img = tmp_path / "a.png"
    save_png(img, rgb_image)
    out = tmp_path / "a.lic"
    assert run_lic("encode", img, "-o", out, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path,
                   "--tiles", "8,2") == 0
    assert "format v3" in capsys.readouterr().out and parse(out.read_bytes()).tiles == (8, 2)
    assert run_lic("encode", img, "-o", out, "--teacher", tiny_teacher_path, "--tiles", "8,2") == 1
    assert "need an integer h_s" in capsys.readouterr().err
    assert run_lic("encode", img, "-o", out, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path,
                   "--tiles", "4,2") == 1
    assert "leaves no core" in capsys.readouterr().err
