"""`lic decode`: .lic files -> PNG, with either decoder on any backend.

  --decoder teacher   the teacher's float g_s in torch: the reference (any .lic version)
  --decoder student   the quantised student from a decoder package, through the torch-free host
                      runtime (host/runtime.py) on --backend onnx|torch|finn-sim|pynq
  (default)           student when a decoder package for the file's encoder exists, else teacher

The same version-2 file decodes with either, so the two decoders can be compared pixel for pixel.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from host.backends import BACKENDS
from host.geometry import DEFAULT_MAX_PIXELS
from lic.errors import LicError

SHIPPED_PACKAGES = Path(__file__).resolve().parent / "decoders"
# Packages of the other rate points, made by `make packages` (not committed: they would double the
# repository's size for students that are derived files).
BUILT_PACKAGES = Path(__file__).resolve().parents[1] / "build" / "decoders"


def default_package() -> Path:
    """The shipped package of the default rate point (training.teacher.DEFAULT_QUALITY)."""
    from training.teacher import DEFAULT_QUALITY

    found = {}
    for manifest in sorted(SHIPPED_PACKAGES.glob("*/manifest.json")):
        found[json.loads(manifest.read_text()).get("quality")] = manifest.parent
    if not found:
        raise LicError(f"no shipped decoder package in {SHIPPED_PACKAGES}; pass --package DIR from `lic export`")
    return found.get(DEFAULT_QUALITY) or next(iter(found.values()))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help=".lic files, or folders searched recursively for *.lic")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="the PNG to write for one input file; otherwise a folder that gets NAME.png per input")
    p.add_argument("--decoder", choices=("teacher", "student"), default=None,
                   help="teacher (float g_s, torch) or student (quantised, host runtime); default: student when a "
                        "decoder package matches the file, else teacher")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="where the student runs: onnx (onnxruntime; the default off a board), torch (Brevitas), "
                        "finn-sim (FINN HW-layer graph from `make hw`), pynq (the fabric; the default on a PYNQ "
                        "board). The teacher runs on torch")
    p.add_argument("--package", type=Path, default=None,
                   help=f"student decoder package from `lic export` (default: the shipped one in "
                        f"{SHIPPED_PACKAGES.relative_to(SHIPPED_PACKAGES.parents[1])}/ that matches the file)")
    p.add_argument("--tile", type=int, default=None,
                   help="decode in square latent tiles of this size with halo (fixed-shape backends use their "
                        "own); default whole frame")
    p.add_argument("--hw-dir", type=Path, default=None,
                   help="for finn-sim/pynq: the board build folder from `make hw`/`make bitstream` "
                        "(default fpga_projects/pynq-z2/build)")
    p.add_argument("--teacher", default=None,
                   help="implies --decoder teacher: the model that encoded the file, if it is not a shipped teacher")
    p.add_argument("--integer-hs", default=None, metavar="PATH",
                   help="with --teacher, for a version-2 file made with a non-shipped integer h_s: that file")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse files whose header claims more than N pixels, before allocating anything "
                        f"(default {DEFAULT_MAX_PIXELS:,} = 4096x4096; decoding memory grows with it)")
    p.add_argument("--times", action="store_true", help="print the time spent in each decoding stage")


def _lic_files(inputs: list[Path]) -> list[Path]:
    files = []
    for p in inputs:
        if p.is_dir():
            found = sorted(p.rglob("*.lic"))
            if not found:
                raise LicError(f"no .lic files in {p}")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise LicError(f"file not found: {p}")
    return files


def shipped_package_for(fingerprint: bytes) -> Path | None:
    """The shipped package decoding files of this .lic fingerprint (manifests only are read; the
    package is verified when it is loaded)."""
    for manifest in [*sorted(SHIPPED_PACKAGES.glob("*/manifest.json")), *sorted(BUILT_PACKAGES.glob("*/manifest.json"))]:
        try:
            m = json.loads(manifest.read_text())
        except (ValueError, UnicodeDecodeError, RecursionError, OSError):
            continue
        if isinstance(m, dict) and fingerprint.hex() in (m.get("file_fingerprint"),
                                                         *(m.get("legacy_file_fingerprints") or ())):
            return manifest.parent
    return None


class _TeacherDecoder:
    def __init__(self, args):
        if args.backend not in (None, "torch"):
            raise LicError(f"the teacher decoder runs on --backend torch only (got {args.backend}); "
                           f"--decoder student runs on {args.backend}")
        self.args, self.models = args, {}
        self.name = "teacher"

    def decode(self, data: bytes, name: str):
        from host.container import parse
        from host.integer_hyper import IntegerHyperSynthesis
        from training.teacher import load_teacher
        from training.teacher_codec import EntropyModels, decode, find_shipped

        lic = parse(data, name)
        em = self.models.get(lic.fingerprint)
        if em is None:
            if self.args.teacher is not None:
                integer_hs = IntegerHyperSynthesis.load(self.args.integer_hs) if self.args.integer_hs else None
                em = EntropyModels(load_teacher(self.args.teacher), integer_hs)
            else:
                em = find_shipped(lic.fingerprint)
                if em is None:
                    raise LicError(f"{name} needs decoder {lic.fingerprint.hex()}, which is not a shipped "
                                   f"teacher; pass --teacher (and --integer-hs for format v2) with what encoded it")
            self.models[lic.fingerprint] = em
            self.name = f"teacher {em.name}"
        return decode(em, data, name, max_pixels=self.args.max_pixels), None


class _StudentDecoder:
    def __init__(self, args, package_dir: Path):
        from host.backends import default_backend, make_backend
        from host.decoder_package import DecoderPackage
        from host.runtime import HostDecoder

        package = DecoderPackage.load(package_dir)
        backend = make_backend(args.backend or default_backend(), package, hw_dir=args.hw_dir)
        self.decoder = HostDecoder(package, backend, args.tile, max_pixels=args.max_pixels)
        self.name = f"student {package.name} on {backend.name}" + (f", {self.decoder.tile}x{self.decoder.tile} tiles"
                                                                    if self.decoder.tile else "")


def _make_decoder(args, lic, name: str):
    if args.teacher or args.integer_hs:
        if args.decoder == "student":
            raise LicError("--teacher and --integer-hs choose the teacher decoder's models; the student's come "
                           "from --package")
        return _TeacherDecoder(args)
    if args.decoder == "teacher":
        return _TeacherDecoder(args)
    package = args.package or shipped_package_for(lic.fingerprint)
    if package is None:
        if args.decoder == "student" or args.backend not in (None, "torch"):
            raise LicError(f"{name}: no decoder package for its decoding contract {lic.fingerprint.hex()}"
                           + (" (a version-1 file: encode with --integer-hs for the student)" if lic.version == 1 else "")
                           + "; pass --package DIR from `lic export`, or use --decoder teacher")
        return _TeacherDecoder(args)
    return _StudentDecoder(args, package)


def _first_parsable(files: list[Path], single: bool, fail) -> tuple[int, object]:
    """Index and header of the first file that parses (it picks the decoder); earlier ones fail."""
    from host.container import parse, read_lic

    for i, p in enumerate(files):
        try:
            return i, parse(read_lic(p), str(p))
        except LicError as e:
            if single:
                raise
            fail(p, e)
    return len(files), None


def run(args) -> int:
    from tqdm import tqdm

    from host.container import read_lic
    from host.image_io import save_png
    from host.runtime import StageTimes

    if args.max_pixels < 1:
        raise LicError(f"--max-pixels must be positive, not {args.max_pixels}")
    files = _lic_files(args.inputs)
    single = len(files) == 1 and args.inputs[0].is_file()
    if not single and args.output.suffix.lower() == ".png":
        raise LicError(f"{len(files)} inputs: -o must be a folder, not {args.output}")
    if not single:
        args.output.mkdir(parents=True, exist_ok=True)
    failed: list[Path] = []

    def fail(path: Path, error: LicError) -> None:  # one bad file in a folder does not stop the others
        failed.append(path)
        print(f"lic: error: {error}", file=sys.stderr)

    start, lic = _first_parsable(files, single, fail)
    if lic is not None:
        todo = files[start:]
        decoder = _make_decoder(args, lic, str(todo[0]))  # a bad file fails before any model loads
        total = StageTimes()
        if isinstance(decoder, _StudentDecoder):
            decoded = decoder.decoder.decode_stream((str(p), p) for p in todo)
        else:
            def teacher_decode(p: Path):
                try:
                    return (str(p), *decoder.decode(read_lic(p), str(p)))
                except LicError as e:
                    return str(p), e, None
            decoded = map(teacher_decode, todo)
        for path, (name, rgb, times) in tqdm(zip(todo, decoded), total=len(todo), desc="decode", unit="file",
                                             disable=single or not sys.stderr.isatty()):
            if isinstance(rgb, LicError):
                if single:
                    raise rgb
                fail(path, rgb)
                continue
            out = args.output if single else args.output / (path.stem + ".png")
            save_png(out, rgb)
            if times is not None:
                total += times
            if single:
                print(f"{out}: {rgb.shape[1]}x{rgb.shape[0]} ({decoder.name})")
        done = len(files) - len(failed)
        if not single:
            print(f"{args.output}: {done} images ({decoder.name})")
        if args.times and total.seconds and done:
            print("stage times (mean per image): " + ", ".join(f"{k} {v / done * 1000:.1f} ms"
                                                               for k, v in total.seconds.items()))
    if failed:
        raise LicError(f"{len(failed)} of {len(files)} files failed: {', '.join(map(str, failed))}")
    return 0
