"""`make arm-check`: the board's half of decoding on Debian's armhf Python, numpy and Pillow under
qemu-user, compared bit for bit with x86 on Kodak .lic files.

What it stands for: the PYNQ v3 image is Ubuntu 22.04 armhf with Python 3.10; Debian 12's armhf
packages (python 3.11, numpy 1.24, Pillow 9.4) are the same ABI, word size, alignment and float
behaviour, so code that agrees here agrees on the board's userland. What it does not: emulated
timing means nothing, and synthesis (the fabric, or onnxruntime, which has no armhf build) does not
run: its window outputs come from x86, so the check covers container parsing, rANS decoding (once
the C decoder is cross-compiled: host/csrc), the integer h_s (native kernel and numpy), the
fabric's input windows, the image from given output windows (stitching and dequantising) and PNG
writing.

Setup (board/armhf/setup_root.sh, run by make) is cached in build/armhf-root; the cross-compiled
libraries go to build/armhf/. `--arch arm64` does the same for ZCU104's / KV260's Cortex-A53 with
Debian's arm64 packages (build/arm64-root, build/arm64/; `make arm-check BOARD=zcu104`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from board.stages import run_all
from host.backends import make_backend
from host.decode_cli import default_package
from host.decoder_package import DecoderPackage
from host.image_io import write_atomic
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
# Debian architecture -> (cross compiler, qemu-user emulator, the boards it stands for)
ARCHES = {"armhf": ("arm-linux-gnueabihf-gcc", "qemu-arm", "PYNQ-Z2's Cortex-A9"),
          "arm64": ("aarch64-linux-gnu-gcc", "qemu-aarch64", "ZCU104's / KV260's Cortex-A53")}


def setup_hint(arch: str) -> str:
    return f"board/armhf/setup_root.sh build/{arch}-root {arch}" + (" (make arm-check runs it)" if arch == "armhf" else "")

# key in the stage outputs -> (stage it checks, what it is)
CHECKS = {
    "header": ("parse", "version, size, stream count"),
    "z": ("rans_z", "z symbols"),
    "indexes": ("integer_hs", "scale indexes, native int32 kernel"),
    "indexes_numpy": ("integer_hs", "scale indexes, numpy float64 reference"),
    "y": ("rans_y", "y_hat"),
    "tiles": ("tiles", "fabric input windows (int8 NHWC)"),
    "rgb": ("to_rgb8", "uint8 image from x86's fabric output windows"),
}


def cross_compile(out_dir: Path, arch: str = "armhf") -> dict[str, Path]:
    """ARM builds of the host's C code (host/csrc/Makefile): environment variable -> library path."""
    cc = ARCHES[arch][0]
    if shutil.which(cc) is None:
        raise LicError(f"{cc} not found: run `{setup_hint(arch)}` (it installs gcc-{cc.removesuffix('-gcc')})")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["make", "-s", "-C", str(REPO / "host" / "csrc"), f"CC={cc}", f"OUT_DIR={out_dir}"],
                   check=True)
    return {"LIC_HOST_LIB": out_dir / "liblic_host.so", "LIC_RANS_LIB": out_dir / "liblic_rans.so"}


def qemu_command(root: Path, plugin: str | None = None, arch: str = "armhf") -> list[str]:
    """Debian's python3.11 for arch from root under qemu; qemu-arm / qemu-aarch64 (dynamic) when a TCG
    plugin is loaded, their -static builds otherwise."""
    qemu = ARCHES[arch][1] + ("" if plugin else "-static")
    if shutil.which(qemu) is None:
        raise LicError(f"{qemu} not found: run `{setup_hint(arch)}` (it installs qemu-user and qemu-user-static)")
    python = root / "usr" / "bin" / "python3.11"
    if not python.is_file():
        raise LicError(f"{root} has no {arch} python3.11: run `board/armhf/setup_root.sh {root} {arch}`")
    return [qemu, "-L", str(root)] + (["-plugin", plugin] if plugin else []) + [str(python)]


def qemu_env(libs: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env["PYTHONPATH"] = str(REPO)
    # One thread, the same dict layouts every run: instruction counts then repeat to ~0.01%
    # (OpenBLAS' idle worker threads spin, and the plugin counts every thread).
    env.update(PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    # A run that finds a stale .pyc recompiles and writes it, and the next does not: the two runs a
    # count is differenced from would then differ by the compilation (counts of 0 for small stages).
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update({k: str(v) for k, v in libs.items()})
    return env


def make_lic_files(folder: Path, data: Path, limit: int, package) -> list[str]:
    """Encode the first `limit` images as the board's files: the package's encoder + integer h_s,
    y in one substream per fabric tile (format v3)."""
    # why: training/ loads torch; board/rate.py imports this module on a board (--on-board), without torch
    from training.data import first_images, load_images
    from training.teacher_codec import EntropyModels, encode, package_encoder

    models = package_encoder(package)
    models = EntropyModels(models.teacher, models.integer_hs, (package.tile, package.halo))
    names = []
    for name, rgb in load_images(first_images(data, limit)):
        stem = Path(name).stem
        write_atomic(folder / f"{stem}.lic", encode(models, rgb))
        names.append(stem)
    return names


def x86_references(folder: Path, names: list[str], package) -> None:
    """NAME.x86.npz: every stage's output on this machine, the fabric's windows from onnxruntime."""
    backend = make_backend("onnx", package)
    for name in names:
        out, skipped = run_all(package, (folder / f"{name}.lic").read_bytes(), backend.run_windows)
        if skipped:
            raise LicError(f"x86 reference for {name} is incomplete: {skipped}")
        out["indexes_native"] = out["indexes"]
        np.savez(folder / f"{name}.x86.npz", **out)


def compare(folder: Path, arm_dir: Path, names: list[str]) -> dict:
    report = {}
    for name in names:
        with np.load(folder / f"{name}.x86.npz") as x, np.load(arm_dir / f"{name}.arm.npz") as a:
            skipped = dict(line.split(": ", 1) for line in bytes(a["skipped"]).decode().splitlines() if line)
            rows = {}
            for key, (stage, what) in CHECKS.items():
                if key not in a.files:
                    rows[key] = {"stage": stage, "what": what, "ran": False, "why": skipped.get(stage, "not run")}
                    continue
                ref = x["indexes_numpy"] if key == "indexes" else x[key]  # the float64 x86 reference
                rows[key] = {"stage": stage, "what": what, "ran": True,
                             "equal": bool(ref.shape == a[key].shape and np.array_equal(ref, a[key]))}
            arm_png = Image.open(io.BytesIO(a["png"].tobytes()))
            rows["png"] = {"stage": "png", "what": "PNG written on ARM, decoded", "ran": True,
                           "equal": bool(np.array_equal(np.asarray(arm_png.convert("RGB")), x["rgb"])),
                           "same_bytes_as_x86": bool(np.array_equal(a["png"], x["png"]))}
            report[name] = {"platform": bytes(a["platform"]).decode(), "checks": rows}
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    from training.data import KODAK as DEFAULT_DATA  # why: training/ loads torch (see make_lic_files)

    p.add_argument("--arch", choices=sorted(ARCHES), default="armhf",
                   help="armhf: PYNQ-Z2's Cortex-A9 (default); arm64: ZCU104's / KV260's Cortex-A53")
    p.add_argument("--root", type=Path, default=None, help="the ARM userland (default build/ARCH-root)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="images to encode (default Kodak)")
    p.add_argument("--limit", type=int, default=3, help="how many images (default 3)")
    p.add_argument("--package", type=Path, default=None, help="decoder package (default: the shipped one)")
    p.add_argument("-o", "--out", type=Path, default=REPO / "build" / "arm-check", help="work folder (refs are shared)")


def run(args) -> int:
    package = DecoderPackage.load(args.package or default_package())
    refs = args.out / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    arch = args.arch
    root = args.root or REPO / "build" / f"{arch}-root"
    cmd = qemu_command(root, arch=arch)
    libs = cross_compile(REPO / "build" / arch, arch)
    names = make_lic_files(refs, args.data, args.limit, package)
    x86_references(refs, names, package)
    arm_dir = args.out / arch
    cmd += ["-m", "board.stages", "check", "--package", str(package.root),
                                     "--refs", str(refs), "--out", str(arm_dir), *names]
    print(f"{arch}:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, env=qemu_env(libs), cwd=REPO)
    if proc.returncode:
        raise LicError(f"the {arch} run failed (exit {proc.returncode}); its output is above")
    report = compare(refs, arm_dir, names)
    kernels = json.loads((arm_dir / "kernels.json").read_text())
    (args.out / f"report-{arch}.json").write_text(json.dumps({"libraries": {k: str(v) for k, v in libs.items()},
                                                      "files": report, "kernels": kernels}, indent=1) + "\n")
    ok = not kernels["differ"]
    first = next(iter(report.values()))
    print(f"\narm-check: {len(names)} Kodak files, {arch} ({ARCHES[arch][2]}) = {first['platform']} under qemu-user; "
          f"x86 = this machine")
    print("| stage | checks | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for key in list(CHECKS) + ["png"]:
        cells = []
        for name in names:
            row = report[name]["checks"][key]
            if not row["ran"]:
                cells.append("skipped")
            else:
                ok &= row["equal"]
                cells.append("bit-exact" if row["equal"] else "**DIFFERS**")
        row0 = report[names[0]]["checks"][key]
        print(f"| {row0['stage']} | {row0['what']} | " + " | ".join(cells) + " |")
    for key, row in report[names[0]]["checks"].items():
        if not row["ran"]:
            print(f"skipped {row['stage']}: {row['why']}")
    print(f"native kernels on {len(kernels['cases'])} hard cases (integer h_s: board.stages.kernel_cases; "
          f"to_rgb8: every int16 value; the image from every int8 window value; fabric windows: "
          f"board.stages.window_cases), against "
          f"numpy on the same ARM: " + (f"**DIFFERS**: {kernels['differ']}" if kernels["differ"] else "all exact"))
    png_bytes = all(r["checks"]["png"]["same_bytes_as_x86"] for r in report.values())
    print(f"PNG files byte-identical to x86's: {png_bytes} (pixels are what must agree; zlib versions may differ)")
    print("Synthesis did not run on ARM (fabric / onnxruntime): the image used x86's output windows.")
    print("Emulated run times say nothing about a board.")
    if not ok:
        raise LicError(f"{arch} and x86 disagree: see {args.out / f'report-{arch}.json'}")
    return 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        sys.exit(run(p.parse_args()))
    except LicError as e:
        print(f"lic: error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
