"""`lic encode`: one image to one .lic file with the teacher (decoding: host/decode_cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host import memory
from host.decode_cli import SHIPPED_PACKAGES
from host.decoder_package import DecoderPackage
from host.geometry import DEFAULT_MAX_PIXELS
from host.image_io import load_rgb, refuse_same_file, write_atomic
from host.integer_hyper import IntegerHyperSynthesis
from lic.errors import LicError
from quantize.latent_refinement import refinement_for
from training.teacher import DEFAULT_QUALITY, load_teacher
from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

MAX_SIDE = 0xFFFF  # the header's u16 height and width


def _warn(msg: str) -> None:
    print(f"lic: warning: {msg}", file=sys.stderr)


def add_encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path, help="input image (any size; greyscale/RGBA/16-bit are converted)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .lic file to write")
    p.add_argument("--quality", type=int, default=None,
                   help="rate point of the shipped teachers, 1 (smallest files) .. 4; default 3")
    p.add_argument("--teacher", default=None,
                   help="instead of a shipped teacher: qN-tuned (the shipped teacher N with the encoder tuned for "
                        "its quantised student: smaller files for the board's decoder; needs --integer-hs), "
                        "zoo:bmshj2018-hyperprior:Q, a CompressAI checkpoint path or a `lic tune-encoder` export")
    p.add_argument("--integer-hs", nargs="?", const="shipped", default=None, metavar="PATH",
                   help="write format version 2: scale indexes from an integer hyper-decoder, bit-exact on any "
                        "platform. Alone: the shipped one for --quality; or a file from `lic distill-hyper`")
    p.add_argument("--tiles", nargs="?", const="shipped", default=None, metavar="TILE,HALO",
                   help="write format version 3 (needs --integer-hs): y as one independent substream per latent "
                        "tile, so a board decodes tiles on both cores and overlaps them with synthesis. Alone: the "
                        "tile and halo of the shipped decoder package for --quality; or TILE,HALO in latents")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="optimise this image's latents for the decoder of its file (the shipped quantised student "
                        "for qN-tuned, else the teacher's g_s) by STEPS Adam steps on the rate-distortion loss; the "
                        "file stays an ordinary .lic of the same models. About 0.25 s per step for a Kodak image "
                        "on one x86 core; 100 steps is what the README measures (default 0: off)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images over N pixels, read from the file's header before decompressing it "
                        f"(a decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,} = 4096x4096, the "
                        f"default `lic decode` limit too)")
    memory.add_argument(p)


def tile_geometry(text: str | None, quality: int) -> tuple[int, int] | None:
    if text is None:
        return None
    if text == "shipped":
        if not (SHIPPED_PACKAGES / f"q{quality}").is_dir():
            raise LicError(f"no shipped decoder package for quality {quality}: give --tiles TILE,HALO")
        package = DecoderPackage.load(SHIPPED_PACKAGES / f"q{quality}", verify=False)
        return package.tile, package.halo
    try:
        tile, halo = (int(v) for v in text.split(","))
    except ValueError:
        raise LicError(f"--tiles takes TILE,HALO in latents (e.g. 32,2), not {text!r}") from None
    if not (0 <= halo and 1 <= tile - 2 * halo and tile <= 0xFFFF):
        raise LicError(f"--tiles {text}: a tile of {tile} latents leaves no core inside a halo of {halo}")
    return tile, halo


def run_encode(args) -> int:
    if args.quality is not None and args.teacher is not None:
        raise LicError("give --quality or --teacher, not both")
    if args.max_pixels < 1:
        raise LicError(f"--max-pixels must be positive, not {args.max_pixels}")
    limit = memory.MemoryLimit(args.max_memory)

    def check_size(h: int, w: int) -> None:  # from the image's header, before its pixels are read
        if max(h, w) > MAX_SIDE:
            raise LicError(f"{args.image}: {w}x{h}: a .lic file holds images of at most {MAX_SIDE} pixels a side")
        memory.check("encode", h, w, limit, str(args.image))

    refuse_same_file(args.image, args.output, "input image")
    rgb, warnings = load_rgb(args.image, max_pixels=args.max_pixels, check_size=check_size)
    for w in warnings:
        _warn(f"{args.image}: {w}")
    teacher = load_teacher(args.teacher, quality=args.quality)
    quality = args.quality or teacher.quality or DEFAULT_QUALITY
    if args.integer_hs == "shipped":
        if args.teacher is not None and teacher.base_fingerprint is None:
            raise LicError("--integer-hs without a path means the shipped one; with --teacher, give its path")
        integer_hs = shipped_integer_hs(quality)
    else:
        integer_hs = IntegerHyperSynthesis.load(args.integer_hs) if args.integer_hs else None
    if teacher.base_fingerprint is not None and integer_hs is None:
        raise LicError(f"{teacher.name} is an encoder tuned for a quantised student, whose decoder reads format "
                       f"version 2 or 3: add --integer-hs")
    em = EntropyModels(teacher, integer_hs, tile_geometry(args.tiles, quality))
    data = encode(em, rgb, refinement_for(em, args.refine, progress=True))
    write_atomic(args.output, data)
    h, w = rgb.shape[:2]
    print(f"{args.output}: {len(data)} bytes, {len(data) * 8 / (h * w):.4f} bpp ({w}x{h}, {em.name}, format v{em.version})")
    return 0
