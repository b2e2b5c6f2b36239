"""`lic hs-rate`: what the integer h_s costs in rate, measured on real files.

Every image is encoded twice by the same teacher: .lic v1 (its float h_s picks the scale indexes)
and .lic v2 (the integer h_s does). y_hat and so the pixels are identical; only the y stream's
length differs. Reported per set as total bytes, bpp and the relative overhead
(v2 / v1 - 1), on Kodak and on the held-out BSDS500 photos that no integer h_s trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from bench.evaluate import DEFAULT_DATA
from host.container import parse
from host.image_io import list_images, load_rgb
from host.integer_hyper import IntegerHyperSynthesis
from lic.errors import LicError
from training.data import held_out_images
from training.teacher import load_default, load_tuned_default
from training.teacher_codec import EntropyModels, encode, shipped_integer_hs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", default="all", help="shipped rate points: comma list such as 1,3, or 'all' (default)")
    p.add_argument("--integer-hs", type=Path, default=None,
                   help="an integer h_s .npz to measure instead of the shipped one (needs a single --quality)")
    p.add_argument("--tuned", action="store_true",
                   help="encode with the shipped encoders tuned for the quantised students (`lic tune-encoder`: "
                        "the files the board decodes) instead of the teachers")
    p.add_argument("--sets", default="kodak,held-out", help="kodak, held-out or both (default both)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    p.add_argument("-o", "--out", type=Path, default=None, help="write the results as JSON here")


def image_sets(names: list[str]) -> dict[str, list[Path]]:
    sets = {}
    for name in names:
        if name == "kodak":
            sets[name] = list_images(DEFAULT_DATA)
        elif name == "held-out":
            sets[name] = held_out_images()
            if not sets[name]:
                raise LicError("the held-out BSDS500 photos are not beside the repository (../shared/data)")
        else:
            raise LicError(f"unknown set {name!r}: use kodak and/or held-out")
    return sets


def measure(teacher, integer_hs, images: list[Path], desc: str) -> dict:
    v1_bytes = v2_bytes = pixels = 0
    y1 = y2 = 0
    for path in tqdm(images, desc=desc, unit="img", file=sys.stderr):
        rgb = load_rgb(path)[0]
        a = encode(EntropyModels(teacher), rgb)
        b = encode(EntropyModels(teacher, integer_hs), rgb)
        v1_bytes, v2_bytes = v1_bytes + len(a), v2_bytes + len(b)
        y1 += len(parse(a).streams[1])
        y2 += len(parse(b).streams[1])
        pixels += rgb.shape[0] * rgb.shape[1]
    return {"images": len(images), "bpp_float_hs": 8 * v1_bytes / pixels, "bpp_integer_hs": 8 * v2_bytes / pixels,
            "overhead": v2_bytes / v1_bytes - 1, "y_stream_overhead": y2 / y1 - 1}


def run(args) -> int:
    qualities = [1, 2, 3, 4] if args.quality == "all" else [int(q) for q in args.quality.split(",")]
    if args.integer_hs is not None and len(qualities) != 1:
        raise LicError("--integer-hs measures one h_s: give one --quality")
    sets = image_sets(args.sets.split(","))
    results = []
    for q in qualities:
        teacher = load_tuned_default(q) if args.tuned else load_default(q)
        hs = IntegerHyperSynthesis.load(args.integer_hs) if args.integer_hs else shipped_integer_hs(q)
        if hs.meta.get("teacher_fingerprint", teacher.decoder_fingerprint.hex()) != teacher.decoder_fingerprint.hex():
            raise LicError(f"{args.integer_hs} was trained for another teacher than q{q}")
        for name, images in sets.items():
            images = images[:args.limit] if args.limit else images
            r = {"quality": q, "set": name, "encoder": teacher.name, **measure(teacher, hs, images, f"q{q} {name}")}
            results.append(r)
            print(f"q{q} {name:8s} {r['images']:3d} images: bpp {r['bpp_float_hs']:.4f} (float h_s) -> "
                  f"{r['bpp_integer_hs']:.4f} (integer h_s), {100 * r['overhead']:+.2f}%")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results}, indent=1) + "\n")
    return 0
