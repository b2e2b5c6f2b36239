"""The golden corpus (tests/golden/): files written by earlier releases keep decoding.

What a file is (its bytes, z symbols, scale indexes, y symbols) is pinned for good; which decoders
claim it may grow, never shrink; the teacher's picture is pinned to 0.01 dB (float g_s); each shipped
decoder package's pixels are pinned by its manifest's digest, re-pinned with
`python tests/golden/make_golden.py pin` when a package ships (docs/FORMAT.md, "Old files")."""

import json
import sys
from pathlib import Path

import pytest

from lic.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

PINS = json.loads((GOLDEN / "pins.json").read_text())
NAMES = sorted(PINS["files"])


def test_the_corpus_covers_every_format_version_and_encoder():
    assert {f["version"] for f in PINS["files"].values()} == {1, 2, 3}
    assert set(NAMES) == set(make_golden.CORPUS)
    for q in (1, 2, 3, 4):
        assert {f"q{q}_teacher_v1", f"q{q}_teacher_v2", f"q{q}_tuned_v2", f"q{q}_tuned_v3"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_old_file_decodes_to_its_pinned_latents(name):
    pin = PINS["files"][name]
    path = GOLDEN / f"{name}.lic"
    assert make_golden.sha(path.read_bytes()) == pin["sha256"], f"{path} was rewritten: golden files never change"
    now = make_golden.latent_pins(path)
    for key in ("version", "fingerprint", "z", "indexes", "y"):
        assert now[key] == pin[key], f"{name}: its {key} decode changed"
    assert set(pin["claimed_by"]) <= set(now["claimed_by"]), \
        f"{name}: no longer decoded by {set(pin['claimed_by']) - set(now['claimed_by'])}"
    assert abs(now["teacher_psnr"] - pin["teacher_psnr"]) < 0.01


def test_shipped_packages_decode_their_old_files_to_the_pinned_pixels():
    for package in make_golden.shipped_packages():
        digest = make_golden.package_digest(package)
        assert digest in PINS["packages"], (f"decoder package {package.name} changed without re-pinning its pixels: "
                                            f"run `python tests/golden/make_golden.py pin` and commit pins.json")
        pixels = PINS["packages"][digest]["pixels"]
        assert pixels, f"package {package.name} claims no golden file"
        for name, want in pixels.items():
            assert make_golden.student_pixels(package, GOLDEN / f"{name}.lic") == want, f"{package.name}: {name}"


@pytest.mark.parametrize("name", ["q3_teacher_v2", "q3_tuned_v3"])
def test_encoding_the_source_again_gives_the_same_streams(tmp_path, name):
    """The encoder is deterministic on one machine: a refactor must not change a coded bit (the
    float g_a can move a latent across a rounding boundary on another CPU or torch build). The header's
    fingerprint is the file's decoding contract: since contracts replaced encoder fingerprints, a tuned
    encoder's new files carry its teacher's contract, and the old ones still decode (legacy list)."""
    from host.container import parse

    out = tmp_path / f"{name}.lic"
    assert main(["encode", str(make_golden.SOURCE), "-o", str(out), *make_golden.CORPUS[name]]) == 0
    new, old = parse(out.read_bytes()), parse((GOLDEN / f"{name}.lic").read_bytes())
    assert (new.version, new.height, new.width, new.tiles, new.streams) == \
        (old.version, old.height, old.width, old.tiles, old.streams)
    assert new.fingerprint.hex() == PINS["files"][name.replace("tuned", "teacher")]["fingerprint"]
    assert set(PINS["files"][name]["claimed_by"]) <= set(make_golden.claims(out))


def test_lic_decode_reads_every_golden_file(tmp_path):
    """Through the command users run: one output per file, none refused."""
    out = tmp_path / "out"
    assert main(["decode", *[str(GOLDEN / f"{n}.lic") for n in NAMES], "-o", str(out)]) == 0
    assert sorted(p.stem for p in out.glob("*.png")) == NAMES
