"""Rate-distortion curves: the published reference, Bjontegaard deltas between curves, and plots."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from host.image_io import write_atomic
from lic.errors import LicError

# CompressAI's own bmshj2018-hyperprior (MSE) on Kodak, qualities 1-5, from its
# results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json (RGB PSNR, bpp of the
# entropy-coded strings only). DESIGN.md quotes the same numbers rounded.
REFERENCE_BMSHJ2018: tuple[dict, ...] = (
    {"q": 1, "lambda": 0.0018, "bpp": 0.13129340277777776, "psnr": 27.581536752297392, "ms_ssim": 0.9173670336604118},
    {"q": 2, "lambda": 0.0035, "bpp": 0.20889282226562503, "psnr": 29.196703405493214, "ms_ssim": 0.9420619979500771},
    {"q": 3, "lambda": 0.0067, "bpp": 0.3198581271701389, "psnr": 30.972162072759534, "ms_ssim": 0.9610559890667597},
    {"q": 4, "lambda": 0.0130, "bpp": 0.47835625542534727, "psnr": 32.83818257445048, "ms_ssim": 0.9748738879958788},
    {"q": 5, "lambda": 0.0250, "bpp": 0.6686876085069443, "psnr": 34.52626403063645, "ms_ssim": 0.9835607434312502},
)
REFERENCE_NAME = "CompressAI bmshj2018-hyperprior (published)"

# Akima: piecewise and through every point, so unlike Bjontegaard's original cubic polynomial it
# does not swing far between points; Herglotz et al. (arXiv 2202.12565, 2304.12852; the bjontegaard
# package's authors) found it more accurate and stable than PCHIP, the JCT-VC/JVET spreadsheet's
# choice. On Kodak JPEG and WebP against the reference, akima, pchip and cubic agree within 0.1%.
BD_METHOD = "akima"
# Akima is not monotone: two points close in PSNR but far apart in rate (a steep step in log rate)
# bend its neighbouring pieces, and a BD-rate over a narrow overlap then moves by several points
# with the interpolator (the students' Nov 27 curve: akima -5.2%, PCHIP -15.5%, cubic +61.8% against
# JPEG). PCHIP, monotone, is the cross-check; past this spread the figure is reported as unstable.
CROSS_CHECK_METHOD = "pchip"
UNSTABLE_SPREAD_POINTS = 3.0
# Fewer than four points leaves too little curve for a delta to mean anything (Bjontegaard's
# original fits a cubic through exactly four).
MIN_POINTS = 4


def _curve(bpp: Sequence[float], psnr: Sequence[float], which: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (rate, PSNR), sorted by rate, for the Bjontegaard integrals."""
    r, d = np.asarray(bpp, dtype=float), np.asarray(psnr, dtype=float)
    if r.shape != d.shape or r.ndim != 1:
        raise LicError(f"{which} curve: rate and PSNR lists differ in length")
    if len(r) < MIN_POINTS:
        raise LicError(f"{which} curve has {len(r)} point(s); a BD figure needs at least {MIN_POINTS}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(d)) and np.all(r > 0)):
        raise LicError(f"{which} curve has a non-positive or non-finite value")
    order = np.argsort(r)
    r, d = r[order], d[order]
    # The integrals interpolate rate as a function of PSNR and PSNR as a function of rate, so both
    # must rise together; a curve that does not is a measurement problem to look at, not average over.
    if np.any(np.diff(r) <= 0) or np.any(np.diff(d) <= 0):
        raise LicError(f"{which} curve is not strictly increasing in both rate and PSNR")
    return r, d


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Length of the shared interval of two ranges, relative to their union."""
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    union = max(a.max(), b.max()) - min(a.min(), b.min())
    if union == 0:  # two single, equal values
        return 1.0
    return float(max(hi - lo, 0.0) / union)


def psnr_overlap(anchor_psnr: Sequence[float], test_psnr: Sequence[float]) -> float:
    """Fraction of the two curves' joint PSNR range that both cover: BD-rate averages only there."""
    return float(_overlap(np.asarray(anchor_psnr, float), np.asarray(test_psnr, float)))


def _delta(kind: str, anchor_bpp, anchor_psnr, test_bpp, test_psnr, method: str = BD_METHOD) -> float:
    import bjontegaard  # imports pyplot; kept out of module import so plotting stays backend-free

    ra, da = _curve(anchor_bpp, anchor_psnr, "anchor")
    rt, dt = _curve(test_bpp, test_psnr, "test")
    # Each delta averages over the range the curves share on its integration axis (log rate for BD-PSNR).
    axis_a, axis_t = (da, dt) if kind == "rate" else (np.log10(ra), np.log10(rt))
    if _overlap(axis_a, axis_t) == 0.0:
        what = "PSNR" if kind == "rate" else "rate"
        raise LicError(f"the curves do not overlap in {what}; no BD-{kind} can be computed")
    fn = bjontegaard.bd_rate if kind == "rate" else bjontegaard.bd_psnr
    with warnings.catch_warnings():
        # It warns below 75% overlap; we report the overlap ourselves instead.
        warnings.simplefilter("ignore")
        value = fn(ra, da, rt, dt, method=method, require_matching_points=False, min_overlap=0)
    if not math.isfinite(value):
        raise LicError(f"BD-{kind} came out non-finite")
    return float(value)


def bd_rate(anchor_bpp: Sequence[float], anchor_psnr: Sequence[float],
            test_bpp: Sequence[float], test_psnr: Sequence[float]) -> float:
    """Bjontegaard delta rate in percent: the test's average rate change for equal PSNR, over the PSNR
    range both curves cover (negative = test needs fewer bits). LicError if either curve has fewer
    than MIN_POINTS points, is not monotonic, or the two share no PSNR range."""
    return _delta("rate", anchor_bpp, anchor_psnr, test_bpp, test_psnr)


def bd_psnr(anchor_bpp: Sequence[float], anchor_psnr: Sequence[float],
            test_bpp: Sequence[float], test_psnr: Sequence[float]) -> float:
    """Bjontegaard delta PSNR in dB: the test's average quality change for equal rate, over the
    log-rate range both curves cover (positive = test is better). Same failures as bd_rate."""
    return _delta("psnr", anchor_bpp, anchor_psnr, test_bpp, test_psnr)


def compare(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> dict:
    """BD-rate and BD-PSNR of `test` against `anchor` (lists of (bpp, psnr)), for reports: a figure
    that cannot be computed is None, with the reason alongside; a BD-rate that moves with the
    interpolator keeps its value and says so in the reason."""
    ab, ap = [p[0] for p in anchor], [p[1] for p in anchor]
    tb, tp = [p[0] for p in test], [p[1] for p in test]
    out: dict = {"bd_rate_percent": None, "bd_psnr_db": None, "psnr_overlap": None, "reason": None}
    reasons = []
    for key, fn in (("bd_rate_percent", bd_rate), ("bd_psnr_db", bd_psnr)):
        try:
            out[key] = fn(ab, ap, tb, tp)
        except LicError as e:
            if str(e) not in reasons:
                reasons.append(str(e))
    if out["bd_rate_percent"] is not None:
        try:
            check = _delta("rate", ab, ap, tb, tp, method=CROSS_CHECK_METHOD)
            if abs(check - out["bd_rate_percent"]) > UNSTABLE_SPREAD_POINTS:
                reasons.append(f"unstable: {CROSS_CHECK_METHOD} interpolation gives {check:+.1f}% "
                               "(points too close in PSNR for one figure; read the points)")
        except LicError as e:
            reasons.append(f"{CROSS_CHECK_METHOD} cross-check failed: {e}")
    if ap and tp:
        out["psnr_overlap"] = psnr_overlap(ap, tp)
    out["reason"] = "; ".join(reasons) or None
    return out


def _ms_ssim_db(v: float) -> float:
    # -10 log10(1 - MS-SSIM), as CompressAI plots it: spreads out the crowded top of the scale.
    return -10.0 * math.log10(max(1.0 - v, 1e-10))


def plot_rd(curves: dict[str, Sequence[tuple[float, float]]], path: Path | str, title: str,
            ms_ssim_curves: dict[str, Sequence[tuple[float, float]]] | None = None,
            dashed: Sequence[str] = ()) -> None:
    """Write a PNG of PSNR against bpp for each named curve (points joined in rate order), with a
    second panel of MS-SSIM (in dB) when `ms_ssim_curves` is given. Names in `dashed` (e.g. published
    references) are drawn dashed."""
    # The object API with the Agg canvas: no pyplot global state, no display needed, and it works
    # whatever backend the user's matplotlib is configured with.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why: matplotlib loads only when a plot is drawn
    from matplotlib.figure import Figure

    panels = [("PSNR (dB, RGB)", curves, lambda v: v)]
    if ms_ssim_curves:
        panels.append(("MS-SSIM (dB) = -10 log10(1 - MS-SSIM)", ms_ssim_curves, _ms_ssim_db))
    fig = Figure(figsize=(7 * len(panels), 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (ylabel, data, tf) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for name, pts in data.items():
            pts = sorted((float(b), tf(float(q))) for b, q in pts if q is not None)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=4,
                    linestyle="--" if name in dashed else "-", label=name)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.4)
        ax.legend(fontsize="small")
    fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())

