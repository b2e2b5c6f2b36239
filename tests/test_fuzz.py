"""Fuzzing every decoder with structure-aware mutations of real .lic files (issue 11).

Real files: small images encoded by the shipped q3 teacher (format v2 with its integer h_s, and v1).
Mutations (tests/lic_fuzz.py): each header field, the reported size claims, stream length fields,
CRC-valid garbage payloads, bit flips, truncations and insertions inside streams, the rANS state
words, the stream list, truncations and insertions of the raw file. Fixed seed, small budget; the
long coverage-guided run is `make fuzz`.

The property, for every case: the decoder either rejects the file with a one-line LicError, or it
decodes it and the entropy-coded content is exactly the original's (a mutation that left the
streams alone, e.g. a height within the same latent geometry): never noise. In a subprocess, the
`lic decode` command line: exit 1 (never a signal), one `lic: error:` line per bad file and no
traceback, every good file still written, no partial output, under a memory and CPU limit.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_lic
from host.container import parse
from lic.errors import LicError
from lic_fuzz import SIZE_CLAIMS, Mutator, build

SEED = 11
STUDENT_CASES = 400
TEACHER_CASES = 40
CLI_CASES = 100
CASE_SECONDS = 20  # generous: a case is milliseconds; this only says "bounded"
CHILD_MEMORY = 6 << 30
PACKAGE = REPO / "host" / "decoders" / "q3"


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth shapes plus sensor-like noise: an image the codec codes like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(x / 9 + c) * np.cos(y / 13 - c) for c in range(3)], axis=2)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models():
    from host.decode_cli import default_package
    from host.decoder_package import DecoderPackage
    from training.teacher import load_default
    from training.teacher_codec import EntropyModels, package_encoder

    # the default package's files (v2), and the teacher's own v1 files
    return package_encoder(DecoderPackage.load(default_package())), EntropyModels(load_default(3))


@pytest.fixture(scope="module")
def v3_files(models):
    """Version 3 (tile substreams) with small tiles, so that each file has several y substreams."""
    from training.teacher_codec import EntropyModels, encode

    v3 = EntropyModels(models[0].teacher, models[0].integer_hs, tiles=(8, 2))
    return [encode(v3, photo(75, 100, 0)), encode(v3, photo(17, 150, 2))]


@pytest.fixture(scope="module")
def real_files(models):
    from training.teacher_codec import encode

    v2, v1 = models
    return {"v2": [encode(v2, photo(75, 100, 0)), encode(v2, photo(64, 64, 1)), encode(v2, photo(17, 150, 2))],
            "v1": [encode(v1, photo(75, 100, 0))]}


@pytest.fixture(scope="module")
def student():
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder

    package = DecoderPackage.load(PACKAGE)
    return HostDecoder(package, make_backend("onnx", package))


def mutated(files: list[bytes], count: int, seed: int):
    m = Mutator(seed)
    for i in range(count):
        src = files[i % len(files)]
        label, data = m.mutate(src)
        yield i, label, src, data


def check_case(decode, src: bytes, data: bytes, label: str) -> str:
    """Run one case through `decode` (bytes -> HxWx3); 'rejected' or 'decoded', or an assertion."""
    t = time.perf_counter()
    try:
        rgb = decode(data)
    except LicError as e:
        assert str(e) and "\n" not in str(e), f"{label}: error message not one line: {e!r}"
        outcome = "rejected"
    else:
        a, b = parse(src), parse(data)
        assert (b.version, b.fingerprint, b.streams) == (a.version, a.fingerprint, a.streams), \
            f"{label}: decoded a file whose entropy-coded content was changed (noise)"
        assert rgb.shape == (b.height, b.width, 3)
        outcome = "decoded"
    assert time.perf_counter() - t < CASE_SECONDS, f"{label}: took {time.perf_counter() - t:.1f} s"
    return outcome


def run_cases(decode, files, count, seed, tmp_path) -> dict[str, int]:
    counts = {"rejected": 0, "decoded": 0}
    for i, label, src, data in mutated(files, count, seed):
        try:
            counts[check_case(decode, src, data, label)] += 1
        except BaseException:
            (tmp_path / f"case{i}.lic").write_bytes(data)  # kept for reproduction
            print(f"fuzz case {i} ({label}) saved to {tmp_path / f'case{i}.lic'}", file=sys.stderr)
            raise
    return counts


def test_fuzz_student_runtime_in_process(student, real_files, v3_files, tmp_path):
    counts = run_cases(lambda d: student.decode(d, "case")[0], real_files["v2"] + v3_files, STUDENT_CASES, SEED,
                       tmp_path)
    print(f"student runtime: {counts}")
    assert counts["rejected"] > 0.8 * STUDENT_CASES


def test_fuzz_teacher_in_process(models, real_files, tmp_path):
    from training.teacher_codec import decode

    v2, v1 = models
    for em, files in ((v2, real_files["v2"]), (v1, real_files["v1"])):
        counts = run_cases(lambda d: decode(em, d, "case"), files, TEACHER_CASES, SEED + em.version, tmp_path)
        print(f"teacher v{em.version}: {counts}")
        assert counts["rejected"] > 0.7 * TEACHER_CASES


def test_reported_size_claims_rejected_before_decoding(student, models, real_files):
    """The issue's files: a v2 file claiming 65535x65535, 1x65535 or 65535x1, CRC recomputed."""
    from training.teacher_codec import decode

    src = parse(real_files["v2"][0])
    for h, w in SIZE_CLAIMS[:3]:
        data = build(src, h, w)
        for name, dec in (("student", lambda d: student.decode(d, "claim")[0]),
                          ("teacher", lambda d: decode(models[0], d, "claim"))):
            with pytest.raises(LicError, match="pixels, over the limit|too short for"):
                dec(data)
    # raising the limit does not let the 65535-wide claims through: the z stream is too short for them
    with pytest.raises(LicError, match="too short for"):
        decode(models[0], build(src, 65535, 65535), "claim", max_pixels=1 << 32)


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (600, 600))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _lic_child(args, limits, timeout: int) -> subprocess.CompletedProcess:
    """`lic ARGS` in a child process under the rlimits `limits` sets."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "lic.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, preexec_fn=limits, cwd=REPO)


def _lic_decode(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    return _lic_child(["decode", *args], _limits, timeout)


def _check_folder_run(proc, folder, out, names_good):
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("lic: error: ") for line in lines), proc.stderr[-2000:]
    files = sorted(p.name for p in folder.iterdir())
    bad = [f for f in files if f[:-4] not in names_good]
    assert lines[-1].startswith(f"lic: error: {len(bad)} of {len(files)} files failed")
    for f in bad:
        assert str(folder / f) in lines[-1]
        assert sum(line.startswith(f"lic: error: {folder / f}") for line in lines[:-1]) == 1, f
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in names_good)  # no partial output


def test_fuzz_cli_folder_in_subprocess(student, real_files, tmp_path):
    """One `lic decode FOLDER` over mutated files plus the originals, in a child with rlimits."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    good = set()
    for i, data in enumerate(real_files["v2"]):
        (folder / f"original{i}.lic").write_bytes(data)
        good.add(f"original{i}")
    src = parse(real_files["v2"][0])
    for h, w in SIZE_CLAIMS:
        (folder / f"claim_{h}x{w}.lic").write_bytes(build(src, h, w))
    for i, label, orig, data in mutated(real_files["v2"], CLI_CASES, SEED + 100):
        (folder / f"case{i:03d}.lic").write_bytes(data)
        if check_case(lambda d: student.decode(d, "case")[0], orig, data, label) == "decoded":
            good.add(f"case{i:03d}")
    proc = _lic_decode(folder, "-o", out)
    _check_folder_run(proc, folder, out, good)


@pytest.mark.slow  # torch in a fresh process: ~30 s; the teacher's decoding is fuzzed in-process above
def test_fuzz_cli_teacher_in_subprocess(real_files, models, tmp_path):
    from training.teacher_codec import decode

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "original.lic").write_bytes(real_files["v2"][0])
    good = {"original"}
    src = parse(real_files["v2"][0])
    for h, w in SIZE_CLAIMS[:3]:
        (folder / f"claim_{h}x{w}.lic").write_bytes(build(src, h, w))
    for i, label, orig, data in mutated(real_files["v2"][:1], 12, SEED + 200):
        (folder / f"case{i:03d}.lic").write_bytes(data)
        if check_case(lambda d: decode(models[0], d, "case"), orig, data, label) == "decoded":
            good.add(f"case{i:03d}")
    proc = _lic_decode(folder, "-o", out, "--decoder", "teacher")
    _check_folder_run(proc, folder, out, good)


@pytest.mark.parametrize("decoder", ["student", "teacher"])
def test_single_bad_file_one_line_no_output(real_files, tmp_path, capsys, decoder):
    src = parse(real_files["v2"][0])
    bad = tmp_path / "claim.lic"
    bad.write_bytes(build(src, 1, 65535))
    assert run_lic("decode", bad, "-o", tmp_path / "x.png", "--decoder", decoder) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lic: error: {bad}: ")
    assert not (tmp_path / "x.png").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["claim.lic"]


AUDIT_CAP = 4 << 30  # the audit's address-space cap


def _audit_limits():
    resource.setrlimit(resource.RLIMIT_AS, (AUDIT_CAP, AUDIT_CAP))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _lic_capped(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return _lic_child(args, _audit_limits, timeout)


def _one_line(proc, *needles):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lic: error: "), proc.stderr[-2000:]
    assert any(n in lines[0] for n in needles), lines[0]


def test_fuzz_memory_and_special_files_under_the_audit_cap(real_files, tmp_path):
    """The audit's memory and special-file cases, each in a child capped at 4 GB of address space:
    special files and files far larger than their header allows among good ones, a small file that
    claims a huge frame for the teacher, a tile far larger than the image, and PNGs of a few KB whose
    pixels would need gigabytes: one line each, nothing half-written, never a hang or a traceback."""
    from PIL import Image

    src = parse(real_files["v2"][0])
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "good.lic").write_bytes(real_files["v2"][0])
    os.mkfifo(folder / "fifo.lic")
    (folder / "dir.lic").mkdir()
    os.symlink("/dev/zero", folder / "zero.lic")
    with open(folder / "huge.lic", "wb") as f:  # sparse: 5 GB on disk in name only
        f.write(real_files["v2"][0][:40])
        f.truncate(5 << 30)
    (folder / "claim.lic").write_bytes(build(src, 65535, 65535))
    proc = _lic_capped("decode", folder, "-o", out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert all(line.startswith("lic: error: ") for line in lines), proc.stderr
    assert lines[-1].startswith("lic: error: 5 of 6 files failed")
    assert [p.name for p in out.iterdir()] == ["good.png"]

    teacher = tmp_path / "big.lic"
    teacher.write_bytes(build(src, 4096, 4096))
    _one_line(_lic_capped("decode", teacher, "-o", tmp_path / "t.png", "--decoder", "teacher"),
              "needs about", "too short")
    _one_line(_lic_capped("decode", folder / "good.lic", "-o", tmp_path / "tile.png", "--tile", "20000"), "--tile")
    for h, w in [(1, 16_777_216), (1, 70_000), (4000, 4000)]:
        png = tmp_path / f"{h}x{w}.png"
        Image.new("RGB", (w, h), (90, 120, 200)).save(png)
        _one_line(_lic_capped("encode", png, "-o", tmp_path / f"{h}x{w}.lic", "--integer-hs"),
                  "needs about", "pixels", "65535", "--max-memory")
        assert not (tmp_path / f"{h}x{w}.lic").exists()
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "tile.png").exists()
