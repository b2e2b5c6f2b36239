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

from host import memory
from host.backends import BACKENDS
from host.decoder_package import DEFAULT_QUALITY
from host.geometry import DEFAULT_MAX_PIXELS
from lic.errors import LicError

MAX_TILE = 1024  # the largest tile a package may declare (host/decoder_package.py)

SHIPPED_PACKAGES = Path(__file__).resolve().parent / "decoders"
# Packages of the other rate points, made by `make packages` (not committed: they would double the
# repository's size for students that are derived files).
BUILT_PACKAGES = Path(__file__).resolve().parents[1] / "build" / "decoders"


def default_package() -> Path:
    """The shipped package of the default rate point (DEFAULT_QUALITY)."""
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
                   help="the PNG to write for one input file; otherwise a folder that gets NAME.png per input, "
                        "in the sub-folders the inputs had under the folder given")
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
                   help=f"decode in square latent tiles of this size with halo, at most {MAX_TILE} (fixed-shape "
                        f"backends use their own); default whole frame, or the package's tile when a whole frame "
                        f"would not fit --max-memory")
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
    p.add_argument("--trusted-key", type=Path, action="append", default=None, metavar="PUB.pem",
                   help="decode only with packages signed by this Ed25519 public key (`lic export --sign-key`); "
                        "repeat for several; LIC_TRUSTED_KEYS (':'-separated) adds more. Default: none, "
                        "packages are checked against their manifest's checksums only")
    p.add_argument("--times", action="store_true", help="print the time spent in each decoding stage")
    memory.add_argument(p)


def _jobs(inputs: list[Path], output: Path) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs, and whether it is one file to one PNG. A folder's files keep their
    sub-folders under -o; two inputs that would write one output are refused before anything is
    written, and so is an output that is its input."""
    from host.image_io import refuse_same_file

    found: list[tuple[Path, Path]] = []
    for p in inputs:
        if p.is_dir():
            files = sorted(p.rglob("*.lic"))
            if not files:
                raise LicError(f"no .lic files in {p}")
            found += [(f, f.relative_to(p).with_suffix(".png")) for f in files]
        elif p.exists():
            found.append((p, Path(p.stem + ".png")))  # read_lic refuses what is not a regular file
        else:
            raise LicError(f"file not found: {p}")
    single = len(found) == 1 and not inputs[0].is_dir()
    if single:
        jobs = [(found[0][0], output)]
    else:
        if output.suffix.lower() == ".png":
            raise LicError(f"{len(found)} inputs: -o must be a folder, not {output}")
        jobs, seen = [], {}
        for src, rel in found:
            dst = output / rel
            if dst in seen:
                raise LicError(f"{seen[dst]} and {src} would both be written to {dst}: decode them into separate "
                               f"folders (nothing was written)")
            seen[dst] = src
            jobs.append((src, dst))
    for src, dst in jobs:
        refuse_same_file(src, dst, "input")
    return jobs, single


def _header(path: Path, max_pixels: int):
    """What picks a file's decoder and sizes its memory: the checked container without its streams
    (a folder of many files is not held in memory while its decoders are chosen)."""
    from dataclasses import replace

    from host.container import parse, read_lic

    return replace(parse(read_lic(path, max_pixels), str(path)), streams=[])


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


def _teacher_decoder(args):
    """The teacher's float decoder (torch), from training/ (lic/plugins.py)."""
    from lic import plugins

    return plugins.load(plugins.TEACHER_DECODER)(args)


class _StudentDecoder:
    def __init__(self, args, package_dir: Path):
        from host.backends import default_backend, make_backend
        from host.decoder_package import DecoderPackage
        from host.runtime import HostDecoder

        package = DecoderPackage.load(package_dir, keys=args.trusted_key or ())
        backend = make_backend(args.backend or default_backend(), package, hw_dir=args.hw_dir)
        self.decoder = HostDecoder(package, backend, args.tile, max_pixels=args.max_pixels)
        self.tiled = HostDecoder(package, backend, backend.tile or package.tile, max_pixels=args.max_pixels)
        self.name = f"student {package.name} on {backend.name}"

    def label(self, host) -> str:
        return self.name + (f", {host.tile}x{host.tile} tiles" if host.tile else "")

    def for_sizes(self, sizes: list[tuple[int, int]], limit: memory.MemoryLimit):
        """The HostDecoder for files of these sizes: the one asked for, or in the package's tiles when
        a whole frame would not fit the memory limit (tiled and whole-frame pixels are equal)."""
        kind = "student-tiled" if self.decoder.tile is not None else "student-whole"
        if all(memory.fits(kind, h, w, limit) for h, w in sizes):
            return self.decoder
        return self.tiled


def _make_decoder(args, lic, name: str):
    if args.teacher or args.integer_hs:
        if args.decoder == "student":
            raise LicError("--teacher and --integer-hs choose the teacher decoder's models; the student's come "
                           "from --package")
        return _teacher_decoder(args)
    if args.decoder == "teacher":
        return _teacher_decoder(args)
    package = args.package or shipped_package_for(lic.fingerprint)
    if package is None:
        if args.decoder == "student" or args.backend not in (None, "torch"):
            raise LicError(f"{name}: no decoder package for its decoding contract {lic.fingerprint.hex()}"
                           + (" (a version-1 file: encode with --integer-hs for the student)" if lic.version == 1 else "")
                           + "; pass --package DIR from `lic export`, or use --decoder teacher")
        return _teacher_decoder(args)
    return _StudentDecoder(args, package)


def run(args) -> int:
    from tqdm import tqdm

    from host.container import read_lic
    from host.image_io import save_png
    from host.runtime import StageTimes

    if args.max_pixels < 1:
        raise LicError(f"--max-pixels must be positive, not {args.max_pixels}")
    if args.tile is not None and not 1 <= args.tile <= MAX_TILE:
        raise LicError(f"--tile must be in 1..{MAX_TILE} latents, not {args.tile}")
    limit = memory.MemoryLimit(args.max_memory)
    jobs, single = _jobs(args.inputs, args.output)
    failed: list[Path] = []

    def fail(path: Path, error: LicError) -> None:  # one bad file in a folder does not stop the others
        if single:
            raise error
        failed.append(path)
        print(f"lic: error: {error}", file=sys.stderr)

    # Each file gets the decoder its header names (a folder may mix rate points, teacher files and
    # the board's); files that share a decoder are decoded together, as a pipeline for the student.
    groups: dict[tuple, list] = {}
    decoders: dict[tuple, object] = {}
    for src, dst in jobs:
        try:
            lic = _header(src, args.max_pixels)
            key = (lic.fingerprint, lic.version)
            if key not in decoders:
                decoders[key] = _make_decoder(args, lic, str(src))
        except LicError as e:
            fail(src, e)
            continue
        groups.setdefault(key, []).append((src, dst, lic))
    if not single:
        args.output.mkdir(parents=True, exist_ok=True)
    total, names, done = StageTimes(), set(), 0
    for key, items in groups.items():
        decoder = decoders[key]
        todo = []
        for src, dst, lic in items:
            kind = "student-tiled" if isinstance(decoder, _StudentDecoder) else "teacher-decode"
            h, w = lic.height, lic.width
            if args.tile is not None and kind == "student-tiled":
                # a frame smaller than the tile is zero-extended to it (host/tiling.py)
                h, w = max(h, 16 * args.tile), max(w, 16 * args.tile)
            try:  # a student decodes within the limit in tiles when a whole frame does not fit
                memory.check(kind, h, w, limit, str(src))
            except LicError as e:
                fail(src, e)
                continue
            todo.append((src, dst, lic))
        if not todo:
            continue
        label = decoder.name
        if isinstance(decoder, _StudentDecoder):
            host = decoder.for_sizes([(lic.height, lic.width) for *_, lic in todo], limit)
            label = decoder.label(host)
            decoded = host.decode_stream((str(src), src) for src, *_ in todo)
        else:
            def teacher_decode(src: Path):
                try:
                    return (str(src), *decoder.decode(read_lic(src), str(src)))
                except LicError as e:
                    return str(src), e, None
            decoded = map(teacher_decode, [src for src, *_ in todo])
        for (src, dst, _), (name, rgb, times) in tqdm(zip(todo, decoded), total=len(todo), desc="decode", unit="file",
                                                      disable=single or not sys.stderr.isatty()):
            if isinstance(rgb, LicError):
                fail(src, rgb)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            save_png(dst, rgb)
            done += 1
            names.add(label)
            if times is not None:
                total += times
            if single:
                print(f"{dst}: {rgb.shape[1]}x{rgb.shape[0]} ({label})")
    if not single and done:
        print(f"{args.output}: {done} images ({'; '.join(sorted(names))})")
    if args.times and total.seconds and done:
        print("stage times (mean per image): " + ", ".join(f"{k} {v / done * 1000:.1f} ms"
                                                           for k, v in total.seconds.items()))
    if failed:
        raise LicError(f"{len(failed)} of {len(jobs)} files failed: {', '.join(map(str, failed))}")
    return 0
