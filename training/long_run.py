"""Keeping the long background run (training/recipes/long_run.sh) across machines.

The run is a list of phases (float student, then QAT passes, ...); phase NAME trains in RUNS/q3-NAME
and exports RUNS/NAME.pt, or, for a phase that measures instead of training (a milestone's verdict,
bench/milestone.py) or one a verdict skipped, writes RUNS/NAME.json. The committed folder KEEP holds
what a fresh machine needs to go on, each file replacing the last, and no more (the repository travels
to a GPU machine in 64 MiB beside the sprint's photos): the current phase's checkpoint and log (not an
encoder's, ~19 MB: that short phase restarts instead), the exports of the phases marked NAME+LATER
until phase LATER has finished (a float student later QAT phases take as --student) and of those
marked NAME+ for good (a candidate to ship from), the newest finished phase's export (the next one's
--init), every NAME.json (a few hundred bytes each), and progress.json (phase, step, core-hours per
phase and in all, the last logged figures, the machine). Checkpoints and exports are committed packed
(training/packed_file.py, NAME.pt.xz: ~30% smaller); restore also takes the plain NAME.pt of older
commits.

    python -m training.long_run save|status|restore|drop-checkpoint RUNS KEEP PHASE[+[LATER]]...

drop-checkpoint takes the checkpoint back out of KEEP after a save (long_run.sh --save does, when the
tracked files would leave the GPU sprint too little room: training/recipes/gpu_sprint.py room), and
progress.json says the phase restarts on a fresh machine.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from lic.errors import LicError
from training import packed_file
from training.target_cache import builds_in

RUN_PREFIX = "q3-"
CHECKPOINT_LIMIT = 8 * 2**20


def _checkpoint_summary(run: Path) -> dict:
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    args = ck.get("args", {})
    threads = int(args.get("threads") or 1) if str(args.get("threads")) != "None" else 1
    last = None
    log = run / "log.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        last = json.loads(lines[-1]) if lines else None
    steps = int(args["steps"]) if "steps" in args else None  # an encoder's checkpoint does not record its own
    return {"step": ck["step"], "steps": steps, "elapsed_s": round(ck["elapsed_s"], 1),
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


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _keep(src: Path, keep: Path) -> None:
    """Commit `src` into `keep`: a torch file packed (replacing a plain copy an older commit left), the rest as is."""
    if src.suffix == ".pt":
        packed_file.pack(src, keep / packed_file.packed_name(src.name))
        (keep / src.name).unlink(missing_ok=True)
    else:
        _copy(src, keep / src.name)


def _drop(keep: Path, name: str) -> None:
    (keep / name).unlink(missing_ok=True)
    (keep / packed_file.packed_name(name)).unlink(missing_ok=True)


def _held(keep: Path, name: str) -> bool:
    """Does `keep` hold `name`, packed or plain?"""
    return (keep / packed_file.packed_name(name)).is_file() or (keep / name).is_file()


def _bring_back(keep: Path, name: str, dst: Path) -> bool:
    """Restore `name` from `keep` to `dst`, packed or plain; False if `keep` holds neither."""
    if (keep / packed_file.packed_name(name)).is_file():
        packed_file.unpack(keep / packed_file.packed_name(name), dst)
    elif (keep / name).is_file():
        _copy(keep / name, dst)
    else:
        return False
    return True


def _exports(name: str) -> tuple[str, str]:
    return f"{name}.pt", f"{name}.provenance.json"


def _result(name: str) -> str:
    return f"{name}.json"


def _progress(keep: Path) -> dict:
    path = keep / "progress.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _finished(runs: Path, phases: list[str]) -> list[str]:
    """Phases whose export or result exists, or a later phase's does (an export replaced by the next one's)."""
    last = max((i for i, p in enumerate(phases) if (runs / f"{p}.pt").is_file() or (runs / _result(p)).is_file()),
               default=-1)
    return phases[:last + 1]


def _current(runs: Path, phases: list[str]) -> tuple[list[str], str | None]:
    """(the finished phases, the first unfinished one or None)."""
    done = _finished(runs, phases)
    return done, phases[len(done)] if len(done) < len(phases) else None


def _split(phases: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """Phase names, and the phases whose export is kept: NAME+ for good (a result to ship from),
    NAME+LATER until phase LATER has finished (the export later phases take as --student or --init)."""
    names, kept = [], {}
    for p in phases:
        name, plus, until = p.partition("+")
        names.append(name)
        if plus:
            kept[name] = until or None
    return names, kept


def _kept_exports(runs: Path, done: list[str], kept: dict[str, str | None]) -> set[str]:
    """The marked exports still needed, and the newest finished export (the next phase's --init)."""
    wanted = {p for p, until in kept.items() if p in done and (until is None or until not in done)}
    newest = next((p for p in reversed(done) if (runs / f"{p}.pt").is_file()), None)
    return wanted | ({newest} if newest else set())


def save(runs: Path, keep: Path, phases: list[str]) -> dict:
    phases, kept = _split(phases)
    done, current = _current(runs, phases)
    run = runs / f"{RUN_PREFIX}{current}" if current else None
    if not done and not (run and (run / "checkpoint.pt").is_file()):
        raise LicError(f"nothing to save: no checkpoint in {run} and no finished phase in {runs}")
    keep.mkdir(parents=True, exist_ok=True)
    progress = _progress(keep)
    per_phase = progress.get("phases", {})
    for p in phases:
        if (runs / f"{RUN_PREFIX}{p}" / "checkpoint.pt").is_file():
            per_phase[p] = {k: v for k, v in _checkpoint_summary(runs / f"{RUN_PREFIX}{p}").items()
                            if k in ("step", "steps", "core_hours")}
    wanted = _kept_exports(runs, done, kept)
    for p in phases:
        for name in _exports(p):
            if p in wanted and (runs / name).is_file():
                _keep(runs / name, keep)
            elif p not in wanted:
                _drop(keep, name)
        if (runs / _result(p)).is_file():
            _copy(runs / _result(p), keep / _result(p))
    checkpoint = run / "checkpoint.pt" if run is not None else None
    summary = _checkpoint_summary(run) if checkpoint is not None and checkpoint.is_file() else {}
    if summary and checkpoint.stat().st_size > CHECKPOINT_LIMIT:
        # an encoder's checkpoint (g_a and its Adam state, ~19 MB) would crowd out the GPU sprint's
        # photos in the 64 MiB the repository travels in; the phase is short and restarts instead
        summary["checkpoint_not_kept"] = (f"{checkpoint.stat().st_size / 2**20:.1f} MiB, over the "
                                          f"{CHECKPOINT_LIMIT >> 20} MiB a commit may add: on a fresh machine "
                                          f"this phase restarts")
    keep_checkpoint = bool(summary) and "checkpoint_not_kept" not in summary
    for name in ("checkpoint.pt", "log.jsonl"):
        if not keep_checkpoint:
            _drop(keep, name)
        elif (run / name).is_file():
            _keep(run / name, keep)
    progress = {"phase": current or "finished", "finished": done, **summary, "phases": per_phase,
                "core_hours_total": round(sum(v["core_hours"] for v in per_phase.values()), 2),
                "saved": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "hardware": cpu_name(),
                "command": "training/recipes/long_run.sh"}
    (keep / "progress.json").write_text(json.dumps(progress, indent=2) + "\n")
    return progress


def drop_checkpoint(runs: Path, keep: Path, phases: list[str]) -> dict:
    progress = _progress(keep)
    if not _held(keep, "checkpoint.pt"):
        return progress
    for name in ("checkpoint.pt", "log.jsonl"):
        _drop(keep, name)
    progress["checkpoint_not_kept"] = ("the tracked files would leave the GPU sprint too little room "
                                       "(training/recipes/gpu_sprint.py room): on a fresh machine this phase restarts")
    (keep / "progress.json").write_text(json.dumps(progress, indent=2) + "\n")
    return progress


def restore(runs: Path, keep: Path, phases: list[str]) -> list[str]:
    """Bring back what build/ lost: the finished exports and the current phase's checkpoint."""
    phases, _ = _split(phases)
    restored = []
    runs.mkdir(parents=True, exist_ok=True)
    for p in phases:
        for name in (*_exports(p), _result(p)):
            if not (runs / name).is_file() and _bring_back(keep, name, runs / name):
                restored.append(name)
    current = _progress(keep).get("phase")
    run = runs / f"{RUN_PREFIX}{current}"
    if current in phases and _held(keep, "checkpoint.pt") and not (run / "checkpoint.pt").is_file():
        run.mkdir(parents=True, exist_ok=True)
        for name in ("checkpoint.pt", "log.jsonl"):
            if _bring_back(keep, name, run / name):
                restored.append(f"{run.name}/{name}")
    return restored


def status(runs: Path, keep: Path, phases: list[str]) -> dict | None:
    phases, _ = _split(phases)
    done, current = _current(runs, phases)
    if current and (runs / f"{RUN_PREFIX}{current}" / "checkpoint.pt").is_file():
        return {"from": str(runs), "phase": current, "finished": done,
                **_checkpoint_summary(runs / f"{RUN_PREFIX}{current}")}
    building = builds_in(runs)  # a phase building its target cache first has no checkpoint meanwhile
    if building:  # build/ knows more than the last --save
        return {"from": str(runs), "phase": current, "finished": done, "building": building}
    progress = _progress(keep)
    return {"from": str(keep), **progress} if progress else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"save": save, "status": status, "restore": restore, "drop-checkpoint": drop_checkpoint}
    if len(argv) < 4 or argv[0] not in commands:
        print(f"usage: python -m training.long_run {'|'.join(commands)} RUNS KEEP PHASE[+[LATER]]...", file=sys.stderr)
        return 2
    command, runs, keep, phases = argv[0], Path(argv[1]), Path(argv[2]), argv[3:]
    try:
        out = commands[command](runs, keep, phases)
    except LicError as e:
        print(f"long_run: {e}", file=sys.stderr)
        return 1
    if command == "restore":
        if out:
            print(f"long_run: restored {', '.join(out)} from {keep}", file=sys.stderr)
    else:
        print(json.dumps(out, indent=2) if out else "long_run: no checkpoint yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
