"""The pinned environment is consistent: `pip check` complains about nothing but the pins that
requirements.lock's header explains (its "pip-check-ok: <package> <requirement>" lines), and every
such line is still needed."""

import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"

# pip's two kinds of complaint (pip/_internal/commands/check.py)
MISSING = re.compile(r"^(\S+) \S+ requires (.+), which is not installed\.$")
CONFLICT = re.compile(r"^(\S+) \S+ has requirement (.+), but you have \S+ \S+\.$")


def _key(package: str, requirement: str) -> tuple[str, str]:
    return canonicalize_name(package), canonicalize_name(Requirement(requirement).name)


def allowed_complaints(lock_text: str) -> dict[tuple[str, str], str]:
    """(package, required project) -> the header line, from requirements.lock's "pip-check-ok:" lines."""
    found = {}
    for line in lock_text.splitlines():
        if not line.startswith("#"):
            break
        m = re.match(r"#\s*pip-check-ok:\s*(\S+)\s+(\S+)\s*$", line)
        if m:
            found[_key(*m.groups())] = line.strip()
    return found


def pip_check_complaints(output: str) -> dict[tuple[str, str], str]:
    found = {}
    for line in output.splitlines():
        line = line.strip()
        if not line or line == "No broken requirements found.":
            continue
        m = MISSING.match(line) or CONFLICT.match(line)
        assert m, f"pip check said something this test cannot read: {line!r}"
        found[_key(*m.groups())] = line
    return found


def test_parsers_read_pips_and_the_locks_lines():
    out = ("compressai 1.2.8 requires torchvision, which is not installed.\n"
           "finn-plus 1.6.1 has requirement brevitas==0.13.0, but you have brevitas 0.13.4.\n")
    assert set(pip_check_complaints(out)) == {("compressai", "torchvision"), ("finn-plus", "brevitas")}
    header = "# Why:\n#   pip-check-ok: Finn_Plus brevitas==0.13.0\nsetuptools==80\n#   pip-check-ok: x y\n"
    assert set(allowed_complaints(header)) == {("finn-plus", "brevitas")}  # only the header counts


def test_pip_check_complains_only_about_explained_pins():
    run = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                         capture_output=True, text=True, timeout=120)
    complaints = pip_check_complaints(run.stdout + run.stderr)
    allowed = allowed_complaints(LOCK.read_text())
    unexplained = [line for key, line in complaints.items() if key not in allowed]
    assert not unexplained, ("pip check: " + "; ".join(unexplained) + " -- fix the pin, or explain it in "
                             "requirements.lock's header with a 'pip-check-ok: <package> <requirement>' line")
    stale = [line for key, line in allowed.items() if key not in complaints]
    assert not stale, "requirements.lock excuses what pip no longer complains about: " + "; ".join(stale)
