"""bench.json, report.md and plots of `lic bench`; the schema every row obeys; the GPU results file.

A row: {"platform", "device", "decoder", "width", "height", "fps", "watts", "joules_per_frame",
"source", "method", ...}: `source` is measured | estimated | published, `method` says how, and a
figure nobody measured or estimated is null. A row whose figures mix sources takes the weakest
(a measured fps with a modelled power is "estimated").
"""

from __future__ import annotations

import io
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.evaluate import _finite
from bench.rd import plot_rd
from host.image_io import write_atomic
from lic.errors import LicError

REQUIRED = ("platform", "device", "decoder", "width", "height", "fps", "watts", "joules_per_frame",
            "source", "method")
SOURCES = ("measured", "estimated", "published")
PUBLISHED = Path(__file__).resolve().parent / "data" / "published.json"
GPU_FORMAT = "lic-bench-gpu-v1"
STAGE_ORDER = ("parse", "rans_z", "h_s", "rans_y", "synthesis", "stitch")
MARKERS = {"measured": "o", "estimated": "s", "published": "*"}
LIMITS_OF_METRICS = [
    "PSNR (RGB, peak 255, MSE over all channels as CompressAI computes it): pixel fidelity only; blind "
    "to structure, it rewards blur over texture at equal MSE.",
    "MS-SSIM (pytorch_msssim, RGB in [0, 1]): structure and contrast over five scales; saturates near 1 "
    "at high quality and needs 161 px per side.",
    "VIF (pixel-domain VIF-P of Sheikh & Bovik 2006, BT.601 luma, own numpy code checked against piq "
    "0.8.0's vif_p to 1e-8): information the distorted image keeps of the reference under a Gaussian "
    "scale-mixture model; luma only (colour errors are invisible to it), needs 41 px per side.",
    "LPIPS and DISTS are not reported: both need ImageNet-pretrained VGG/AlexNet weights that piq and "
    "lpips download at run time through torchvision, which this project cannot install beside its CPU "
    "torch (DESIGN.md) and whose weights are not reachable offline. piq 0.8.0 itself imports torchvision "
    "at `import piq`, so no piq metric is importable here either.",
]


def published_rows(path: Path = PUBLISHED) -> list[dict]:
    return json.loads(path.read_text())["rows"]


def finalise(row: dict) -> dict:
    r = dict(row)
    for k in REQUIRED:
        r.setdefault(k, None)
    fps, watts, jpf = r["fps"], r["watts"], r["joules_per_frame"]
    if jpf is None and watts is not None and fps:
        r["joules_per_frame"] = jpf = watts / fps
    if watts is None and jpf is not None and fps:
        r["watts"] = jpf * fps
    r["uj_per_pixel"] = None if jpf is None else jpf / (r["width"] * r["height"]) * 1e6
    return r


def check_rows(rows: list[dict]) -> None:
    problems = []
    for i, r in enumerate(rows):
        where = f"row {i} ({r.get('platform')}/{r.get('decoder')})"
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
        if r.get("source") not in SOURCES:
            problems.append(f"{where}: source {r.get('source')!r} is not one of {', '.join(SOURCES)}")
        if not isinstance(r.get("method"), str) or not r.get("method"):
            problems.append(f"{where}: no method")
        for k in ("fps", "watts", "joules_per_frame"):
            v = r.get(k)
            if v is not None and (not isinstance(v, (int, float)) or v <= 0):
                problems.append(f"{where}: {k} = {v!r} is not a positive number or null")
    if problems:
        raise LicError("bench rows break the schema: " + "; ".join(problems))


def read_gpu_results(path: Path) -> tuple[dict, list[dict]]:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LicError(f"{path}: not a GPU results file ({e})") from None
    if not isinstance(d, dict) or d.get("format") != GPU_FORMAT or not isinstance(d.get("rows"), list):
        raise LicError(f"{path}: not a GPU results file of `lic bench --device cuda` (format {GPU_FORMAT})")
    rows = [finalise(r) for r in d["rows"]]
    check_rows(rows)
    bad = [r for r in rows if r["platform"] != "gpu" or r["source"] != "measured"]
    if bad:
        raise LicError(f"{path}: {len(bad)} rows are not measured GPU rows")
    return {**d.get("machine", {}), **{k: d.get(k) for k in ("created", "models", "command", "note")}}, rows


def write_gpu_results(path: Path, rows: list[dict], machine: dict, models: dict | None = None,
                      command: str | None = None) -> None:
    """`models` (quality, teacher, package, the students' sha256) and `command` say which files were
    decoded and how, so a report that merges the rows later can say whether they still describe the
    shipped files."""
    rows = [finalise(r) for r in rows]
    check_rows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": GPU_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {**machine, "machine": f"{machine.get('gpu')} + {machine.get('host_cpu')}"},
           "models": models, "command": command, "rows": rows}
    doc["machine"].setdefault("machine", machine.get("gpu"))
    write_atomic(path, (json.dumps(_finite(doc), indent=1) + "\n").encode())


def assemble(rows: list[dict], **extra) -> dict:
    rows = [finalise(r) for r in rows]
    check_rows(rows)
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "machine": platform.machine()},
            "schema": {"required": list(REQUIRED), "sources": list(SOURCES),
                       "units": {"fps": "frames/s", "watts": "W", "joules_per_frame": "J",
                                 "uj_per_pixel": "µJ per image pixel", "stages_ms": "ms per frame",
                                 "gmac_per_frame": "1e9 multiply-accumulates actually computed per frame "
                                                   "(padded frame; FPGA: tiles with halos)"}},
            "rows": rows, **extra}


# --- writing ---------------------------------------------------------------------------------------

def write_all(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plot_fps_energy(result["rows"], out / "fps_vs_energy.png")
    plot_stages(result["rows"], out / "stages.png")
    if result.get("rd"):
        plot_rd_curves(result["rd"], out / "rd.png")
    write_atomic(out / "report.md", report_markdown(result).encode())
    write_atomic(out / "bench.json", (json.dumps(_finite(result), indent=1) + "\n").encode())


def _fmt(v, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _label(r: dict) -> str:
    dev = r["device"].split(" (")[0].split(" @")[0]
    return f"{r['platform']} {dev} {r['decoder']} {r.get('precision') or ''}".strip() + \
        (f" b{r['batch']}" if r.get("batch") not in (None, 1) else "")


def main_table(rows: list[dict]) -> list[str]:
    lines = ["| frames | platform | device | decoder | precision | batch | scope | fps | W | J/frame | µJ/px | "
             "PSNR dB | bpp | source |", "|---|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['width']}x{r['height']} | {r['platform']} | {r['device']} | {r['decoder']} | "
                     f"{r.get('precision') or '–'} | {r.get('batch') or '–'} | {r.get('scope') or '–'} | "
                     f"{_fmt(r['fps'], '.2f')} | {_fmt(r['watts'], '.2f')} | {_fmt(r['joules_per_frame'], '.3f')} | "
                     f"{_fmt(r['uj_per_pixel'], '.3f')} | {_fmt(r.get('psnr'), '.2f')} | {_fmt(r.get('bpp'), '.4f')} | "
                     f"{r['source']} |")
    return lines


def report_markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [f"# lic bench: FPGA vs GPU vs CPU ({result['created']})", "",
             "Every figure is labelled: **measured** (on the machine named), **estimated** (by the model named "
             "in its method), **published** (source given). `–` = unknown: nobody measured or estimated it.", ""]
    if result.get("models"):
        m = result["models"]
        lines += [f"Decoders of rate point q{m['quality']}: the teacher's float g_s ({m['teacher']}), its float "
                  f"student and the quantised student of package `{m['package']}`; all decode the same .lic v2 "
                  f"files, the board's: encoder {m['teacher']} + integer h_s. Where that encoder is tuned for the "
                  f"quantised student (qN-tuned), the teacher's g_s decodes latents it was not trained on: its "
                  f"quality here is not the teacher codec's (`lic eval-students` has that).", ""]
    lines += ["Frame sets: " + "; ".join(f"{f['name']} {f['width']}x{f['height']}: {f['how']}"
                                         for f in result.get("frame_sets", [])), ""]
    lines += ["## fps and energy", ""] + main_table(rows) + [""]
    lines += ["![fps vs J/frame](fps_vs_energy.png)", "", "## Per-stage time (ms per frame)", "",
              "| platform | decoder | precision | frames | " + " | ".join(STAGE_ORDER) + " | source |",
              "|---|---|---|---|" + "---:|" * len(STAGE_ORDER) + "---|"]
    for r in rows:
        st = r.get("stages_ms")
        if st:
            lines.append(f"| {r['platform']} {r['device'].split(' (')[0].split(' @')[0]} | {r['decoder']} | "
                         f"{r.get('precision') or '–'} | {r['width']}x{r['height']} | "
                         + " | ".join(_fmt(st.get(s), '.2f') for s in STAGE_ORDER) + f" | {r['source']} |")
    lines += ["", "![per-stage time](stages.png)", "", "## Complexity and memory", "",
              "| decoder | frames | kMAC/px | GMAC/frame | parameters | weights bytes | peak activation bytes | "
              "on-chip memory bytes | platform |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    seen = set()
    for r in rows:
        key = (r["decoder"], r["width"], r["height"], r["platform"].split("-")[0])
        if r.get("kmac_per_pixel") is None or key in seen or r["platform"] == "fpga-board":
            continue
        seen.add(key)
        lines.append(f"| {r['decoder']} | {r['width']}x{r['height']} | {r['kmac_per_pixel']:.3f} | "
                     f"{_fmt(r.get('gmac_per_frame'), '.2f')} | {r.get('parameters', 0):,} | "
                     f"{_fmt(r.get('weights_bytes'), ',')} | {_fmt(r.get('activation_peak_bytes'), ',')} | "
                     f"{_fmt(r.get('on_chip_memory_bytes'), ',')} | {r['platform']} |")
    lines += ["", "## Quality of the same files", "",
              "| frames | decoder | precision | platform | bpp | PSNR dB | MS-SSIM | VIF |", "|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["source"] == "measured" and r.get("psnr") is not None and r.get("batch", 1) == 1:
            lines.append(f"| {r['width']}x{r['height']} | {r['decoder']} | {r.get('precision')} | {r['platform']} | "
                         f"{_fmt(r.get('bpp'), '.4f')} | {_fmt(r.get('psnr'), '.2f')} | "
                         f"{_fmt(r.get('ms_ssim'), '.4f')} | {_fmt(r.get('vif'), '.4f')} |")
    lines += ["", "Limits of each metric:", ""] + [f"- {t}" for t in LIMITS_OF_METRICS] + [""]
    rd = result.get("rd")
    if rd:
        lines += [f"## Rate-distortion of each decoder ({rd['images']} Kodak images, {rd['files']})", "",
                  "| q | decoder | bpp | PSNR dB | MS-SSIM |", "|---|---|---:|---:|---:|"]
        for p in rd["points"]:
            for d in ("teacher", "float_student", "quant_student"):
                lines.append(f"| {p['quality']} | {d} | {p[d]['bpp']:.4f} | {p[d]['psnr']:.2f} | {p[d]['ms_ssim']:.4f} |")
        lines += ["", "![RD](rd.png)", ""]
    lines += ["## Methods", ""]
    for r in rows:
        lines.append(f"- **{_label(r)}, {r['width']}x{r['height']}** ({r['source']}): {r['method']}")
    pm = next((r["power_model"] for r in rows if r.get("power_model")), None)
    if pm:
        lines += ["", f"FPGA power model ({pm['model']}): {pm['coefficient_source']}"]
    if result.get("gpu"):
        lines += ["", "GPU machine: " + ", ".join(f"{k} {v}" for k, v in result["gpu"].items())]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in result.get("notes", [])]
    if result.get("seconds") is not None:
        lines += ["", f"`lic bench` took {result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


# --- plots -----------------------------------------------------------------------------------------

def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # why: matplotlib loads only when a plot is drawn
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())


def _short_device(r: dict) -> str:
    return r["device"].split(" (")[0].split(" @")[0].replace("Intel(R) Xeon(R) Processor", "Xeon")


def _point_label(r: dict) -> str:
    """Decoder, and what else tells two points of one device apart (precision where it varies, batch > 1)."""
    label = {"quant_student": "quantised", "float_student": "float", "teacher": "teacher"}.get(r["decoder"], r["decoder"])
    precision = r.get("precision") or ""
    if r["platform"] == "gpu" and r["source"] == "measured":
        label += " (emulated)" if "emulated" in precision else f" {precision}"
    if r.get("batch") not in (None, 1):
        label += f" b{r['batch']}"
    return label


def plot_fps_energy(rows: list[dict], path: Path) -> None:
    """fps against J/frame, one panel per frame size (a point per row with both figures): colour =
    platform and device, marker = source. Frame sizes are not mixed, since a bigger frame moves every
    point down and right, and mixed they read as different devices."""
    plotted = [r for r in rows if r["fps"] is not None and r["joules_per_frame"] is not None]
    left_out = len(rows) - len(plotted)
    sizes = sorted({(r["height"], r["width"]) for r in plotted}, key=lambda hw: hw[0] * hw[1])
    keys = sorted({(r["platform"], _short_device(r)) for r in plotted})
    colours = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    fig = _figure((4.6 * max(1, len(sizes)) + 3.2, 4.8))
    axes = fig.subplots(1, max(1, len(sizes)), sharey=True, squeeze=False)[0]
    handles = {}
    for ax, (h, w) in zip(axes, sizes):
        for r in (r for r in plotted if (r["height"], r["width"]) == (h, w)):
            key = (r["platform"], _short_device(r))
            point = ax.scatter([r["joules_per_frame"]], [r["fps"]], marker=MARKERS[r["source"]],
                               s=70 if r["source"] != "published" else 160, color=colours[key], edgecolor="k",
                               linewidth=0.5)
            handles.setdefault(f"{key[0]} {key[1]} ({r['source']})", point)
            if not r["platform"].startswith("fpga"):  # the fabric runs the quantised student only: said once, above
                ax.annotate(_point_label(r), (r["joules_per_frame"], r["fps"]), fontsize=6, xytext=(5, -2),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("joules per frame (log)")
        ax.set_title(f"{w}x{h}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("frames per second (log)")
    fig.suptitle(f"Marker = source: o measured, s estimated, * published. FPGA points: the quantised student. "
                 f"Not shown: {left_out} rows whose fps or energy is unknown (CPU here: no RAPL; board rows: ARM "
                 f"stages unknown)", fontsize=7)
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="outside right upper")
    _save(fig, path)


def plot_stages(rows: list[dict], path: Path) -> None:
    """Per-stage time of every batch-1 row at 768x512: one group of bars per stage, log scale (a
    stacked bar on a log axis would misdraw the small stages). Unknown stages have no bar."""
    sel = [r for r in rows if r.get("stages_ms") and r.get("batch") in (1, None) and r["width"] * r["height"] == 768 * 512]
    fig = _figure((9, 6))
    ax = fig.add_subplot()
    height = 0.8 / max(len(sel), 1)
    y = np.arange(len(STAGE_ORDER))
    for j, r in enumerate(sel):
        vals = [r["stages_ms"].get(s) for s in STAGE_ORDER]
        known = [(i, v) for i, v in enumerate(vals) if v]
        ax.barh([y[i] + j * height - 0.4 for i, _ in known], [v for _, v in known], height=height,
                color=f"C{j % 10}", label=f"{r['platform']} {_short_device(r)} {r['decoder']} ({r['source']})")
    ax.set_yticks(y, STAGE_ORDER)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ms per 768x512 frame (log); no bar = unknown")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)


def plot_rd_curves(rd: dict, path: Path) -> None:
    names = {"teacher": "teacher g_s (float)", "float_student": "float student", "quant_student": "quantised student"}
    curves = {names[d]: [(p[d]["bpp"], p[d]["psnr"]) for p in rd["points"]] for d in names}
    ms = {names[d]: [(p[d]["bpp"], p[d]["ms_ssim"]) for p in rd["points"]] for d in names}
    plot_rd(curves, path, title=f"Decoders on the same files, Kodak ({rd['images']} images)", ms_ssim_curves=ms)
