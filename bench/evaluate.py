"""`lic eval`: rate-distortion of the teacher and of classical codecs on a folder of images.

Every rate point is a real round trip (file bytes written, decoded, compared to the original), so
the numbers include everything a user pays: container headers, rounding to 8 bits, padding.
Writes results.json (per image and mean), summary.md and rd.png to the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import __version__ as pillow_version, features
from tqdm import tqdm

from bench import metrics
from bench.baselines import CODECS, Codec, get_codec
from bench.rd import REFERENCE_BMSHJ2018, REFERENCE_NAME, compare, plot_rd
from host.image_io import write_atomic
from lic.errors import LicError
from training.data import KODAK as DEFAULT_DATA, first_images, load_images  # noqa: F401  (bench's callers use them from here)
from training.teacher import load_teacher, read_manifest
from training.teacher_codec import EntropyModels, decode, encode, shipped_integer_hs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BASELINES = ",".join(CODECS)
TEACHER = "teacher"
TEACHER_V2 = "teacher-int-hs"
REFERENCE = "reference"
RESULTS_VERSION = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                   help=f"folder of images (default: Kodak at {DEFAULT_DATA})")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--quality", default=None, metavar="LIST",
                     help="shipped teachers to evaluate: comma list such as 1,2,3 or 'all' (default: all)")
    who.add_argument("--teacher", action="append", default=None, metavar="SPEC",
                     help="evaluate this teacher instead (zoo:bmshj2018-hyperprior:Q or a checkpoint path); "
                          "repeat it to make a curve of several")
    p.add_argument("--baselines", default=DEFAULT_BASELINES, metavar="LIST",
                   help=f"classical codecs: comma list of {', '.join(CODECS)}, or 'none' (default: all of them)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images (quick runs)")
    p.add_argument("-o", "--out", type=Path, default=Path("build/eval"), metavar="DIR",
                   help="output folder (default: build/eval)")


# --- inputs ---------------------------------------------------------------------------------------

def parse_baselines(text: str) -> list[Codec]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["none"]:
        return []
    if not names:
        raise LicError("--baselines is empty; name codecs or say 'none'")
    # get_codec checks each is usable now, not after an hour of teacher runs.
    return [get_codec(n) for n in dict.fromkeys(names)]


def load_teachers(qualities: str | None, specs: list[str] | None) -> list:
    if specs:
        return [load_teacher(spec=s) for s in specs]
    if qualities is None or qualities.strip().lower() == "all":
        shipped = sorted(e["quality"] for e in read_manifest())
        if not shipped:
            print("lic eval: no shipped teachers (training/teachers/); evaluating the baselines only",
                  file=sys.stderr)
        return [load_teacher(quality=q) for q in shipped]
    try:
        wanted = sorted({int(q) for q in qualities.split(",") if q.strip()})
    except ValueError:
        raise LicError(f"--quality must be a comma list of integers or 'all', got {qualities!r}") from None
    if not wanted:
        raise LicError("--quality is empty")
    return [load_teacher(quality=q) for q in wanted]


# --- measuring ------------------------------------------------------------------------------------

def measure(name: str, rgb: np.ndarray, encode: Callable[[np.ndarray], bytes],
            decode: Callable[[bytes], np.ndarray]) -> dict:
    """One image through one codec setting: its per-image record."""
    t0 = time.perf_counter()
    data = encode(rgb)
    t1 = time.perf_counter()
    out = decode(data)
    t2 = time.perf_counter()
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise LicError(f"{name}: decoder returned {out.dtype} {out.shape}, expected uint8 {rgb.shape}")
    h, w = rgb.shape[:2]
    return {"image": name, "bytes": len(data), "bpp": metrics.bpp(len(data), h, w),
            "psnr": metrics.psnr(rgb, out), "ms_ssim": metrics.ms_ssim(rgb, out),
            "encode_s": t1 - t0, "decode_s": t2 - t1}


def mean_record(records: list[dict]) -> dict:
    """Means over images of each per-image figure (CompressAI averages per-image PSNR too). MS-SSIM's
    mean is None if any image was too small for it, rather than a mean over a different set."""
    out = {}
    for key in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s"):
        if key not in records[0]:
            continue
        values = [r[key] for r in records]
        out[key] = None if any(v is None for v in values) else float(np.mean(values))
    return out


def run_points(label: str, settings: list[tuple[dict, Callable, Callable]],
               images: list[tuple[str, np.ndarray]]) -> list[dict]:
    """Every setting on every image; settings are (point metadata, encode, decode)."""
    points = []
    with tqdm(total=len(settings) * len(images), desc=label, unit="img", file=sys.stderr) as bar:
        for meta, enc, dec in settings:
            records = []
            for name, rgb in images:
                records.append(measure(name, rgb, enc, dec))
                bar.update()
            points.append({**meta, "mean": mean_record(records), "images": records})
    return points


def learned_curve(key: str, label: str, models: list, images) -> dict:
    """Round trips through .lic files; `models` are EntropyModels (teacher, maybe an integer h_s)."""
    settings = []
    for em in models:
        meta = {"setting": em.name, "quality": em.teacher.quality, "lambda": em.teacher.lmbda,
                "fingerprint": em.fingerprint.hex()}
        settings.append((meta, lambda rgb, em=em: encode(em, rgb), lambda data, em=em: decode(em, data)))
    return {"label": label, "kind": "learned", "points": run_points(key, settings, images)}


def with_shipped_integer_hs(teachers: list) -> list:
    """The teachers that have a shipped integer h_s, paired with it (format v2). Their decoded images
    are identical to version 1 (same y_hat, same g_s), so the bpp difference between the two curves
    is exactly what the integer h_s costs in rate."""
    paired = []
    for t in teachers:
        if t.quality is None:
            continue
        try:
            paired.append(EntropyModels(t, shipped_integer_hs(t.quality)))
        except LicError:
            pass
    return paired


def codec_curve(codec: Codec, images) -> dict:
    settings = [({"setting": f"quality={q}", "quality": q},
                 lambda rgb, q=q: codec.encode(rgb, q), codec.decode) for q in codec.qualities]
    return {"label": codec.label, "kind": "classical", "points": run_points(codec.name, settings, images)}


def reference_curve() -> dict:
    return {"label": REFERENCE_NAME, "kind": "published",
            "note": "CompressAI's published Kodak means; bpp counts the entropy-coded strings only",
            "points": [{"setting": f"q{r['q']}", "quality": r["q"], "lambda": r["lambda"],
                        "mean": {"bpp": r["bpp"], "psnr": r["psnr"], "ms_ssim": r["ms_ssim"]}}
                       for r in REFERENCE_BMSHJ2018]}


def rd_points(curve: dict, key: str = "psnr") -> list[tuple[float, float]]:
    return [(p["mean"]["bpp"], p["mean"][key]) for p in curve["points"] if p["mean"][key] is not None]


def bd_table(curves: dict) -> list[dict]:
    """BD figures worth reading: each baseline against our teacher, and everything measured against
    the published reference (the teacher's check, and the baselines' place on the same scale)."""
    pairs = [(TEACHER, name) for name, c in curves.items() if c["kind"] == "classical" and TEACHER in curves]
    pairs += [(REFERENCE, name) for name in curves if name != REFERENCE]
    return [{"anchor": a, "test": t, **compare(rd_points(curves[a]), rd_points(curves[t]))} for a, t in pairs]


# --- reporting ------------------------------------------------------------------------------------

def environment() -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "pillow": pillow_version,
           "libjpeg": features.version("jpg"), "libwebp": features.version("webp"),
           "libavif": features.version("avif")}
    try:
        import pillow_heif  # why: optional codec (HEIF baseline); pillow_heif registers itself with Pillow

        info = pillow_heif.libheif_info()
        env.update({"pillow_heif": pillow_heif.__version__, "libheif": info.get("libheif"),
                    "heif_encoder": info.get("HEIF")})
    except ImportError:
        pass
    env.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads()})
    return env


def _fmt(v, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def summary_markdown(results: dict) -> str:
    lines = [f"# Rate-distortion: {results['data']} ({len(results['images'])} images)", "",
             "| curve | setting | bpp | PSNR dB | MS-SSIM | encode s | decode s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, c in results["curves"].items():
        for p in c["points"]:
            m = p["mean"]
            lines.append(f"| {name} | {p['setting']} | {m['bpp']:.4f} | {m['psnr']:.2f} | "
                         f"{_fmt(m['ms_ssim'], '.4f')} | {_fmt(m.get('encode_s'), '.3f')} | "
                         f"{_fmt(m.get('decode_s'), '.3f')} |")
    lines += ["", "BD-rate: the test's rate change at equal PSNR (negative = fewer bits than the anchor); "
                  "BD-PSNR at equal rate. Both over the range the curves share.", "",
              "| test | anchor | BD-rate % | BD-PSNR dB | PSNR overlap | note |", "|---|---|---:|---:|---:|---|"]
    for b in results["bd"]:
        lines.append(f"| {b['test']} | {b['anchor']} | {_fmt(b['bd_rate_percent'], '+.1f')} | "
                     f"{_fmt(b['bd_psnr_db'], '+.2f')} | {_fmt(b['psnr_overlap'], '.0%')} | {b['reason'] or ''} |")
    return "\n".join(lines) + "\n"


def _finite(obj):
    """JSON has no NaN/inf: any that slipped through become null rather than invalid output."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def write_outputs(results: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    curves = results["curves"]
    plot_rd({c["label"]: rd_points(c) for c in curves.values()}, out / "rd.png",
            title=f"{Path(results['data']).name}, {len(results['images'])} images",
            ms_ssim_curves={c["label"]: rd_points(c, "ms_ssim") for c in curves.values()},
            dashed=[curves[REFERENCE]["label"]])
    summary = summary_markdown(results)
    write_atomic(out / "summary.md", summary.encode())
    # Last, so a results.json beside them means the whole run finished.
    write_atomic(out / "results.json", (json.dumps(_finite(results), indent=1, allow_nan=False) + "\n").encode())
    return summary


def evaluate(*, data: Path = DEFAULT_DATA, quality: str | None = None, teacher: list[str] | None = None,
             baselines: str = DEFAULT_BASELINES, limit: int | None = None) -> dict:
    """`lic eval`'s measurements, returned as its results.json holds them: the teachers (shipped ones
    by `quality`, a comma list or 'all'; or the `teacher` specs) and the classical `baselines` (comma
    list or 'none') on the first `limit` images of `data`."""
    files = first_images(data, limit)
    codecs = parse_baselines(baselines)
    teachers = load_teachers(quality, teacher)
    if not teachers and not codecs:
        raise LicError("nothing to evaluate: no teacher and no baselines")
    images = load_images(files)

    curves: dict[str, dict] = {}
    if teachers:
        curves[TEACHER] = learned_curve(TEACHER, "teacher (bmshj2018 ScaleHyperprior, .lic v1)",
                                        [EntropyModels(t) for t in teachers], images)
        v2 = with_shipped_integer_hs(teachers)
        if v2:
            curves[TEACHER_V2] = learned_curve(TEACHER_V2, "teacher with integer h_s (.lic v2)", v2, images)
    for codec in codecs:
        curves[codec.name] = codec_curve(codec, images)
    curves[REFERENCE] = reference_curve()

    return {"version": RESULTS_VERSION, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": str(data), "images": [name for name, _ in images],
            "metrics": {"bpp": "whole file bits / pixels, headers included",
                        "psnr": f"dB, RGB, peak 255, MSE over all channels, capped at {metrics.PSNR_CAP_DB:g}",
                        "ms_ssim": "pytorch_msssim on RGB in [0, 1], data_range 1; null below "
                                   f"{metrics.MS_SSIM_MIN_SIDE} px a side",
                        "time": "seconds, wall clock, in-memory encode / decode of one image",
                        "mean": "arithmetic mean over images of each figure"},
            "environment": environment(), "curves": curves, "bd": bd_table(curves)}


def run(args: argparse.Namespace) -> int:
    results = evaluate(data=args.data, quality=args.quality, teacher=args.teacher, baselines=args.baselines,
                       limit=args.limit)
    summary = write_outputs(results, args.out)
    print(summary, end="")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'summary.md'}, {args.out / 'rd.png'}", file=sys.stderr)
    return 0
