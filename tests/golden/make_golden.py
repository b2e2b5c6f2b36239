"""The golden corpus: small .lic files of every format version and every shipped encoder, which every
later checkout must keep decoding to the same latents (tests/test_golden.py).

  python tests/golden/make_golden.py write   add the files CORPUS lists and the folder lacks (never
                                             rewrites one: a file, once shipped, is a user's file)
  python tests/golden/make_golden.py pin     pin what a new file decodes to, and the shipped packages'
                                             pixels: run it whenever a decoder package ships

pins.json holds, per file, what does not depend on any student, pinned for good: the file's SHA-256,
its z symbols, scale indexes and y symbols (SHA-256 of their int32 bytes), which decoders claim it
(a set that may grow and never shrink),
and the teacher's PSNR on it; and, per decoder package (keyed by the SHA-256 of its manifest, which
lists every file's hash), the SHA-256 of the pixels the package decodes each file it claims to.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOURCE = HERE / "source.png"
PINS = HERE / "pins.json"
KODAK = REPO.parent / "shared" / "data" / "kodak" / "kodim23.png"
TILES = "4,1"  # several tiles on a 128x128 image's 8x8 latents (the board's 32,4 would be one)

# name -> `lic encode` arguments. Format 1 is the float h_s; 2 the integer h_s; 3 tile substreams.
CORPUS = {
    **{f"q{q}_teacher_v1": ["--quality", str(q)] for q in (1, 2, 3, 4)},
    **{f"q{q}_teacher_v2": ["--quality", str(q), "--integer-hs"] for q in (1, 2, 3, 4)},
    **{f"q{q}_tuned_v2": ["--teacher", f"q{q}-tuned", "--integer-hs"] for q in (1, 2, 3, 4)},
    **{f"q{q}_tuned_v3": ["--teacher", f"q{q}-tuned", "--integer-hs", "--tiles", TILES]
       for q in (1, 2, 3, 4)},
    "q3_teacher_v3": ["--quality", "3", "--integer-hs", "--tiles", TILES],
    "q3_tuned_v2_refined": ["--teacher", "q3-tuned", "--integer-hs", "--refine", "20"],
}


def sha(a) -> str:
    return hashlib.sha256(a if isinstance(a, bytes) else np.ascontiguousarray(a, dtype=np.int32).tobytes()).hexdigest()


def package_digest(package: Path) -> str:
    return hashlib.sha256((package / "manifest.json").read_bytes()).hexdigest()


def shipped_packages() -> list[Path]:
    return sorted(m.parent for m in (REPO / "host" / "decoders").glob("*/manifest.json"))


def write() -> list[str]:
    from host.image_io import load_rgb, save_png
    from lic.cli import main

    if not SOURCE.is_file():
        save_png(SOURCE, load_rgb(KODAK)[0][200:328, 300:428])
    made = []
    for name, args in CORPUS.items():
        out = HERE / f"{name}.lic"
        if not out.exists():
            if main(["encode", str(SOURCE), "-o", str(out), *args]) != 0:
                raise SystemExit(f"make_golden: encoding {name} failed")
            made.append(name)
    return made


def claims(path: Path) -> list[str]:
    """Which decoders `lic decode` would pick for this file without being told: the teacher always
    can; a package when its manifest claims the file."""
    from host.container import parse
    from host.decode_cli import shipped_package_for

    package = shipped_package_for(parse(path.read_bytes(), path.name).fingerprint)
    return ["teacher"] + ([package.name] if package is not None else [])


def latent_pins(path: Path) -> dict:
    from host.container import parse
    from host.image_io import load_rgb
    from training.teacher_codec import decode, decode_latent_parts, find_shipped

    lic = parse(path.read_bytes(), path.name)
    models = find_shipped(lic.fingerprint)
    if models is None:
        raise SystemExit(f"make_golden: {path.name}: no shipped model has its fingerprint {lic.fingerprint.hex()}")
    z, indexes, y = decode_latent_parts(models, lic, path.name)
    x = decode(models, path.read_bytes(), path.name).astype(np.float64)
    mse = np.mean((x - load_rgb(SOURCE)[0].astype(np.float64)) ** 2)
    return {"sha256": sha(path.read_bytes()), "version": lic.version, "fingerprint": lic.fingerprint.hex(),
            "z": sha(z), "indexes": sha(indexes), "y": sha(y), "claimed_by": claims(path),
            "teacher_psnr": round(float(10 * np.log10(255 ** 2 / mse)), 3)}


def student_pixels(package: Path, path: Path) -> str:
    """The pixels the package decodes the file to, whole frame, on onnxruntime (equal to the torch
    and FINN backends and to tiled decoding: tests/test_host_runtime.py, tests/test_hw_build.py)."""
    from host.backends import make_backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder

    pkg = DecoderPackage.load(package)
    rgb, _ = HostDecoder(pkg, make_backend("onnx", pkg), threads=1).decode(path.read_bytes(), path.name)
    return sha(rgb.tobytes())


def pin() -> dict:
    pins = json.loads(PINS.read_text()) if PINS.is_file() else {"files": {}, "packages": {}}
    for name in CORPUS:
        if name not in pins["files"]:
            pins["files"][name] = latent_pins(HERE / f"{name}.lic")
        else:  # a file's claims may grow (a new decoder reads it), never shrink
            f = pins["files"][name]
            f["claimed_by"] = sorted(set(f["claimed_by"]) | set(claims(HERE / f"{name}.lic")))
    pins["packages"] = {}
    for package in shipped_packages():
        pins["packages"][package_digest(package)] = {
            "package": package.name,
            "pixels": {n: student_pixels(package, HERE / f"{n}.lic") for n, f in pins["files"].items()
                       if package.name in f["claimed_by"]}}
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    return pins


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    what = sys.argv[1] if len(sys.argv) == 2 else None
    if what == "write":
        print("written:", ", ".join(write()) or "nothing (every file exists)")
    elif what == "pin":
        p = pin()
        print(f"pinned {len(p['files'])} files, {len(p['packages'])} package(s)")
    else:
        raise SystemExit(__doc__)
