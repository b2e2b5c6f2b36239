"""ARM cycles per stage from a model of the board's core, for `lic board-rate`'s modelled estimate.

An instruction count times an assumed CPI says little about a core whose CPI can lie anywhere from
0.5 (the A9 and A53 are dual-issue) to well above 2 (cache misses). This module replaces the assumed
CPI by two models, both of the board's core and caches, neither of them a measurement:

  core      every basic block the stage executes (QEMU TCG plugin board/armhf/block_profile.c: each
            block's instructions as QEMU disassembles them, and how often it ran), priced by LLVM's
            scheduling model of the core (`llvm-mca -mcpu=cortex-a9` / `cortex-a53`: issue width,
            latencies and pipeline resources; every load hits L1, every branch is predicted).
            Cycles = sum over blocks of runs x llvm-mca's cycles per iteration of the block in a loop.
  memory    the same run's data and instruction accesses through a simulated L1 / L2 of the board's
            sizes (board.json "arm" "caches": PYNQ-Z2 per UG585, 32-byte lines, LRU), giving L1 and
            L2 misses, sequential (a prefetcher's) or not. A non-sequential miss costs an assumed
            latency, a sequential DRAM access its transfer time at the DRAM port's bandwidth
            (board.json "arm" "miss_cycles"); the cores overlap some misses with other work, so the
            stall lies between 0 and that sum.

Modelled cycles = core (+ memory stalls at the high end). Both runs are differenced (1 and 1 + K
runs of the stage) as for the instruction counts, so start-up and input loading cancel.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from board.arm_check import qemu_command, qemu_env
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
PLUGIN_SRC = REPO / "board" / "armhf" / "block_profile.c"
# llvm-mca target per Debian architecture; armhf blocks are Thumb-2 (Debian's default) or ARM
TRIPLES = {"armhf": ("thumbv7a-linux-gnueabihf", "armv7a-linux-gnueabihf"), "arm64": ("aarch64-linux-gnu",)}
MCA_ITERATIONS = 100
COVERAGE = 0.995  # blocks priced one by one until they hold this share of the instructions
_INVERSE = {"eq": "ne", "ne": "eq", "cs": "cc", "cc": "cs", "hs": "lo", "lo": "hs", "mi": "pl", "pl": "mi",
            "vs": "vc", "vc": "vs", "hi": "ls", "ls": "hi", "ge": "lt", "lt": "ge", "gt": "le", "le": "gt"}
_BRANCH = re.compile(r"^(b|bl|blx|cbz|cbnz|tbz|tbnz|b\.?[a-z]{2})(\.w|\.n)?$")
_REGLIST = re.compile(r"^(push|pop|stmdb|ldmia|ldm|stm)(\.w)?\s+(sp!?,\s*)?\{([^}]*)\}$")


def plugin(out_dir: Path = REPO / "build" / "qemu-plugin") -> Path:
    """board/armhf/block_profile.c built for this machine's qemu (cached)."""
    so = out_dir / "block_profile.so"
    if not so.is_file() or so.stat().st_mtime < PLUGIN_SRC.stat().st_mtime:
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(so), str(PLUGIN_SRC)],
                       check=True)
    return so


@dataclass
class Profile:
    """Executed blocks ((address, instructions) -> runs), the cache simulator's counts, and its L1
    misses per block."""
    blocks: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    misses: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Profile":
        lines = path.read_text().splitlines()
        if not lines or not lines[0].startswith("cache "):
            raise LicError(f"{path}: not a block profile (the qemu plugin wrote nothing?)")
        names = ("l1d_accesses", "l1d_misses", "l1i_misses", "l2_misses", "l2_hits_random", "l2_misses_sequential")
        prof = cls(cache=dict(zip(names, map(int, lines[0].split()[1:]))))
        for line in lines[1:]:
            runs, misses, addr, text = line.split("\t", 3)
            prof.blocks[(addr, text)] = prof.blocks.get((addr, text), 0) + int(runs)
            prof.misses[(addr, text)] = prof.misses.get((addr, text), 0) + int(misses)
        return prof

    def minus(self, other: "Profile", runs: int) -> "Profile":
        """Per run of the stage: (self - other) / runs; blocks that ran no more often drop out."""
        blocks = {k: (v - other.blocks.get(k, 0)) / runs for k, v in self.blocks.items()}
        return Profile({k: v for k, v in blocks.items() if v > 0},
                       {k: max(0.0, (v - other.cache.get(k, 0)) / runs) for k, v in self.cache.items()},
                       {k: (v - other.misses.get(k, 0)) / runs for k, v in self.misses.items() if k in blocks and blocks[k] > 0})

    @property
    def instructions(self) -> float:
        return sum(runs * (text.count(";") + 1) for (_, text), runs in self.blocks.items())


def profile_stage(root: Path, libs: dict, package: Path, refs: Path, name: str, stage: str, repeat: int,
                  arch: str = "armhf", caches: dict | None = None) -> Profile | str:
    """One run of `stage` (board/stages.py) on file `name` under qemu: the differenced profile of
    1 and 1 + repeat runs, or the reason the stage cannot run on that ARM. caches: board.json's, to
    simulate them too (slower)."""
    runs = []
    for n in (1, 1 + repeat):
        with tempfile.NamedTemporaryFile("r", suffix=".blocks") as f:
            arg = f"{plugin()},out={f.name}" + (f",caches={cache_argument(caches)}" if caches else "")
            cmd = qemu_command(root, arg, arch) + [
                "-m", "board.stages", "count", "--package", str(package), "--refs", str(refs),
                "--stage", stage, "--repeat", str(n), name]
            proc = subprocess.run(cmd, env=qemu_env(libs), cwd=REPO, capture_output=True, text=True)
            if proc.returncode == 3:
                return proc.stdout.strip().removeprefix("unavailable: ")
            if proc.returncode:
                raise LicError(f"profiling {stage} under qemu failed: {proc.stderr.strip().splitlines()[-1:]}")
            runs.append(Profile.read(Path(f.name)))
    return runs[1].minus(runs[0], repeat)


def cache_argument(caches: dict) -> str:
    """board.json's "caches" as the plugin's caches= argument."""
    return ":".join(str(caches[k]) for k in ("line", "l1d_bytes", "l1d_ways", "l1i_bytes", "l1i_ways",
                                             "l2_bytes", "l2_ways"))


def mca_source(instructions: list[str]) -> list[str]:
    """QEMU's disassembly of one block as llvm-mc accepts it. Three differences:
    instructions inside a Thumb IT block carry their condition in LLVM's syntax and not in QEMU's;
    branch targets are absolute addresses, here a label after the block (a branch's cost does not
    depend on where it goes); and LLVM's Cortex-A9 model cannot price LDM/STM/PUSH/POP with their
    variable register count ("unable to resolve scheduling class"), so they become the LDRD/STRD
    pairs (and single LDR/STR) that move the same registers, POP {.., pc} ending in BX LR."""
    out, conditions = [], []
    for ins in instructions:
        mnemonic, _, operands = ins.strip().partition(" ")
        operands = operands.strip()
        if conditions:
            base, dot, suffix = mnemonic.partition(".")
            mnemonic = base + conditions.pop(0) + dot + suffix
        if re.fullmatch(r"it[te]{0,3}", mnemonic):
            first = operands
            conditions = [first] + [first if c == "t" else _INVERSE.get(first, first) for c in mnemonic[2:]]
        if _BRANCH.match(mnemonic) and re.search(r"#-?0x[0-9a-f]+$", operands):
            operands = re.sub(r"#-?0x[0-9a-f]+$", "2f", operands)
        operands = re.sub(r":0x([0-9a-f]+)\]", lambda m: f":{int(m.group(1), 16)}]", operands)
        listed = _REGLIST.match(f"{mnemonic} {operands}")
        if listed and not re.search(r"(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le)$", listed.group(1)):
            regs = [r.strip() for r in listed.group(4).split(",")]
            load = listed.group(1) in ("pop", "ldmia", "ldm")
            tail = "bx lr" if load and "pc" in regs else None
            regs = [r if r != "pc" else "lr" for r in regs]
            for i in range(0, len(regs), 2):
                pair = regs[i:i + 2]
                op = ("ldr" if load else "str") + ("d" if len(pair) == 2 else "")
                out.append(f"{op} {', '.join(pair)}, [sp, #{4 * i}]")
            if tail:
                out.append(tail)
            continue
        out.append(f"{mnemonic} {operands}".strip())
    return out


@lru_cache(maxsize=None)
def _mca_cycles(source: str, triple: str, mcpu: str) -> float | None:
    text = ".syntax unified\n" if triple.startswith(("thumb", "arm")) else ""
    text += (".thumb\n" if triple.startswith("thumb") else ".arm\n" if triple.startswith("arm") else "")
    mattr = ["-mattr=+neon"] if not triple.startswith("aarch64") else []
    proc = subprocess.run(["llvm-mca", f"-mtriple={triple}", f"-mcpu={mcpu}", *mattr,
                           f"-iterations={MCA_ITERATIONS}"], input=text + source + "\n2:\n",
                          capture_output=True, text=True)
    if proc.returncode:
        return None
    cycles = re.search(r"Total Cycles:\s+(\d+)", proc.stdout)
    return int(cycles.group(1)) / MCA_ITERATIONS if cycles else None


def block_cycles(text: str, arch: str, mcpu: str) -> float | None:
    """llvm-mca's cycles per iteration of the block in a loop, or None where it cannot parse it."""
    source = "\n".join(mca_source(text.split(";")))
    for triple in TRIPLES[arch]:
        cycles = _mca_cycles(source, triple, mcpu)
        if cycles is not None:
            return cycles
    return None


def check_llvm_mca() -> None:
    try:
        subprocess.run(["llvm-mca", "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise LicError("llvm-mca not found: `apt-get install llvm` (board/armhf/setup_root.sh installs it)") from None


def model(profile: Profile, arch: str, mcpu: str) -> dict:
    """Core cycles of one run (LLVM's model of mcpu) plus the simulated misses, from a differenced profile.
    Blocks are priced largest first until COVERAGE of the instructions; the rest, and blocks llvm-mca
    cannot parse, at the priced blocks' mean cycles per instruction ("unmodelled_share" says how many)."""
    items = sorted(((runs * (text.count(";") + 1), runs, text) for (_, text), runs in profile.blocks.items()),
                   reverse=True)
    total = sum(i for i, _, _ in items)
    covered = priced_insns = cycles = 0.0
    for insns, runs, text in items:
        if covered >= COVERAGE * total:
            break
        covered += insns
        c = block_cycles(text, arch, mcpu)
        if c is not None:
            cycles += c * runs
            priced_insns += insns
    cpi = cycles / priced_insns if priced_insns else None
    # where the misses are: the code blocks that miss L1 most (how the h_s kernel's were found)
    worst = sorted(profile.misses.items(), key=lambda kv: -kv[1])[:3]
    return {"instructions": total, "core_cycles": cpi * total if cpi else None, "core_cpi": cpi,
            "unmodelled_share": 1 - priced_insns / total if total else None, **profile.cache,
            "most_l1_misses": [{"misses": m, "runs": profile.blocks.get(k, 0), "address": k[0], "block": k[1][:200]}
                               for k, m in worst if m > 0]}


def stall_cycles(m: dict, cpu: dict) -> float:
    """Memory stalls with no overlap: L1 misses served by L2 at its latency, except sequential ones (an L1
    prefetcher's: free); DRAM accesses at DRAM latency, except sequential ones at the line's transfer
    time at the DRAM port's bandwidth."""
    miss, line = cpu["miss_cycles"], cpu["caches"]["line"]
    sequential = m.get("l2_misses_sequential", 0)
    transfer = line / (miss["dram_mb_s"] * 1e6) * cpu["clock_mhz"] * 1e6
    return (m.get("l2_hits_random", 0) * miss["l2_hit"] + (m.get("l2_misses", 0) - sequential) * miss["dram"]
            + sequential * transfer)
