"""Write training/students/students.json from shipped students: for each rate point, the float
student (`lic distill --export`) and the quantised one (`lic qat --export`) of its teacher.

    python -m quantize.ship_students training/students/student_q*.pt

Each argument is a quantised student, student_qN.pt; its float student is student_qN.float.pt.
The quality is the shipped teacher whose fingerprint both carry. `lic eval-students` reads this.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from quantize.qat import load_quant_student
from training.distill import load_float_student
from training.teacher import read_manifest

from lic.errors import LicError

STUDENTS_DIR = Path(__file__).resolve().parents[1] / "training" / "students"
STUDENTS_MANIFEST = STUDENTS_DIR / "students.json"


def read_students(path: Path = STUDENTS_MANIFEST) -> list[dict]:
    """The entries of a students manifest, their float and quant files as paths beside it."""
    if not path.is_file():
        raise LicError(f"no students manifest at {path}; train and ship students first (docs/students.md)")
    entries = json.loads(path.read_text())["students"]
    for e in entries:
        for k in ("float", "quant"):
            e[k] = path.parent / e[k]
    return entries


def entry(quant_path: Path) -> dict:
    float_path = quant_path.with_name(quant_path.stem + ".float.pt")
    _, cfg, qcfg, fp_quant = load_quant_student(quant_path)
    _, _, fp_float = load_float_student(float_path)
    if fp_quant != fp_float:
        raise SystemExit(f"{quant_path} and {float_path} were distilled from different teachers")
    quality = next((t["quality"] for t in read_manifest() if t["fingerprint"] == fp_quant.hex()), None)
    if quality is None:
        raise SystemExit(f"{quant_path}: its teacher {fp_quant.hex()} is not a shipped teacher")
    return {"quality": quality, "teacher_fingerprint": fp_quant.hex(), "float": float_path.name,
            "quant": quant_path.name, "config": cfg.to_dict(), "quant_config": qcfg.to_dict()}


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv]
    if not paths or any(p.parent != STUDENTS_DIR or p.name.endswith(".float.pt") for p in paths):
        raise SystemExit(f"usage: python -m quantize.ship_students {STUDENTS_DIR}/student_qN.pt ...")
    entries = sorted((entry(p) for p in paths), key=lambda e: e["quality"])
    STUDENTS_MANIFEST.write_text(json.dumps({"students": entries}, indent=2) + "\n")
    print(f"wrote {STUDENTS_MANIFEST} ({len(entries)} students)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
