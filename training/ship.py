"""Write training/teachers/teachers.json from exported teachers: quality, lambda, file, fingerprint,
and, where training/teachers/integer_hs_qN.npz exists, the integer h_s and the fingerprint that
format-version-2 and -3 files made with it carry (their decoding contract: docs/FORMAT.md); where
training/teachers/encoder_qN.pt exists (`lic tune-encoder --export`), the tuned encoder and its
fingerprint (its files carry the same contract). The fingerprints that files of earlier releases
carry for the same contract (`legacy_file_fingerprints`) are kept from the manifest being replaced.
Then it stores every teacher but the default one (q3) as a lossless delta against it, and the default
one as a delta against nothing (training/teacher_delta.py), which keeps the repository small enough
to travel.

    python -m training.ship training/teachers/teacher_q*.pt

The decoder finds the teacher that wrote a .lic file through this manifest, and loading a shipped
teacher checks its fingerprint against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from host.integer_hyper import IntegerHyperSynthesis
from lic.errors import LicError
from training import teacher_delta
from training.loop import atomic_save, read_torch_file
from training.teacher import (COMPRESSAI_LAMBDAS, DEFAULT_QUALITY, MANIFEST, TEACHERS_DIR, from_state_dict,
                              from_tuned_encoder, load_state_dict_file, read_manifest, state_dict_of)
from training.teacher_codec import EntropyModels


def manifest_entry(path: Path) -> dict:
    prov = json.loads(path.with_suffix(".provenance.json").read_text())
    quality = next((q for q, lm in COMPRESSAI_LAMBDAS.items() if abs(lm - prov["lambda"]) < 1e-9), None)
    if quality is None:
        raise SystemExit(f"{path}: lambda {prov['lambda']} is not one of CompressAI's quality lambdas")
    t = from_state_dict(load_state_dict_file(path), name=path.name)
    entry = {"quality": quality, "lambda": prov["lambda"], "file": path.name, "fingerprint": t.fingerprint.hex()}
    hs_path = path.with_name(f"integer_hs_q{quality}.npz")  # from `lic distill-hyper --export`, if made
    if hs_path.is_file():
        hs = IntegerHyperSynthesis.load(hs_path)
        if hs.meta.get("teacher_fingerprint") != entry["fingerprint"]:
            raise SystemExit(f"{hs_path} was trained against another teacher")
        entry["integer_hs"] = hs_path.name
        entry["integer_hs_file_fingerprint"] = EntropyModels(t, hs).fingerprint.hex()
        encoder_path = path.with_name(f"encoder_q{quality}.pt")
        if encoder_path.is_file():
            tuned = from_tuned_encoder(read_torch_file(encoder_path, "tuned encoder"), encoder_path.name)
            if tuned.decoder_fingerprint != t.fingerprint:
                raise SystemExit(f"{encoder_path} was tuned from another teacher")
            entry["tuned_encoder"] = encoder_path.name
            entry["tuned_encoder_fingerprint"] = tuned.fingerprint.hex()
    old = next((e for e in read_manifest() if e["quality"] == quality), {}) if MANIFEST.is_file() else {}
    if old.get("integer_hs_file_fingerprint") == entry.get("integer_hs_file_fingerprint") and "legacy_file_fingerprints" in old:
        entry["legacy_file_fingerprints"] = old["legacy_file_fingerprints"]
    return entry


def store_as_deltas(paths: list[Path]) -> None:
    """Rewrite each full teacher file as its delta against the base, and the base as a delta against
    nothing (its byte planes); lossless (checked)."""
    base = TEACHERS_DIR / f"teacher_q{DEFAULT_QUALITY}.pt"
    base_obj = read_torch_file(base, "base teacher") if base.is_file() else None
    if base_obj is None:
        return
    base_sd = state_dict_of(base_obj, base)
    for path in [base, *(p for p in paths if p != base)]:
        obj = base_obj if path == base else read_torch_file(path, "teacher")
        if teacher_delta.is_delta(obj):
            continue
        sd = state_dict_of(obj, path)
        against = None if path == base else base_sd
        delta = teacher_delta.pack(sd, against, base.name)
        teacher_delta.unpack(delta, against, path.name)  # raises unless it gives back exactly `sd`
        before = path.stat().st_size
        atomic_save(delta, path)
        print(f"{path.name}: stored as a delta against {'nothing' if path == base else base.name}, "
              f"{before / 1e6:.1f} -> {path.stat().st_size / 1e6:.1f} MB")


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv]
    outside = [p for p in paths if p.parent != TEACHERS_DIR]
    if not paths or outside:
        raise SystemExit(f"usage: python -m training.ship {TEACHERS_DIR}/teacher_qN.pt ...")
    try:
        entries = sorted((manifest_entry(p) for p in paths), key=lambda e: e["quality"])
        store_as_deltas(paths)
    except LicError as e:
        raise SystemExit(f"training.ship: {e}") from None
    MANIFEST.write_text(json.dumps({"teachers": entries}, indent=2) + "\n")
    print(f"wrote {MANIFEST} ({len(entries)} teachers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
