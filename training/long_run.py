"""Keeping the long background run (training/recipes/long_run.sh) across machines.

`save RUN KEEP` copies RUN's checkpoint and log into the committed folder KEEP, replacing what was
there (one checkpoint, never a pile), with progress.json: step, core-hours, the last logged figures
and the machine. `status RUN KEEP` prints the same for the newer of the two."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from lic.errors import LicError


def _checkpoint_summary(run: Path) -> dict:
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    args = ck.get("args", {})
    threads = int(args.get("threads") or 1) if str(args.get("threads")) != "None" else 1
    last = None
    log = run / "log.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        last = json.loads(lines[-1]) if lines else None
    return {"step": ck["step"], "steps": int(args.get("steps", 0)), "elapsed_s": round(ck["elapsed_s"], 1),
            # one torch thread, pinned to one core: wall time is core time
            "core_hours": round(ck["elapsed_s"] * threads / 3600, 2), "threads": threads,
            "kind": ck.get("setup", {}).get("kind"), "last_log": last}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + ", one core"
    except OSError:
        pass
    return f"{platform.machine()} CPU, one core"


def save(run: Path, keep: Path) -> dict:
    if not (run / "checkpoint.pt").is_file():
        raise LicError(f"no checkpoint in {run}")
    summary = _checkpoint_summary(run)
    keep.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint.pt", "log.jsonl"):
        if (run / name).is_file():
            tmp = keep / (name + ".tmp")
            shutil.copyfile(run / name, tmp)
            tmp.replace(keep / name)
    progress = {**summary, "saved": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "hardware": cpu_name(),
                "command": "training/recipes/long_run.sh"}
    (keep / "progress.json").write_text(json.dumps(progress, indent=2) + "\n")
    return progress


def status(run: Path, keep: Path) -> dict | None:
    for folder in (run, keep):
        if (folder / "checkpoint.pt").is_file():
            return {"from": str(folder), **_checkpoint_summary(folder)}
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] not in ("save", "status"):
        print("usage: python -m training.long_run save|status RUN_DIR KEEP_DIR", file=sys.stderr)
        return 2
    try:
        out = (save if argv[0] == "save" else status)(Path(argv[1]), Path(argv[2]))
    except LicError as e:
        print(f"long_run: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2) if out else "long_run: no checkpoint yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
