"""`lic export`: a quantised student (from `lic qat --export`) -> the deployable decoder package
(host/decoder_package.py describes the folder), verified before it is written.

Verification, on integer latents drawn like a real y_hat (Laplacian, clipped to the input range):
  - the QONNX graph, executed by qonnx, equals Brevitas' integer output exactly on one tile;
  - onnxruntime on the QCDQ graph is within 1 LSB of Brevitas on a whole non-square frame
    (measured: 0 LSB), and the result is recorded in the manifest.
The package is written to a temporary folder beside the target and renamed into place, so a failed
or interrupted export never leaves a half-written package.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from export.qonnx_export import export_qcdq_onnx, export_qonnx, run_onnxruntime, run_qonnx
from host.backends import to_int_pixels
from host.decoder_package import (ENTROPY_TABLES, INTEGER_HS, MANIFEST, PACKAGE_FORMAT, QUANT_STUDENT, STUDENT_ONNX,
                                  STUDENT_QONNX, DecoderPackage, sha256_file)
from host.integer_hyper import IntegerHyperSynthesis
from host.package_signature import SIGNATURE, read_key, sign_manifest
from lic.errors import LicError
from quantize.qat import check_bit_widths, load_quant_student
from training.distill import resolve_teacher
from training.loop import command_line
from training.student_decoder import count_parameters, kmac_per_pixel, receptive_halo
from training.teacher import SPATIAL_MULTIPLE, TEACHERS_DIR, read_manifest
from training.teacher_codec import EntropyModels, cdf_arrays, shipped_integer_hs, shipped_integer_hs_path

DEFAULT_TILE = 32
MAX_ORT_LSB = 1

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIRS = (REPO_ROOT / "training" / "students", TEACHERS_DIR.resolve())
SHIPPED_PACKAGES = REPO_ROOT / "host" / "decoders"  # tracked packages; build/ ones hold plain copies


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("student", type=Path, help="the quantised student, from `lic qat --export`")
    p.add_argument("-o", "--output", type=Path, required=True, help="the package folder to write (replaced if it exists)")
    p.add_argument("--teacher", default=None,
                   help="the student's teacher if it is not a shipped one (found by fingerprint otherwise)")
    p.add_argument("--integer-hs", type=Path, default=None,
                   help="the integer h_s the encoder uses (default: the shipped one for the teacher's quality)")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"square latent tile of the QONNX graph for FINN, in latents (default {DEFAULT_TILE} = "
                        f"{DEFAULT_TILE * 16} px)")
    p.add_argument("--name", default=None, help="package name in the manifest (default: the folder name)")
    p.add_argument("--sign-key", type=Path, default=None, metavar="KEY.pem",
                   help="sign the package with this Ed25519 private key (PEM, e.g. `openssl genpkey -algorithm "
                        "ed25519 -out KEY.pem`): writes manifest.sig, which `lic decode --trusted-key PUB.pem` "
                        "checks. Default: unsigned")


def entropy_tables(teacher_model) -> dict[str, np.ndarray]:
    out = {}
    for prefix, em in (("z", teacher_model.entropy_bottleneck), ("y", teacher_model.gaussian_conditional)):
        out[f"{prefix}_cdf"], out[f"{prefix}_cdf_length"], out[f"{prefix}_offset"] = cdf_arrays(em)
    return out


def laplacian_latents(channels: int, h: int, w: int, input_bits: int, seed: int = 0) -> np.ndarray:
    """Integer test latents shaped like y_hat: mostly small, a few large, clipped to the input range."""
    rng = np.random.default_rng(seed)
    lim = 2 ** (input_bits - 1)
    return np.clip(np.rint(rng.laplace(0, 2.0, (1, channels, h, w))), -lim, lim - 1).astype(np.float32)


def brevitas_int(model, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.forward_quant(torch.from_numpy(y)).int().numpy()


def verify(model, qcfg, qonnx_path: Path, onnx_path: Path, tile: int, scale: float) -> dict:
    m = model.cfg.latent_channels
    y_tile = laplacian_latents(m, tile, tile, qcfg.input_bits, seed=1)
    q = np.rint(run_qonnx(qonnx_path, y_tile) / np.float32(scale))
    ref = brevitas_int(model, y_tile)
    qonnx_mismatch = int((q != ref).sum())
    if qonnx_mismatch:
        raise LicError(f"QONNX export differs from Brevitas in {qonnx_mismatch} output integers: not exported")
    y_frame = laplacian_latents(m, tile + 3, tile + 7, qcfg.input_bits, seed=2)
    ort = to_int_pixels(run_onnxruntime(onnx_path, y_frame), scale).astype(np.int64)
    lsb = int(np.abs(ort - brevitas_int(model, y_frame)).max())
    if lsb > MAX_ORT_LSB:
        raise LicError(f"onnxruntime output is {lsb} LSB from Brevitas (limit {MAX_ORT_LSB}): not exported")
    return {"qonnx_vs_brevitas_mismatches": qonnx_mismatch, "qonnx_tile": [tile, tile],
            "onnxruntime_vs_brevitas_max_lsb": lsb, "onnxruntime_frame": [tile + 3, tile + 7]}


def export_package(student_path: Path, out_dir: Path, *, teacher_spec=None, integer_hs_path: Path | None = None,
                   tile: int = DEFAULT_TILE, name: str | None = None, sign_key: Path | None = None) -> DecoderPackage:
    if sign_key is not None:
        read_key(sign_key, private=True)  # a bad key fails now, not after the export's minutes
    model, cfg, qcfg, fingerprint = load_quant_student(student_path)
    try:
        check_bit_widths(qcfg, cfg)  # a file from before `lic qat` capped them
    except LicError as e:
        raise LicError(f"{student_path}: {e}") from None
    teacher = resolve_teacher(SimpleNamespace(teacher=teacher_spec, quality=None), fingerprint)
    shipped_hs_path = None
    if integer_hs_path is not None:
        integer_hs = IntegerHyperSynthesis.load(integer_hs_path)
    elif teacher.quality is not None:
        integer_hs = shipped_integer_hs(teacher.quality)
        shipped_hs_path = shipped_integer_hs_path(teacher.quality)
    else:
        raise LicError(f"{teacher.name} is not a shipped teacher: pass its integer h_s with --integer-hs")
    em = EntropyModels(teacher, integer_hs)
    halo = receptive_halo(cfg)
    if tile - 2 * halo < 1:
        raise LicError(f"--tile {tile} leaves no core inside this student's halo of {halo} latents")
    scale = model.output_scale()

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the package is an ordinary folder
    try:
        export_qonnx(model, tile, tmp / STUDENT_QONNX)
        _export_dynamic_qcdq(model, tile, tmp / STUDENT_ONNX)
        np.savez_compressed(tmp / ENTROPY_TABLES, **entropy_tables(teacher.model))
        (tmp / INTEGER_HS).write_bytes(integer_hs.to_bytes())
        shutil.copyfile(student_path, tmp / QUANT_STUDENT)
        checks = verify(model, qcfg, tmp / STUDENT_QONNX, tmp / STUDENT_ONNX, tile, scale)
        manifest = {
            "format": PACKAGE_FORMAT, "name": name or out_dir.name,
            "file_fingerprint": em.fingerprint.hex(), "teacher_fingerprint": teacher.fingerprint.hex(),
            "teacher": teacher.name, "quality": teacher.quality,
            "integer_hs_fingerprint": integer_hs.fingerprint.hex(),
            "legacy_file_fingerprints": legacy_file_fingerprints(em),
            "latent_channels": cfg.latent_channels, "upscale": cfg.scale, "spatial_multiple": SPATIAL_MULTIPLE,
            "tile": tile, "halo": halo, "output_scale": scale,
            "input_bits": qcfg.input_bits, "output_bits": qcfg.output_bits,
            "student": {"config": cfg.to_dict(), "quant_config": qcfg.to_dict(),
                        "kmac_per_pixel": round(kmac_per_pixel(model), 3),
                        "parameters": count_parameters(model)},
            "verification": checks, "created_by": command_line(),
            "files": {f.name: sha256_file(f) for f in sorted(tmp.iterdir())},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if sign_key is not None:
            sign_manifest(tmp / MANIFEST, sign_key)
        package = DecoderPackage.load(tmp)
        link_shipped_files(tmp, out_dir, {QUANT_STUDENT: student_path, INTEGER_HS: shipped_hs_path})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    package.root = out_dir
    return package


def link_shipped_files(package_dir: Path, final_dir: Path, sources: dict[str, Path | None]) -> list[str]:
    """A package shipped in the repository (host/decoders/) refers to the shipped files it was made
    from (training/students/, training/teachers/) by a relative link rather than holding a second copy
    of them: one copy of every shipped file. Packages anywhere else hold plain files, so they can be
    moved. A link is made only where the bytes are the same (the
    manifest's checksums hold either way); copying the package (scp -r, `lic hw`'s copytree) follows
    the links, so a board or a build folder gets plain files. `package_dir` is the folder being
    written, `final_dir` where it will be renamed to (the links are relative to it)."""
    final_dir = Path(final_dir).resolve()
    linked = []
    for name, src in sources.items():
        if src is None:
            continue
        src = Path(src).resolve()
        if not any(src.is_relative_to(d) for d in SHIPPED_DIRS) or not final_dir.is_relative_to(SHIPPED_PACKAGES):
            continue
        dst = package_dir / name
        if dst.is_file() and not dst.is_symlink() and dst.read_bytes() == src.read_bytes():
            dst.unlink()
            dst.symlink_to(os.path.relpath(src, final_dir))
            linked.append(name)
    return linked


def legacy_file_fingerprints(em) -> list[str]:
    """What files of earlier releases carry for this package's decoding contract (the shipped
    manifest's record of them; none for a teacher that was never shipped)."""
    entry = next((e for e in read_manifest() if e.get("integer_hs_file_fingerprint") == em.fingerprint.hex()), {})
    return entry.get("legacy_file_fingerprints", [])


def _export_dynamic_qcdq(model, tile: int, path: Path) -> None:
    """QCDQ ONNX whose height and width are free, so onnxruntime decodes a whole frame in one call."""
    free = {2: "height", 3: "width"}
    export_qcdq_onnx(model, tile, path, input_names=["y_hat"], output_names=["pixels"],
                     dynamic_axes={"y_hat": free, "pixels": free})


def run(args) -> int:
    package = export_package(args.student, args.output, teacher_spec=args.teacher, integer_hs_path=args.integer_hs,
                             tile=args.tile, name=args.name, sign_key=args.sign_key)
    m = package.manifest
    print(f"{args.output}: decoder package for files {m['file_fingerprint']} ({m['teacher']} + integer h_s); "
          f"{m['student']['kmac_per_pixel']} kMAC/px, tile {m['tile']}, halo {m['halo']}; "
          f"QONNX == Brevitas, onnxruntime within {m['verification']['onnxruntime_vs_brevitas_max_lsb']} LSB"
          + (f"; signed ({SIGNATURE})" if args.sign_key else ""))
    return 0
