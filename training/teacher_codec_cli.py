"""`lic encode` and `lic decode`: one image to one .lic file and back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lic.errors import LicError


def _warn(msg: str) -> None:
    print(f"lic: warning: {msg}", file=sys.stderr)


def add_encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="input image (any size; greyscale/RGBA/16-bit are converted)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .lic file to write")
    p.add_argument("--quality", type=int, default=None,
                   help="rate point of the shipped teachers, 1 (smallest files) .. 4; default 3")
    p.add_argument("--teacher", default=None,
                   help="instead of a shipped teacher: zoo:bmshj2018-hyperprior:Q or a CompressAI checkpoint path")
    p.add_argument("--integer-hs", nargs="?", const="shipped", default=None, metavar="PATH",
                   help="write format version 2: scale indexes from an integer hyper-decoder, bit-exact on any "
                        "platform. Alone: the shipped one for --quality; or a file from `lic distill-hyper`")


def add_decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="the .lic file")
    p.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    p.add_argument("--teacher", default=None,
                   help="the model that encoded the file, if it is not a shipped teacher (found automatically "
                        "by its fingerprint otherwise)")
    p.add_argument("--integer-hs", default=None, metavar="PATH",
                   help="for a version-2 file made with a non-shipped integer h_s: that h_s file")


def run_encode(args) -> int:
    from host.image_io import load_rgb, write_atomic
    from host.integer_hyper import IntegerHyperSynthesis
    from training.teacher import DEFAULT_QUALITY, load_teacher
    from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

    if args.quality is not None and args.teacher is not None:
        raise LicError("give --quality or --teacher, not both")
    rgb, warnings = load_rgb(args.image)
    for w in warnings:
        _warn(f"{args.image}: {w}")
    teacher = load_teacher(args.teacher, quality=args.quality)
    if args.integer_hs == "shipped":
        if args.teacher is not None:
            raise LicError("--integer-hs without a path means the shipped one; with --teacher, give its path")
        integer_hs = shipped_integer_hs(args.quality or DEFAULT_QUALITY)
    else:
        integer_hs = IntegerHyperSynthesis.load(args.integer_hs) if args.integer_hs else None
    em = EntropyModels(teacher, integer_hs)
    data = encode(em, rgb)
    write_atomic(args.output, data)
    h, w = rgb.shape[:2]
    print(f"{args.output}: {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp ({w}x{h}, {em.name}, format v{em.version})")
    return 0


def read_file(path: Path) -> bytes:
    if not path.is_file():
        raise LicError(f"file not found: {path}")
    return path.read_bytes()


def run_decode(args) -> int:
    from host.container import parse
    from host.image_io import save_png
    from host.integer_hyper import IntegerHyperSynthesis
    from training.teacher import load_teacher
    from training.teacher_codec import EntropyModels, decode, find_shipped

    data = read_file(args.input)
    lic = parse(data, str(args.input))  # fail on a bad file before loading any model
    if args.teacher is not None:
        integer_hs = IntegerHyperSynthesis.load(args.integer_hs) if args.integer_hs else None
        em = EntropyModels(load_teacher(args.teacher), integer_hs)
    else:
        em = find_shipped(lic.fingerprint)
        if em is None:
            raise LicError(f"{args.input} was encoded by model {lic.fingerprint.hex()}, which is not a shipped "
                           f"teacher; pass --teacher (and --integer-hs for format v2) with what encoded it")
    rgb = decode(em, data, str(args.input))
    save_png(args.output, rgb)
    print(f"{args.output}: {lic.width}x{lic.height} ({em.name})")
    return 0
