"""training/recipes/long_run.sh's phase order and its gate, walked with commands that only write the
outputs they are asked for (the training commands themselves are tested in test_distill.py,
test_prune.py, test_encoder_tuning.py, test_target_cache.py; the verdict in test_milestone.py)."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Stands in for `lic` and `python -m bench.milestone`: records its argv, writes what it is asked to
# (--export FILE, -o DIR/manifest.json or -o VERDICT.json with the verdict the test chose).
RECORDER = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps([Path(sys.argv[0]).name] + args) + "\\n")
if "--export" in args:
    Path(args[args.index("--export") + 1]).write_bytes(b"export")
if "-o" in args:
    out = Path(args[args.index("-o") + 1])
    if out.suffix == ".json":
        out.write_text(json.dumps({{"beats": os.environ["BEATS"] == "1"}}))
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").write_text("{{}}")
"""


def _walk(tmp_path: Path, beats: bool, *options: str, ok: bool = True) -> tuple[list[list[str]], Path]:
    """Run long_run.sh in tmp_path's build and keep folders: the calls made, the runs folder."""
    for name in ("lic", "milestone"):
        tool = tmp_path / name
        tool.write_text(RECORDER.format(python=sys.executable))
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    calls, keep = tmp_path / "calls.jsonl", tmp_path / "keep"
    calls.unlink(missing_ok=True)
    keep.mkdir(exist_ok=True)
    env = {**os.environ, "LIC": str(tmp_path / "lic"), "MILESTONE": str(tmp_path / "milestone"),
           "LONG_RUN_CORE": "0", "LONG_RUN_BUILD": str(tmp_path / "build"), "LONG_RUN_KEEP": str(keep),
           "CALLS": str(calls), "BEATS": "1" if beats else "0"}
    r = subprocess.run(["bash", "training/recipes/long_run.sh", *options], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert (r.returncode == 0) == ok, r.stderr
    if ok and not options:
        assert "every phase finished" in r.stdout
    made = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return made, tmp_path / "build" / "long_run"


def _phase(call: list[str]) -> str:
    if "--run-dir" in call:
        return Path(call[call.index("--run-dir") + 1]).name.removeprefix("q3-")
    return Path(call[call.index("-o") + 1]).stem


@pytest.mark.parametrize("beats", [False, True])
def test_phases_run_in_order_and_the_gate_decides_the_refined_branch(tmp_path, beats):
    calls, runs = _walk(tmp_path, beats)
    order = [_phase(c) for c in calls]
    head = ["q3", "float", "qat", "qat2", "qat-ema", "qgate", "wide", "wqat", "wqat2", "wqat-ema", "wgate", "pruned", "pqat",
            "pqat2", "pqat-ema", "pgate"]
    kv260 = ["kpruned", "kqat", "kqat2", "kqat-ema", "kgate"]
    assert order[:len(head)] == head  # q3: the teacher-target cache, built first
    if not beats:
        assert order == head + kv260
        for skipped in ("penc", "prefined", "penc2", "pverdict", "kenc", "krefined", "kenc2", "kverdict"):
            assert "does not beat" in json.loads((runs / f"{skipped}.json").read_text())["skipped"]
        return
    # the pruned student's steps 5 and 8 come before KV260's phases (that one would ship for every board)
    assert order[len(head):] == ["penc", "cache-refined", "prefined", "penc2", "pverdict", *kv260,
                                 "kenc", "cache-refined-k", "krefined", "kenc2", "kverdict"]
    by_phase = dict(zip(order, calls))
    for x, student, cache in (("p", "pruned", "cache-refined"), ("k", "kpruned", "cache-refined-k")):
        refine = by_phase[cache]
        assert refine[refine.index("--student") + 1] == str(runs / f"{x}qat-ema.pt")
        assert refine[refine.index("--teacher") + 1] == str(runs / f"{x}enc.pt") and "--refine" in refine
        refined = by_phase[f"{x}refined"]
        assert refined[refined.index("--cache") + 1] == str(runs / cache)
        assert refined[refined.index("--student") + 1] == str(runs / f"{student}.pt")
        verdict = by_phase[f"{x}verdict"]
        assert verdict[verdict.index("--encoder") + 1] == str(runs / f"{x}enc2.pt")
        assert verdict[verdict.index("--quant") + 1] == str(runs / f"{x}refined.pt")

    # a second walk finds every phase finished and runs nothing
    assert _walk(tmp_path, beats)[0] == []


@pytest.mark.parametrize("beats", [False, True])
def test_a_fresh_machine_goes_on_from_the_committed_folder(tmp_path, beats):
    """--save, then build/ lost: the restored exports and verdicts finish every phase again, and the
    committed folder holds only the verdicts and the exports kept for good (a candidate to ship from)."""
    _walk(tmp_path, beats)
    _walk(tmp_path, beats, "--save")
    shutil.rmtree(tmp_path / "build")
    assert _walk(tmp_path, beats)[0] == []
    kept = sorted(p.name.removesuffix(".xz") for p in (tmp_path / "keep").glob("*.pt.xz"))
    # the pruned student's files went with its verdict; KV260's refined student and encoder stay if kgate beat
    assert kept == (["kenc2.pt", "kpruned.pt", "krefined.pt"] if beats else ["kpruned.pt", "kqat-ema.pt"]) \
        + ["wide.pt", "wqat-ema.pt"]


def test_an_unreadable_verdict_stops_the_run_without_skipping(tmp_path):
    calls, runs = _walk(tmp_path, False)
    for name in ("penc", "prefined", "penc2", "pverdict"):
        (runs / f"{name}.json").unlink()
    (runs / "pgate.json").write_text("{")
    _walk(tmp_path, False, ok=False)
    assert not (runs / "penc.json").exists()


@pytest.mark.parametrize("recipe", sorted(Path("training/recipes").glob("*.sh")), ids=lambda p: p.name)
def test_every_recipe_runs_as_one_block_so_an_edit_cannot_reach_a_running_copy(recipe):
    """bash reads a script as it runs: an edit during a run of hours made a recipe run text it never had.
    A recipe's body is one { ... exit; } block, which bash reads whole before running it."""
    lines = recipe.read_text().rstrip("\n").splitlines()
    start = lines.index("set -euo pipefail")
    assert lines[start + 1].startswith("{  #") and lines[-2:] == ["exit", "}"]
