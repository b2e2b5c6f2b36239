"""`lic track`: experiment tracking for training runs, off unless asked for.

Every training command (`lic train-teacher`, `distill`, `qat`, `distill-hyper`) already writes one
JSON record per logged step to RUN_DIR/log.jsonl. This turns those records into TensorBoard event
files (through tensorboardX, which needs no TensorFlow), one TensorBoard run per run folder, so
`tensorboard --logdir OUT` compares runs. Nothing is uploaded anywhere. Rerun it to pick up the steps
a running training has logged since; each export rewrites its run's events from scratch.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from lic.errors import LicError

LOG = "log.jsonl"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders holding log.jsonl")
    p.add_argument("-o", "--out", type=Path, default=Path("build/tensorboard"), metavar="DIR",
                   help="TensorBoard log folder (default build/tensorboard): `tensorboard --logdir DIR`")


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / LOG
    if not path.is_file():
        raise LicError(f"no {LOG} in {run_dir}: not a training run folder")
    records, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines):
                break  # a record being written as we read: the next export picks it up
            raise LicError(f"{path}:{i}: not a JSON record") from None
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
    return records


def export_tensorboard(run_dir: Path, out: Path) -> tuple[Path, int]:
    """Scalars of every numeric field of run_dir/log.jsonl -> out/<run name>/ event file."""
    from tensorboardX import SummaryWriter  # why: opt-in, and it loads torch (~3 s): not for `lic track --help`

    records = read_log(run_dir)
    target = out / run_dir.resolve().name
    if target.exists():
        shutil.rmtree(target)
    with SummaryWriter(str(target)) as w:
        for rec in records:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    w.add_scalar(k, v, rec["step"])
    return target, len(records)


def run(args) -> int:
    for run_dir in args.runs:
        target, n = export_tensorboard(run_dir, args.out)
        print(f"{run_dir}: {n} records -> {target}")
    print(f"view: tensorboard --logdir {args.out}  (pip install tensorboard; not needed to write the files)")
    return 0
