"""Issue 11: every input lic reads is untrusted: .lic files (geometry, stream lengths, then the
checked C rANS decoder), decoder packages, and images on the encode side.
The fuzz suite (test_fuzz.py) throws mutated files at all of it; these tests pin each check down."""

from __future__ import annotations

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_lic
from host.decoder_package import MANIFEST, DecoderPackage, sha256_file
from host.rans import CdfTable
from lic.errors import LicError

PACKAGE = REPO / "host" / "decoders" / "q3"


# --- CDF tables and streams: checked before and while decoding -----------------------------

def _table() -> CdfTable:
    cdf = np.array([[0, 30000, 60000, 65000, 65536, 0], [0, 100, 65000, 65435, 65535, 65536]], dtype=np.int32)
    return CdfTable(cdf, np.array([5, 6]), np.array([-1, -2]))


def test_invalid_cdf_tables_are_refused():
    good = _table()
    for cdf, length in [(good.cdf.copy(), np.array([5, 7])), (good.cdf.copy(), np.array([1, 5]))]:
        with pytest.raises(LicError, match="not a valid 16-bit CDF"):
            CdfTable(cdf, length, good.offset)
    flat = good.cdf.copy()
    flat[0, 2] = 30000  # a zero-probability symbol: a decoder without the check would index past the row
    with pytest.raises(LicError, match="not a valid 16-bit CDF"):
        CdfTable(flat, good.cdf_length, good.offset)
    short = good.cdf.copy()
    short[1, 5] = 65535
    with pytest.raises(LicError, match="not a valid 16-bit CDF"):
        CdfTable(short, good.cdf_length, good.offset)


def test_streams_decode_only_to_what_the_encoder_wrote():
    from bench.entropy import compressai_ans

    table = _table()
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, 2, 500).astype(np.int32)
    symbols = (rng.integers(-1, 4, 500) + np.where(indexes == 0, -1, -2)).astype(np.int32)
    symbols[7] = 1000  # a bypass-coded value
    stream = compressai_ans().RansEncoder().encode_with_indexes(
        symbols.tolist(), indexes.tolist(), table.cdf.tolist(), table.cdf_length.tolist(), table.offset.tolist())
    assert table.decode(stream, indexes).tolist() == symbols.tolist()
    decoder_error = "ends early|out of its interval|out of range|does not end|does not fit"
    for bad, why in [(stream[:-4], decoder_error), (stream + b"\0\0\0\0", decoder_error), (stream[:-1], "32-bit words"),
                     (b"", "32-bit words"), (stream[:4] + bytes([stream[4] ^ 1]) + stream[5:], decoder_error)]:
        with pytest.raises(LicError, match=why):
            table.decode(bad, indexes)
    with pytest.raises(LicError, match="too short for 100000 symbols"):
        table.decode(stream, np.zeros(100_000, np.int32))
    with pytest.raises(LicError, match="too long for 3 symbols"):
        table.decode(stream, np.zeros(3, np.int32))
    with pytest.raises(LicError, match="out of range"):
        table.decode(stream, np.full(500, 2, np.int32))


# --- decoder packages ----------------------------------------------------------------------------

@pytest.fixture
def package_copy(tmp_path):
    dst = tmp_path / "pkg"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("quant_student.pt"))
    return dst


def _edit_manifest(root, **changes):
    m = json.loads((root / MANIFEST).read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    (root / MANIFEST).write_text(json.dumps(m))


def _rewrite(root, name, data: bytes):
    """Replace a package file *and* its checksum: only the cross-checks can catch it then."""
    (root / name).write_bytes(data)
    m = json.loads((root / MANIFEST).read_text())
    m["files"][name] = sha256_file(root / name)
    (root / MANIFEST).write_text(json.dumps(m))


@pytest.mark.parametrize("changes, match", [
    ({"latent_channels": "192"}, "latent_channels must be a int"),
    ({"upscale": None}, "upscale must be"),
    ({"output_scale": -1.0}, "output_scale must be"),
    ({"output_scale": 1e9}, "output_scale must be"),
    ({"output_scale": 0.007}, "must be a power of two"),
    ({"file_fingerprint": "zz"}, "32 hex digits"),
    ({"files": {"../../etc/passwd": "0" * 64}}, "unknown files"),
    ({"files": {}}, "no checksum for"),
    ({"spatial_multiple": 32}, "4 x upscale"),
    ({"latent_channels": 191}, "manifest says latent_channels 191"),
])
def test_package_manifest_is_checked(package_copy, changes, match):
    _edit_manifest(package_copy, **changes)
    with pytest.raises(LicError, match=match):
        DecoderPackage.load(package_copy)


def test_package_missing_or_altered_file(package_copy, tmp_path, capsys):
    (package_copy / "student.onnx").write_bytes(b"altered")
    with pytest.raises(LicError, match="does not match the checksum"):
        DecoderPackage.load(package_copy)
    (package_copy / "student.onnx").unlink()
    with pytest.raises(LicError, match="missing student.onnx"):
        DecoderPackage.load(package_copy)
    lic = tmp_path / "x.lic"
    lic.write_bytes(b"\x89LIC\r\n\x1a\n" + bytes(30))
    assert run_lic("decode", lic, "-o", tmp_path / "x.png", "--package", package_copy) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lic: error:")


def test_package_parts_are_checked_against_each_other(package_copy):
    import io

    with np.load(package_copy / "entropy_tables.npz") as t:
        tables = dict(t)
    bad = dict(tables, z_cdf=tables["z_cdf"][:, ::-1].copy())
    buf = io.BytesIO()
    np.savez(buf, **bad)
    _rewrite(package_copy, "entropy_tables.npz", buf.getvalue())
    with pytest.raises(LicError, match="not a valid 16-bit CDF"):
        DecoderPackage.load(package_copy)
    fewer = dict(tables, y_cdf=tables["y_cdf"][:10], y_cdf_length=tables["y_cdf_length"][:10],
                 y_offset=tables["y_offset"][:10])
    buf = io.BytesIO()
    np.savez(buf, **fewer)
    _rewrite(package_copy, "entropy_tables.npz", buf.getvalue())
    _edit_manifest(package_copy, integer_hs_fingerprint=None)
    with pytest.raises(LicError, match="scale indexes up to 63, the y table has 10 rows"):
        DecoderPackage.load(package_copy)


def test_an_edited_offset_table_is_refused(package_copy):
    """Offsets a real export cannot write (CompressAI's y rows are centred on zero): an edited table
    whose checksum was rewritten would otherwise shift every latent and decode wrong pixels silently."""
    import io

    with np.load(package_copy / "entropy_tables.npz") as t:
        tables = dict(t)
    for key, row, value, match in [("y_offset", 5, -3, "y_offset row 5 is not centred on zero"),
                                   ("z_offset", 0, 1, "z_offset has values outside its rows"),
                                   ("y_offset", 0, -10_000, "y_offset has values outside its rows")]:
        edited = dict(tables)
        edited[key] = tables[key].copy()
        edited[key][row] = value
        buf = io.BytesIO()
        np.savez(buf, **edited)
        _rewrite(package_copy, "entropy_tables.npz", buf.getvalue())
        with pytest.raises(LicError, match=match):
            DecoderPackage.load(package_copy)


# --- signed packages: edits the checksums cannot catch ---------------------------------------------

def _keypair(folder, name):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_signed_package_decodes_only_with_its_key(package_copy, tmp_path, capsys, monkeypatch):
    from host.package_signature import TRUSTED_KEYS_ENV, sign_manifest
    from test_fuzz import photo

    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    mine, mine_pub = _keypair(tmp_path, "mine")
    _, other_pub = _keypair(tmp_path, "other")
    lic, png = tmp_path / "k.lic", tmp_path / "k.png"
    Image.fromarray(photo(48, 64, 1)).save(png)
    assert run_lic("encode", png, "-o", lic, "--integer-hs") == 0
    assert run_lic("decode", lic, "-o", tmp_path / "plain.png", "--package", package_copy) == 0

    # unsigned, with a trusted key configured: refused
    assert run_lic("decode", lic, "-o", tmp_path / "x.png", "--package", package_copy, "--trusted-key", mine_pub) == 1
    assert "is not signed (manifest.sig missing)" in capsys.readouterr().err
    sign_manifest(package_copy / MANIFEST, mine)
    assert run_lic("decode", lic, "-o", tmp_path / "signed.png", "--package", package_copy,
                   "--trusted-key", other_pub, "--trusted-key", mine_pub) == 0
    assert (tmp_path / "signed.png").read_bytes() == (tmp_path / "plain.png").read_bytes()
    capsys.readouterr()
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(other_pub))  # only someone else's key: refused
    assert run_lic("decode", lic, "-o", tmp_path / "y.png", "--package", package_copy) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not signed by a trusted key" in err[0] and not (tmp_path / "y.png").exists()

    # an edit whose checksum was rewritten passes the checksums but not the signature
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(mine_pub))
    DecoderPackage.load(package_copy)
    onnx = bytearray((package_copy / "student.onnx").read_bytes())
    onnx[-100] ^= 1
    _rewrite(package_copy, "student.onnx", bytes(onnx))
    with pytest.raises(LicError, match="not signed by a trusted key"):
        DecoderPackage.load(package_copy)


def test_bad_keys_are_one_line(package_copy, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from host.package_signature import TRUSTED_KEYS_ENV, sign_manifest

    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    for key, match in [(rsa_pem, "not an Ed25519 private key"), (garbage, "not a PEM private key"),
                       (tmp_path / "absent.pem", "cannot read the private key")]:
        with pytest.raises(LicError, match=match):
            sign_manifest(package_copy / MANIFEST, key)
    with pytest.raises(LicError, match="not a PEM public key"):
        DecoderPackage.load(package_copy, keys=[garbage])
    mine, _ = _keypair(tmp_path, "mine")
    sign_manifest(package_copy / MANIFEST, mine)
    (package_copy / "manifest.sig").write_bytes(b"short")
    with pytest.raises(LicError, match="5 bytes, not an Ed25519 signature"):
        DecoderPackage.load(package_copy, keys=[_keypair(tmp_path, "k")[1]])
    # lic export checks its key before minutes of exporting
    assert run_lic("export", REPO / "training" / "students" / "student_q3.pt", "-o", tmp_path / "exported",
                   "--sign-key", garbage) == 1
    assert not (tmp_path / "exported").exists()


def test_the_board_path_loads_cryptography_only_with_a_key():
    import subprocess
    import sys

    code = ("import sys; from host.decoder_package import DecoderPackage; "
            f"DecoderPackage.load({str(PACKAGE)!r}); assert 'cryptography' not in sys.modules, 'loaded'")
    env = {k: v for k, v in __import__('os').environ.items() if k != "LIC_TRUSTED_KEYS"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


def test_integer_hs_bit_widths_and_shapes_are_checked(package_copy):
    import io

    with np.load(package_copy / "integer_hs.npz") as z:
        arrays = dict(z)
    wide = dict(arrays, weight0=arrays["weight0"].astype(np.int16) * 0 + 300)  # not int8: would wrap silently
    buf = io.BytesIO()
    np.savez(buf, **wide)
    _rewrite(package_copy, "integer_hs.npz", buf.getvalue())
    with pytest.raises(LicError, match="expected int8 values"):
        DecoderPackage.load(package_copy)
    unchained = dict(arrays, weight1=arrays["weight1"][:, :3])
    buf = io.BytesIO()
    np.savez(buf, **unchained)
    _rewrite(package_copy, "integer_hs.npz", buf.getvalue())
    with pytest.raises(LicError, match="layer 1: weight shape"):
        DecoderPackage.load(package_copy)


@pytest.mark.parametrize("meta_change, match", [
    ({"input_bits": None}, "'input_bits' must be an integer"),
    ({"layers": 1000}, "'layers' must be an integer in 1..16"),
    ({"upsample_before": [True]}, "one true/false per layer"),
])
def test_integer_hs_meta_is_checked(package_copy, meta_change, match):
    import io

    with np.load(package_copy / "integer_hs.npz") as z:
        arrays = dict(z)
    meta = json.loads(bytes(arrays["meta"]).decode())
    for k, v in meta_change.items():
        meta.pop(k) if v is None else meta.__setitem__(k, v)
    buf = io.BytesIO()
    np.savez(buf, **dict(arrays, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8)))
    _rewrite(package_copy, "integer_hs.npz", buf.getvalue())
    with pytest.raises(LicError, match=match):
        DecoderPackage.load(package_copy)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "[1, 2]", '"manifest"'])
def test_manifest_that_is_not_an_object_is_one_line(package_copy, text):
    (package_copy / MANIFEST).write_text(text)
    with pytest.raises(LicError):
        DecoderPackage.load(package_copy)


# --- folders with bad files ------------------------------------------------------------------------

def test_folder_decoding_goes_on_past_bad_files(tmp_path, capsys):
    from lic_fuzz import build
    from host.container import parse
    from test_fuzz import photo
    from training.teacher import load_default
    from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

    data = encode(EntropyModels(load_default(3), shipped_integer_hs(3)), photo(40, 50, 3))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_garbage.lic").write_bytes(b"not a lic file")
    (folder / "b_good.lic").write_bytes(data)
    (folder / "c_claim.lic").write_bytes(build(parse(data), 65535, 1))
    (folder / "d_good.lic").write_bytes(data)
    assert run_lic("decode", folder, "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [e.split(":")[2].strip() for e in err[:2]] == [str(folder / "a_garbage.lic"), str(folder / "c_claim.lic")]
    assert err[-1] == (f"lic: error: 2 of 4 files failed: {folder / 'a_garbage.lic'}, {folder / 'c_claim.lic'}")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b_good.png", "d_good.png"]


# --- images on the encode side -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                                  "LAB", "HSV", "I", "I;16", "I;16B", "F"])
def test_every_mode_becomes_rgb8(tmp_path, mode):
    from host.image_io import to_rgb8

    im = Image.new(mode, (3, 2))
    if mode == "I":
        im.putdata([-5, 0, 70000, 3, 4, 5])
    if mode == "F":
        im.putdata([0.0, 0.5, 1.0, float("nan"), 0.25, 0.75])
    rgb, _ = to_rgb8(im)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    if mode == "F":
        assert rgb[0, :, 0].tolist() == [0, 128, 255] and rgb[1, 0, 0] == 0


def test_exif_orientation_is_applied(tmp_path):
    from host.image_io import load_rgb

    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(tmp_path / "r.png", exif=exif)
    rgb, warnings = load_rgb(tmp_path / "r.png")
    assert rgb.shape == (3, 2, 3) and rgb[0, 1, 0] == 255 and not warnings


def test_animated_image_codes_the_first_frame_with_a_warning(tmp_path):
    from host.image_io import load_rgb

    frames = [Image.new("RGB", (5, 4), (80 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    rgb, warnings = load_rgb(tmp_path / "a.gif")
    assert rgb.shape == (4, 5, 3) and int(rgb[..., 0].max()) == 0
    assert any("first frame" in w for w in warnings)


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_from_the_header(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels claimed in 60 bytes
    assert run_lic("encode", bomb, "-o", tmp_path / "b.lic") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "over the limit of 16,777,216" in err[0] and "--max-pixels" in err[0]
    assert not (tmp_path / "b.lic").exists()
    from host.image_io import load_rgb
    with pytest.raises(LicError, match="over the limit of 100"):
        load_rgb(bomb, max_pixels=100)


def test_one_pixel_image_round_trip(tmp_path, tiny_teacher_path):
    Image.new("RGB", (1, 1), (200, 30, 90)).save(tmp_path / "one.png")
    assert run_lic("encode", tmp_path / "one.png", "-o", tmp_path / "one.lic", "--teacher", tiny_teacher_path) == 0
    assert run_lic("decode", tmp_path / "one.lic", "-o", tmp_path / "one_out.png", "--teacher", tiny_teacher_path) == 0
    assert Image.open(tmp_path / "one_out.png").size == (1, 1)
