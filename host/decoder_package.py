"""The deployable decoder package: one folder with everything the board needs to decode .lic files
of one encoder, and nothing that needs torch.

    manifest.json         format, fingerprints, geometry, output scale, file checksums, provenance
    entropy_tables.npz    quantised CDFs of the EntropyBottleneck (z) and GaussianConditional (y)
    integer_hs.npz        the integer hyper-decoder (host/integer_hyper.py)
    student.onnx          the quantised student, QCDQ ONNX, any input size (onnxruntime backend)
    student.qonnx.onnx    the same network as QONNX for one square tile, FINN's input (hls/)
    quant_student.pt      the Brevitas export it came from (torch backend only; optional on a board)

Written by `lic export` (export/package.py); read here. A package decodes exactly the files whose
.lic fingerprint is its decoding contract, manifest["file_fingerprint"] (teacher + integer h_s,
format versions 2 and 3, whichever encoder of that teacher wrote them), or one of
manifest["legacy_file_fingerprints"]: the fingerprints files of earlier releases carry for the same
contract (they named the tuned encoder that wrote them; docs/FORMAT.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from host.integer_hyper import IntegerHyperSynthesis
from host.package_signature import trusted_keys, verify_manifest
from host.rans import CdfTable
from lic.errors import LicError

PACKAGE_FORMAT = "lic-decoder-package-v1"
DEFAULT_QUALITY = 3  # the rate point whose package ships in host/decoders/ and that commands use by default
MANIFEST = "manifest.json"
ENTROPY_TABLES = "entropy_tables.npz"
INTEGER_HS = "integer_hs.npz"
STUDENT_ONNX = "student.onnx"
STUDENT_QONNX = "student.qonnx.onnx"
QUANT_STUDENT = "quant_student.pt"
OPTIONAL_FILES = {QUANT_STUDENT}
MAX_MANIFEST_BYTES = 1 << 20
REQUIRED_FILES = {ENTROPY_TABLES, INTEGER_HS, STUDENT_ONNX, STUDENT_QONNX}
# manifest key -> (type, smallest, largest): a package is untrusted input, so geometry that sizes
# buffers is checked before anything uses it
_GEOMETRY = {"latent_channels": (int, 1, 4096), "upscale": (int, 1, 64), "spatial_multiple": (int, 1, 1024),
             "tile": (int, 1, 1024), "halo": (int, 0, 64), "input_bits": (int, 2, 16), "output_bits": (int, 2, 16),
             "output_scale": (float, 2.0 ** -16, 1.0)}


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
        """The decoding contract of the files this package decodes (what new files carry)."""
        return bytes.fromhex(self.manifest["file_fingerprint"])

    def decodes(self, fingerprint: bytes) -> bool:
        """Whether a .lic file of this fingerprint is one this package decodes."""
        return fingerprint == self.file_fingerprint or \
            fingerprint.hex() in self.manifest.get("legacy_file_fingerprints", ())

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
    def input_bits(self) -> int:
        """Width of the student's integer input (y_hat is clipped to it) and of the accelerator's input stream."""
        return int(self.manifest["input_bits"])

    @property
    def output_bits(self) -> int:
        """Width of the student's integer output pixels and of the accelerator's output stream."""
        return int(self.manifest["output_bits"])

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
    def load(cls, root: Path | str, verify: bool = True, keys: list[Path] | tuple = ()) -> "DecoderPackage":
        """Read a package, treating it as untrusted: manifest fields typed and in range, every file's
        checksum verified, and the tables and integer h_s checked against the manifest and each other.
        With trusted keys (`keys`, and LIC_TRUSTED_KEYS), the manifest must carry a signature by one
        of them (host/package_signature.py)."""
        root = Path(root)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise LicError(f"{root}: not a decoder package (no {MANIFEST}); make one with `lic export`")
        try:
            size = mpath.stat().st_size
            if size > MAX_MANIFEST_BYTES:  # a manifest is ~3 KB; never read a huge one whole
                raise LicError(f"{mpath}: {size} bytes, too large to be a manifest")
            raw = mpath.read_bytes()
        except OSError as e:
            raise LicError(f"cannot read {mpath}: {e.strerror or e}") from None
        keys = trusted_keys(keys)
        if keys:
            verify_manifest(raw, root, keys)  # before anything in the manifest is believed
        try:
            manifest = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LicError(f"{mpath}: not valid JSON ({e})") from None
        except RecursionError:
            raise LicError(f"{mpath}: JSON nested too deeply to be a manifest") from None
        if not isinstance(manifest, dict) or manifest.get("format") != PACKAGE_FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else None
            raise LicError(f"{root}: package format {got!r}, this runtime reads {PACKAGE_FORMAT}")
        _check_manifest(manifest, mpath)
        if verify:
            for name, digest in manifest["files"].items():
                p = root / name
                if not p.is_file():
                    if name in OPTIONAL_FILES:
                        continue
                    if p.is_symlink():  # a shipped package copied without following its links
                        raise LicError(f"decoder package {root}: {name} links to {p.readlink()}, which is not "
                                       f"there; copy packages with their links followed (cp -rL, scp -r)")
                    raise LicError(f"decoder package {root} is missing {name}")
                if sha256_file(p) != digest:
                    raise LicError(f"{p} does not match the checksum in {MANIFEST}: the package is damaged")
        try:
            with np.load(root / ENTROPY_TABLES, allow_pickle=False) as t:
                z_table = CdfTable(t["z_cdf"], t["z_cdf_length"], t["z_offset"], name=f"{root / ENTROPY_TABLES} z")
                y_table = CdfTable(t["y_cdf"], t["y_cdf_length"], t["y_offset"], name=f"{root / ENTROPY_TABLES} y")
        except LicError:
            raise
        except Exception as e:
            raise LicError(f"{root / ENTROPY_TABLES}: cannot read entropy tables ({type(e).__name__})") from None
        integer_hs = IntegerHyperSynthesis.load(root / INTEGER_HS)
        package = cls(root, manifest, z_table, y_table, integer_hs)
        package._check_parts()
        return package

    def _check_parts(self) -> None:
        """The files agree with the manifest and with each other, so nothing downstream indexes
        past a table or feeds a network the wrong shape."""
        where = f"decoder package {self.root}"
        hs, m = self.integer_hs, self.manifest
        if hs.fingerprint.hex() != m.get("integer_hs_fingerprint", hs.fingerprint.hex()):
            raise LicError(f"{where}: {INTEGER_HS} is not the integer h_s the manifest names")
        if hs.in_channels != len(self.z_table):
            raise LicError(f"{where}: the integer h_s reads {hs.in_channels} z channels, the z table has "
                           f"{len(self.z_table)}")
        if hs.out_channels != self.latent_channels:
            raise LicError(f"{where}: the integer h_s gives {hs.out_channels} channels, the manifest says "
                           f"latent_channels {self.latent_channels}")
        if hs.max_index >= len(self.y_table):
            raise LicError(f"{where}: the integer h_s gives scale indexes up to {hs.max_index}, the y table has "
                           f"{len(self.y_table)} rows")
        # offsets a real export writes (CompressAI's update()): each value's symbol lies inside its row,
        # and the Gaussian y rows are symmetric about zero (offset -c for 2c + 1 values, length 2c + 3);
        # an edited offset shifts every decoded latent and would decode to wrong pixels silently
        for name, t in (("z", self.z_table), ("y", self.y_table)):
            lengths, offsets = t.cdf_length.astype(np.int64), t.offset.astype(np.int64)
            if np.any(offsets > 0) or np.any(offsets < -(lengths - 2)):
                raise LicError(f"{where}: {ENTROPY_TABLES} {name}_offset has values outside its rows "
                               f"(an edited table: offsets must lie in -(length - 2)..0)")
        bad = np.flatnonzero(self.y_table.offset.astype(np.int64) != -((self.y_table.cdf_length.astype(np.int64) - 3) // 2))
        if bad.size:
            raise LicError(f"{where}: {ENTROPY_TABLES} y_offset row {int(bad[0])} is not centred on zero "
                           f"(a Gaussian table's offset is -(length - 3) / 2): an edited table")
        if self.spatial_multiple != 4 * self.upscale:
            raise LicError(f"{where}: spatial_multiple {self.spatial_multiple} must be 4 x upscale "
                           f"({self.upscale}): z is a quarter of y's resolution")
        if 2 * self.halo >= self.tile:
            raise LicError(f"{where}: tile {self.tile} has no core inside its halo of {self.halo}")


def is_fingerprint(v) -> bool:
    return isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdef" for c in v)


def _check_manifest(manifest: dict, mpath: Path) -> None:
    if not is_fingerprint(manifest.get("file_fingerprint")):
        raise LicError(f"{mpath}: file_fingerprint must be 32 hex digits")
    legacy = manifest.get("legacy_file_fingerprints", [])
    if not isinstance(legacy, list) or len(legacy) > 1024 or not all(map(is_fingerprint, legacy)):
        raise LicError(f"{mpath}: legacy_file_fingerprints must be a list of fingerprints (32 hex digits)")
    for key, (kind, lo, hi) in _GEOMETRY.items():
        v = manifest.get(key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or isinstance(v, int))
        if not ok or not lo <= v <= hi:
            raise LicError(f"{mpath}: {key} must be a {kind.__name__} in {lo}..{hi}, not {v!r}")
    # what an export can produce: the student's integer outputs (at most 16 bits) times a power of two
    # make pixels in [0, 1]; anything else is an edited package, which the checksums cannot catch
    if math.frexp(manifest["output_scale"])[0] != 0.5:
        raise LicError(f"{mpath}: output_scale must be a power of two, not {manifest['output_scale']!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise LicError(f"{mpath}: 'files' must map file names to SHA-256 checksums")
    unknown = set(files) - REQUIRED_FILES - OPTIONAL_FILES
    if unknown:  # also what keeps a name like ../../x from reaching the file system
        raise LicError(f"{mpath}: unknown files {', '.join(sorted(map(repr, unknown)))}")
    missing = REQUIRED_FILES - set(files)
    if missing:
        raise LicError(f"{mpath}: no checksum for {', '.join(sorted(missing))}: the package cannot be verified")
