"""The deployable decoder package: one folder with everything the board needs to decode .lic files
of one encoder, and nothing that needs torch.

    manifest.json         format, fingerprints, geometry, output scale, file checksums, provenance
    entropy_tables.npz    quantised CDFs of the EntropyBottleneck (z) and GaussianConditional (y)
    integer_hs.npz        the integer hyper-decoder (host/integer_hyper.py)
    student.onnx          the quantised student, QCDQ ONNX, any input size (onnxruntime backend)
    student.qonnx.onnx    the same network as QONNX for one square tile, FINN's input (hls/)
    quant_student.pt      the Brevitas export it came from (torch backend only; optional on a board)

Written by `lic export` (export/package.py); read here. A package decodes exactly the files whose
.lic fingerprint equals manifest["file_fingerprint"] (teacher + integer h_s, format version 2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.integer_hyper import IntegerHyperSynthesis
from host.rans import CdfTable
from lic.errors import LicError

PACKAGE_FORMAT = "lic-decoder-package-v1"
MANIFEST = "manifest.json"
ENTROPY_TABLES = "entropy_tables.npz"
INTEGER_HS = "integer_hs.npz"
STUDENT_ONNX = "student.onnx"
STUDENT_QONNX = "student.qonnx.onnx"
QUANT_STUDENT = "quant_student.pt"
OPTIONAL_FILES = {QUANT_STUDENT}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class DecoderPackage:
    root: Path
    manifest: dict
    z_table: CdfTable
    y_table: CdfTable
    integer_hs: IntegerHyperSynthesis

    @property
    def file_fingerprint(self) -> bytes:
        return bytes.fromhex(self.manifest["file_fingerprint"])

    @property
    def latent_channels(self) -> int:
        return int(self.manifest["latent_channels"])

    @property
    def upscale(self) -> int:
        """Output pixels per latent, per axis (16 for four x2 stages)."""
        return int(self.manifest["upscale"])

    @property
    def spatial_multiple(self) -> int:
        return int(self.manifest["spatial_multiple"])

    @property
    def halo(self) -> int:
        return int(self.manifest["halo"])

    @property
    def tile(self) -> int:
        """Latent size of the square tile the QONNX (and so the accelerator) is built for."""
        return int(self.manifest["tile"])

    @property
    def output_scale(self) -> float:
        return float(self.manifest["output_scale"])

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.root.name)

    def path(self, filename: str) -> Path:
        p = self.root / filename
        if not p.is_file():
            raise LicError(f"decoder package {self.root} has no {filename}"
                           + (" (the torch backend needs it; re-run `lic export`)" if filename in OPTIONAL_FILES else ""))
        return p

    @classmethod
    def load(cls, root: Path | str, verify: bool = True) -> "DecoderPackage":
        root = Path(root)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise LicError(f"{root}: not a decoder package (no {MANIFEST}); make one with `lic export`")
        try:
            manifest = json.loads(mpath.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise LicError(f"{mpath}: not valid JSON ({e})") from None
        if manifest.get("format") != PACKAGE_FORMAT:
            raise LicError(f"{root}: package format {manifest.get('format')!r}, this runtime reads {PACKAGE_FORMAT}")
        if verify:
            for name, digest in manifest.get("files", {}).items():
                p = root / name
                if not p.is_file():
                    if name in OPTIONAL_FILES:
                        continue
                    raise LicError(f"decoder package {root} is missing {name}")
                if sha256_file(p) != digest:
                    raise LicError(f"{p} does not match the checksum in {MANIFEST}: the package is damaged")
        try:
            with np.load(root / ENTROPY_TABLES, allow_pickle=False) as t:
                z_table = CdfTable(t["z_cdf"], t["z_cdf_length"], t["z_offset"])
                y_table = CdfTable(t["y_cdf"], t["y_cdf_length"], t["y_offset"])
        except LicError:
            raise
        except Exception as e:
            raise LicError(f"{root / ENTROPY_TABLES}: cannot read entropy tables ({type(e).__name__})") from None
        integer_hs = IntegerHyperSynthesis.load(root / INTEGER_HS)
        return cls(root, manifest, z_table, y_table, integer_hs)
