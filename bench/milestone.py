"""Does a trained candidate beat the shipped student? The long run's gate and verdict.

    python -m bench.milestone --quality 3 --float F.pt --quant Q.pt [--encoder E.pt --refine 100] -o OUT.json

The candidate and the shipped student of the rate point are measured on the same images, Kodak and the
50 held-out BSDS500 photos, by `lic eval-students`'s own measurement (bench/students.py): the float and
the quantised student on the teacher's files and, with `--encoder` (the candidate's own tuned encoder),
the deployable codec, each with its own encoder's files, refined with `--refine STEPS` as the board's files
are. A milestone ships only when it beats the shipped files on both sets for every decoder measured
(issue 45): higher PSNR; for the deployable codec, whose files sit at another rate than the shipped
one's, higher than the shipped codec's PSNR at the candidate's rate, read off the curve through the
shipped rate points either side (measured on the same images, linear in log-rate; outside them, no
more than 0.5% more bits).

OUT.json holds every mean, the per-check verdicts and `beats`; the exit status is 0 either way (a
milestone that does not beat the shipped one is a result, not an error).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from bench.evaluate import first_images, load_images
from bench.students import evaluate_point
from host.image_io import write_atomic
from lic.errors import LicError
from quantize.latent_refinement import refine_steps
from quantize.ship_students import STUDENTS_MANIFEST, read_students
from training.data import HELD_OUT_SPLIT, KODAK, held_out_images
from training.loop import hardware

BPP_SLACK = 1.005


def data_sets(limit: int | None) -> dict[str, list[Path]]:
    held_out = held_out_images()
    if not held_out:
        raise LicError(f"no held-out photos in {HELD_OUT_SPLIT} (BSDS500's test split, ../shared/data)")
    return {"kodak": first_images(KODAK, limit), "held_out": held_out[:limit] if limit else held_out}


def _mean(point: dict, decoder: str) -> dict | None:
    m = point["mean"].get(decoder)
    return {"bpp": round(m["bpp"], 4), "psnr": round(m["psnr"], 3)} if m else None


def equal_rate_psnr(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """The shipped codec's PSNR at `bpp`: linear in log-rate between the two of its measured (bpp, PSNR)
    points around it; None outside them (no extrapolation)."""
    points = sorted(curve)
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if b0 <= bpp <= b1 and b1 > b0:
            return p0 + (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0)) * (p1 - p0)
    return None


def compare(shipped: dict, candidate: dict, decoders: tuple[str, ...], neighbours: tuple[dict, ...] = ()) -> list[dict]:
    """One check per decoder: the candidate beats the shipped one when its PSNR is higher. Where the two
    decode files of their own (the deployable codec) and so sit at different rates, higher than the
    shipped codec's at the candidate's rate, read off the curve through the shipped point and its
    `neighbours` (the shipped rate points either side, measured on the same images); outside that
    curve, at no more than 0.5% more bits. A decoder either side lacks is an error, never a check
    passed by default."""
    checks = []
    for decoder in decoders:
        s, c = _mean(shipped, decoder), _mean(candidate, decoder)
        if s is None or c is None:
            raise LicError(f"{decoder} was not measured for the {'shipped student' if s is None else 'candidate'} "
                           f"(no integer h_s or tuned encoder for its rate point?), so no verdict")
        check = {"decoder": decoder, "shipped": s, "candidate": c, "psnr_gain_db": round(c["psnr"] - s["psnr"], 3)}
        if decoder.endswith("deployable"):
            curve = [(m["bpp"], m["psnr"]) for m in [s] + [_mean(n, decoder) for n in neighbours] if m]
            at_rate = equal_rate_psnr(curve, c["bpp"])
            if at_rate is not None:
                check["shipped_psnr_at_equal_rate"] = round(at_rate, 3)
                # what decides; psnr_gain_db compares two different rates
                check["psnr_gain_at_equal_rate_db"] = round(c["psnr"] - at_rate, 3)
                check["beats"] = c["psnr"] > at_rate
            else:
                check["beats"] = c["psnr"] > s["psnr"] and c["bpp"] <= s["bpp"] * BPP_SLACK
        else:
            check["beats"] = c["psnr"] > s["psnr"]
        checks.append(check)
    return checks


def milestone(quality: int, float_student: Path, quant_student: Path, encoder: Path | None = None,
              refine: int = 0, limit: int | None = None) -> dict:
    """The candidate (`float_student`, `quant_student`, its own tuned `encoder`) against the shipped
    student of `quality`, on Kodak and the held-out photos (the first `limit` of each)."""
    refine = refine_steps(refine)
    if refine and encoder is None:
        raise LicError("--refine measures the deployable codec, whose files the candidate's own --encoder writes")
    entries = read_students(STUDENTS_MANIFEST)
    shipped = next((e for e in entries if e["quality"] == quality), None)
    if shipped is None:
        raise LicError(f"no shipped student for quality {quality} to compare with")
    candidate = {**shipped, "float": float_student, "quant": quant_student}
    if encoder is not None:
        candidate["encoder"] = encoder
    decoders = ("float_student", "quant_student") + (
        (("refined_deployable",) if refine else ("tuned_deployable",)) if encoder is not None else ())
    # the deployable codecs sit at different rates: the shipped curve around the candidate's point
    neighbours = [e for e in entries if abs(e["quality"] - quality) == 1] if encoder else []
    sets = {}
    for name, files in data_sets(limit).items():
        images = load_images(files)
        points = {who: evaluate_point(entry, images, refine, decoders) for who, entry in
                  (("shipped", shipped), ("candidate", candidate))}
        # (neighbours only with --encoder, whose deployable codec is the last decoder: the one read off their curve)
        around = tuple(evaluate_point(e, images, refine, decoders[-1:]) for e in neighbours)
        sets[name] = {"images": len(images), "checks": compare(points["shipped"], points["candidate"], decoders, around),
                      "shipped_neighbours": [e["quality"] for e in neighbours]}
    return {"quality": quality, "float": str(float_student), "quant": str(quant_student),
            "encoder": str(encoder) if encoder else None, "refine": refine, "sets": sets,
            "beats": all(c["beats"] for s in sets.values() for c in s["checks"]) and any(s["checks"] for s in sets.values()),
            "measured": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "hardware": hardware(torch.device("cpu"))}}


def _gain(check: dict) -> str:
    at_rate = check.get("shipped_psnr_at_equal_rate")
    if at_rate is None:
        return f"{check['psnr_gain_db']:+.3f} dB"
    return f"{check['candidate']['psnr'] - at_rate:+.3f} dB at equal rate: shipped at the candidate's rate {at_rate:.3f}"


def summary(result: dict) -> str:
    lines = []
    for name, s in result["sets"].items():
        for c in s["checks"]:
            lines.append(f"{name} ({s['images']} images) {c['decoder']}: shipped {c['shipped']['bpp']:.4f} bpp / "
                         f"{c['shipped']['psnr']:.2f} dB, candidate {c['candidate']['bpp']:.4f} / "
                         f"{c['candidate']['psnr']:.2f} ({_gain(c)}) {'beats' if c['beats'] else 'does not beat'}")
    lines.append("milestone beats the shipped student" if result["beats"] else
                 "milestone does not beat the shipped student: not shipped")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.milestone", description=__doc__.split("\n\n")[0])
    p.add_argument("--quality", type=int, help="rate point of the shipped student compared with")
    p.add_argument("--float", dest="float_student", type=Path, help="candidate float student")
    p.add_argument("--quant", dest="quant_student", type=Path, help="candidate quantised student")
    p.add_argument("--encoder", type=Path, default=None,
                   help="the candidate's own tuned encoder (`lic tune-encoder --export`): also measure the "
                        "deployable codec")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="with --encoder: the deployable codec's latents refined, as the board's files are (about "
                        "25 s per Kodak image per student at 100 steps on one x86 core)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images of each set")
    p.add_argument("-o", "--out", type=Path, help="verdict JSON to write")
    p.add_argument("--show", type=Path, metavar="VERDICT", help="print a verdict written before (its summary) and stop")
    args = p.parse_args(argv)
    if args.show is not None:
        try:
            text = summary(json.loads(args.show.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"milestone: {args.show} is not a readable verdict ({type(e).__name__}: {e})", file=sys.stderr)
            return 1
        print(text)
        return 0
    missing = [flag for flag, value in (("--quality", args.quality), ("--float", args.float_student),
                                        ("--quant", args.quant_student), ("-o", args.out)) if value is None]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)} (or --show VERDICT)")
    try:
        result = milestone(args.quality, args.float_student, args.quant_student, args.encoder, args.refine,
                           args.limit)
    except LicError as e:
        print(f"milestone: {e}", file=sys.stderr)
        return 1
    write_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
