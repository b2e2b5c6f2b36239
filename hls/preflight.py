"""`lic hw --preflight` (`make preflight BOARD=...`): everything `make bitstream` needs, checked before
any FINN step, as one table: check / status (ok, missing, wrong version) / how to supply it.

`make bitstream` runs it first and stops there when anything is missing, so a machine without Vivado
fails in a second, not after the estimate build. Each check is one function returning a `Check`, and
takes what it inspects as arguments (with the real defaults), so tests drive each one both ways on
real files in a temporary folder.

Where the requirements come from (finn-plus 1.6.1 as installed):
  Vivado / Vitis HLS versions   its README (package METADATA, "Prerequisites"): "Vivado, Vitis, and
                                Vitis HLS (2022.2 or 2024.2)"
  vitis_hls or vitis-run        finn/util/hls.py CallHLS.build: vitis-run for versions after 2024.2
                                (parsed from XILINX_VIVADO, finn/util/basic.py get_vivado_version)
  LD_LIBRARY_PATH               finn/interface/run_finn.py ensure_ld_library_path: finn_xsi dlopens
                                Vivado's simulator kernel in-process, and ld.so reads the search path
                                only at process start; the `finn` CLI re-executes itself for that,
                                `lic` does not, so it must be set before `lic` starts
  finn deps                     finn/interface/external_dependencies.yaml, looked up under
                                get_settings().finn_deps: finn-hlslib (hlsbackend.py), board_files
                                (make_zynq_proj.py), nlohmann_json/json (simulation_build.py)
  finn_xsi build                finn_xsi/CMakeLists.txt: OpenMP, Threads, Boost program_options,
                                C++20; `python -m cmake` (simulation_build.py); finn/xsi/setup.py:
                                g++ (or clang++), Python.h, pybind11
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lic.errors import LicError

OK, MISSING, WRONG = "ok", "missing", "wrong version"

# finn-plus 1.6.1's README, "Prerequisites" (in the installed package's METADATA)
SUPPORTED_VIVADO = ((2022, 2), (2024, 2))

# Disk: FINN writes one Vitis HLS project per HLS layer (a few hundred MB each; ~25 layers here), the
# per-layer and stitched-IP Vivado projects, the FIFO-sizing simulation builds and the Zynq project
# with its synth/impl runs. 20 GiB is our allowance for all of that in one build folder: an
# assumption with room to spare, not a measurement (no Vivado run here).
DISK_GIB = 20.0
# Memory: FINN budgets 10 GB per concurrent Vivado synthesis (finn/util/slurmutil.py,
# get_slurm_mem_workers: "10GB per synthesis"); below that, synth_design runs risk the OOM killer.
MEMORY_GIB = 10.0


@dataclass
class Check:
    name: str
    status: str     # OK, MISSING or WRONG
    found: str      # what was found, or where it was looked for
    fix: str        # how to supply it ("" when ok)

    @property
    def ok(self) -> bool:
        return self.status == OK


def _check(name: str, ok: bool, found: str, fix: str, wrong: bool = False) -> Check:
    return Check(name, OK if ok else (WRONG if wrong else MISSING), found, "" if ok else fix)


# ---------------------------------------------------------------------------------------------
# FINN's dependencies (`finn deps update`)


def finn_deps_candidates() -> list[Path]:
    """The folders FINN may read its dependencies from, in the order they are tried here:
    the one FINN itself resolves (FINNSettings: the FINN_DEPS environment variable, else the
    settings file's finn_deps, else the default), then that default, site-packages/finn/finn_deps,
    which is where `finn deps update` without -d installs."""
    from finn.interface.settings import FINN_ROOT, FINNSettings

    found = []
    try:
        found.append(FINNSettings.init(flow_config=Path("preflight.yaml"), auto_set_environment_vars=False).finn_deps)
    except Exception:  # a broken FINN settings file: fall back to the environment and the default
        if os.environ.get("FINN_DEPS"):
            found.append(Path(os.environ["FINN_DEPS"]).expanduser().absolute())
    found.append(Path(FINN_ROOT) / "finn_deps")
    return list(dict.fromkeys(p.resolve() for p in found))


def finn_deps_dir(marker: str = "finn-hlslib/mvau.hpp") -> Path | None:
    """The folder holding FINN's dependencies (`finn deps update`), or None.

    Looks where FINN looks (finn_deps_candidates): FINN_DEPS (or FINN's settings file), then
    site-packages/finn/finn_deps, and returns the first that has `marker` in it (default:
    finn-hlslib's mvau.hpp, which cppsim compiles against). FINN itself reads only the first of
    these, so a build that found its dependencies in the second must export FINN_DEPS to it
    before FINN starts (use_finn_deps)."""
    for cand in finn_deps_candidates():
        if (cand / marker).is_file():
            return cand
    return None


def use_finn_deps() -> Path | None:
    """Point FINN at the dependencies finn_deps_dir found (FINN_DEPS), before FINN builds its
    settings from the environment (finn/util/settings.py), so that FINN and cppsim use the same."""
    found = finn_deps_dir()
    if found is not None:
        os.environ["FINN_DEPS"] = str(found)
    return found


def _deps_where(deps: Path | None) -> str:
    return str(deps) if deps else " or ".join(str(p) for p in finn_deps_candidates())


DEPS_FIX = ("source Vivado's settings64.sh, then `finn deps update -d DIR` (fetches from GitHub and the "
            "board vendors) and export FINN_DEPS=DIR; without -d it installs into site-packages/finn/finn_deps")


def check_finn_hlslib(deps: Path | None) -> Check:
    ok = deps is not None and (deps / "finn-hlslib" / "mvau.hpp").is_file()
    return _check("finn-hlslib (finn deps)", ok, f"{_deps_where(deps)}/finn-hlslib", DEPS_FIX)


def check_nlohmann_json(deps: Path | None) -> Check:
    # FINN's own test (simulation_build.py, nlohmann_json_cmake_flag): FINN refuses to build finn_xsi
    # without this source tree, whatever the system has installed
    ok = deps is not None and (deps / "nlohmann_json" / "json" / "CMakeLists.txt").is_file()
    return _check("nlohmann-json (finn deps)", ok, f"{_deps_where(deps)}/nlohmann_json/json", DEPS_FIX)


def finn_board_part(finn_board: str) -> str | None:
    """The Vivado board part FINN's Zynq project sets for a board name (make_zynq_proj's Tcl
    template, finn/transformation/fpgadataflow/templates.py), e.g. tul.com.tw:pynq-z2:part0:1.0."""
    from finn.transformation.fpgadataflow import templates

    m = re.search(r'\$BOARD == "%s"\}.*?set_property board_part (\S+)' % re.escape(finn_board),
                  templates.custom_zynq_shell_template, re.S)
    return m.group(1) if m else None


def _has_board_xml(root: Path, name: str) -> bool:
    # board files are <name>/<revision>/board.xml (pynq-z2/A.0/board.xml, kv260_som/1.3/board.xml)
    return root.is_dir() and any(name in p.relative_to(root).parts for p in root.rglob("board.xml"))


def check_board_files(finn_board: str, deps: Path | None, vivado_root: str | None) -> Check:
    """The board's Vivado board files: in FINN_DEPS/board_files (FINN adds it to Vivado's board
    repository paths) or shipped with Vivado (ZCU104, data/boards or data/xhub)."""
    part = finn_board_part(finn_board)
    if part is None:
        return _check(f"board files ({finn_board})", False, "FINN's Zynq template knows no such board",
                      "set board.json's finn_board to a board finn-plus 1.6.1 supports")
    name = part.split(":")[1]
    roots = [deps / "board_files"] if deps else []
    if vivado_root:
        # shipped with Vivado, or installed from its XHub board store into the user's folder
        release = _fmt(_version_in(vivado_root))
        roots += [Path(vivado_root) / "data" / "boards", Path(vivado_root) / "data" / "xhub" / "boards",
                  Path.home() / ".Xilinx" / "Vivado" / release / "xhub" / "board_store"]
    ok = any(_has_board_xml(r, name) for r in roots)
    where = ", ".join(str(r) for r in roots) or _deps_where(deps) + "/board_files"
    return _check(f"board files ({part})", ok, f"{name}/**/board.xml under {where}", DEPS_FIX)


# ---------------------------------------------------------------------------------------------
# Vivado and Vitis HLS


def _version_in(text: str) -> tuple[int, int] | None:
    # the same pattern FINN applies to XILINX_VIVADO (finn/util/basic.py get_vivado_version)
    m = re.search(r"\b(20\d{2})\.(1|2)\b", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def tool_version(exe: Path) -> tuple[int, int] | None:
    """A Xilinx tool's release, from its installation path (…/Vivado/2024.2/bin/vivado), as FINN
    reads it from XILINX_VIVADO; else from `exe -version`."""
    v = _version_in(str(Path(exe).resolve()))
    if v:
        return v
    try:
        out = subprocess.run([str(exe), "-version"], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return _version_in(out)


def _fmt(v) -> str:
    return "%d.%d" % v if v else "unknown"


SUPPORTED_TEXT = " or ".join(map(_fmt, SUPPORTED_VIVADO))


def _which(tool: str) -> Path | None:
    # FINN resolves its tools in FINN_TOOL_DIR_OVERRIDE first (finn/util/basic.py resolve_xilinx_tool)
    override = os.environ.get("FINN_TOOL_DIR_OVERRIDE")
    found = shutil.which(str(Path(override) / tool) if override else tool)
    return Path(found) if found else None


def check_vivado() -> Check:
    exe = _which("vivado")
    fix = f"install Vivado {SUPPORTED_TEXT} (finn-plus 1.6.1's supported releases) and source its settings64.sh"
    if exe is None:
        return _check("vivado on PATH", False, "not on PATH", fix)
    v = tool_version(exe)
    return _check("vivado on PATH", v in SUPPORTED_VIVADO, f"{exe} ({_fmt(v)})", fix, wrong=True)


def hls_tool_name(vivado_version: tuple[int, int] | None) -> str:
    """The HLS tool FINN calls (finn/util/hls.py CallHLS.build): vitis-run after 2024.2."""
    return "vitis-run" if vivado_version and vivado_version > (2024, 2) else "vitis_hls"


def check_hls_tool() -> Check:
    vivado_v = _version_in(os.environ.get("XILINX_VIVADO", ""))
    tool = hls_tool_name(vivado_v)
    fix = (f"install Vitis HLS of the same release as Vivado ({SUPPORTED_TEXT}) and source its settings64.sh"
           " (Vitis HLS 2024.2: <Xilinx>/Vitis/2024.2/settings64.sh)")
    exe = _which(tool)
    if exe is None:
        return _check(f"{tool} on PATH", False, "not on PATH", fix)
    v = tool_version(exe)
    ok = v in SUPPORTED_VIVADO and (vivado_v is None or v == vivado_v)
    found = f"{exe} ({_fmt(v)}" + (f"; XILINX_VIVADO is {_fmt(vivado_v)})" if vivado_v and v != vivado_v else ")")
    return _check(f"{tool} on PATH", ok, found, fix, wrong=True)


def check_xilinx_vivado() -> Check:
    root = os.environ.get("XILINX_VIVADO")
    fix = "source <Vivado>/settings64.sh (sets XILINX_VIVADO)"
    if not root:
        return _check("XILINX_VIVADO", False, "not set", fix)
    if not (Path(root) / "bin" / "vivado").exists():
        return _check("XILINX_VIVADO", False, f"{root} has no bin/vivado", fix)
    v = _version_in(root)
    return _check("XILINX_VIVADO", v in SUPPORTED_VIVADO, f"{root} ({_fmt(v)})",
                  f"point it at a Vivado {SUPPORTED_TEXT} installation; FINN reads the release from this path",
                  wrong=True)


def check_xilinx_hls() -> Check:
    # FINN compiles cppsim against $XILINX_HLS/include (hlsbackend.py) and puts
    # $XILINX_HLS/lnx64/tools/fpo_v7_1 on the simulators' library path (run_finn.py)
    root = os.environ.get("XILINX_HLS")
    ok = bool(root) and (Path(root) / "include" / "ap_int.h").is_file()
    return _check("XILINX_HLS (ap_int.h)", ok, f"{root}/include/ap_int.h" if root else "not set",
                  "source Vitis HLS's settings64.sh (sets XILINX_HLS)")


def check_ld_library_path() -> Check:
    root = os.environ.get("XILINX_VIVADO")
    need = f"{root}/lib/lnx64.o" if root else "$XILINX_VIVADO/lib/lnx64.o"
    have = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    ok = bool(root) and any(Path(p).resolve() == Path(need).resolve() for p in have if p)
    return _check("LD_LIBRARY_PATH (finn_xsi)", ok, f"{need} {'in' if ok else 'not in'} LD_LIBRARY_PATH",
                  "run `make bitstream` (it sets it), or export LD_LIBRARY_PATH=$XILINX_VIVADO/lib/lnx64.o:"
                  "$LD_LIBRARY_PATH before `lic`")


# ---------------------------------------------------------------------------------------------
# finn_xsi's build: cmake, a C++20 compiler, OpenMP, Boost program_options, Python.h + pybind11


def _cmake_requirement() -> str:
    from importlib.metadata import requires

    req = next((r for r in requires("finn-plus") or [] if re.match(r"cmake\b", r)), "cmake")
    return req.split(";")[0].replace(" ", "").replace("(", "").replace(")", "")


def check_cmake(python: list[str] | None = None) -> Check:
    """`python -m cmake`, the way FINN calls it (simulation_build.py), at finn-plus's pin."""
    from packaging.requirements import Requirement

    req = Requirement(_cmake_requirement())
    cmd = (python or [sys.executable]) + ["-m", "cmake", "--version"]
    fix = f"make setup (requirements.lock pins {req})"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return _check("cmake (python -m cmake)", False, str(e), fix)
    m = re.search(r"cmake version (\S+)", out.stdout)
    if out.returncode != 0 or not m:
        return _check("cmake (python -m cmake)", False, (out.stderr.strip().splitlines() or ["no output"])[-1], fix)
    return _check("cmake (python -m cmake)", req.specifier.contains(m.group(1)), f"{m.group(1)} ({req})", fix,
                  wrong=True)


def _cxx() -> str:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++") or "g++"


def _compile(source: str, flags: list[str], cxx: str | None = None) -> tuple[bool, str]:
    cxx = cxx or _cxx()
    with tempfile.TemporaryDirectory(prefix="lic-preflight-") as d:
        src = Path(d) / "t.cpp"
        src.write_text(source)
        try:
            r = subprocess.run([cxx, *flags, str(src), "-o", str(Path(d) / "t")], capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            return False, f"{cxx}: {e}"
        return r.returncode == 0, cxx if r.returncode == 0 else f"{cxx}: {(r.stderr.strip().splitlines() or ['failed'])[0]}"


def check_cxx(cxx: str | None = None) -> Check:
    # finn_xsi's CMakeLists requires C++20 (CMAKE_CXX_STANDARD 20)
    ok, found = _compile("#include <span>\nint main() { return 0; }\n", ["-std=c++20"], cxx)
    return _check("C++20 compiler (g++)", ok, found, "apt-get install g++ (GCC 10 or later), or set CXX")


def check_openmp(cxx: str | None = None) -> Check:
    ok, found = _compile("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n",
                         ["-fopenmp"], cxx)
    return _check("OpenMP (libgomp)", ok, found, "apt-get install g++ (brings libgomp and omp.h)")


def _multiarch() -> list[str]:
    arch = sysconfig.get_config_var("MULTIARCH")
    return [f"/usr/lib/{arch}"] if arch else []


def _env_dirs(var: str) -> list[str]:
    return [p for p in os.environ.get(var, "").split(os.pathsep) if p]


def check_boost(include_dirs: list[str] | None = None, lib_dirs: list[str] | None = None) -> Check:
    """Boost program_options, headers and library, where CMake's FindBoost looks: BOOST_ROOT, then
    the system folders."""
    boost_root = os.environ.get("BOOST_ROOT")
    if include_dirs is None:
        include_dirs = ([f"{boost_root}/include"] if boost_root else []) + _env_dirs("CPATH") + \
            ["/usr/local/include", "/usr/include"]
    if lib_dirs is None:
        lib_dirs = ([f"{boost_root}/lib"] if boost_root else []) + _env_dirs("LIBRARY_PATH") + \
            ["/usr/local/lib"] + _multiarch() + ["/usr/lib64", "/usr/lib"]
    header = next((Path(d) / "boost" / "program_options.hpp" for d in include_dirs
                   if (Path(d) / "boost" / "program_options.hpp").is_file()), None)
    # the unversioned .so (or .a) the dev package adds: the runtime package's .so.1.74.0 alone links nothing
    lib = next((Path(d) / n for d in lib_dirs for n in ("libboost_program_options.so", "libboost_program_options.a")
                if (Path(d) / n).exists()), None)
    found = f"{header or 'no boost/program_options.hpp'}; {lib or 'no libboost_program_options.so'}"
    return _check("Boost program_options", bool(header and lib), found,
                  "apt-get install libboost-program-options-dev (or set BOOST_ROOT)")


def check_python_binding(include_dir: str | None = None) -> Check:
    """What finn/xsi/setup.py compiles xsi.so with: this Python's headers and pybind11."""
    include_dir = include_dir or sysconfig.get_path("include")
    header = Path(include_dir) / "Python.h"
    try:
        import pybind11

        pyb = pybind11.get_include()
    except ImportError:
        pyb = None
    return _check("Python.h + pybind11 (xsi.so)", header.is_file() and pyb is not None,
                  f"{header if header.is_file() else 'no ' + str(header)}; pybind11 {pyb or 'not installed'}",
                  "apt-get install python3.11-dev (or use a Python with headers); make setup (pybind11)")


# ---------------------------------------------------------------------------------------------
# The machine and the board


def _existing(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk(path: Path, need_gib: float = DISK_GIB) -> Check:
    free = shutil.disk_usage(_existing(path)).free / 2 ** 30
    return _check("free disk (build folder)", free >= need_gib, f"{free:.0f} GiB free under {_existing(path)}, "
                  f"need {need_gib:g}", "free space there, or build elsewhere with -o DIR")


def check_memory(meminfo: Path = Path("/proc/meminfo"), need_gib: float = MEMORY_GIB) -> Check:
    try:
        kib = int(re.search(r"^MemAvailable:\s+(\d+)\s+kB", Path(meminfo).read_text(), re.M).group(1))
    except (OSError, AttributeError):
        return _check("memory available", False, f"cannot read MemAvailable from {meminfo}",
                      f"run on a Linux machine with {need_gib:g} GiB free")
    gib = kib / 2 ** 20
    return _check("memory available", gib >= need_gib, f"{gib:.1f} GiB available, need {need_gib:g}",
                  "stop other jobs or use a machine with more memory (FINN budgets 10 GB per synthesis)")


def device_of(part: str) -> str:
    """xc7z020clg400-1 -> xc7z020, xczu7ev-ffvc1156-2-e -> xczu7ev, xck26-sfvc784-2LV-c -> xck26."""
    head = part.split("-")[0].lower()
    m = re.match(r"(xc7[a-z]\d+t?)", head)
    return m.group(1) if m else head


def _device_installed(vivado_root: str, device: str) -> bool:
    parts = Path(vivado_root) / "data" / "parts" / "xilinx"
    if not parts.is_dir():
        return False
    # Vivado keeps a folder per device under its family (data/parts/xilinx/<family>/devint/<family>/<device>);
    # searched a few levels deep, by name prefix, so that a layout change does not fail a good installation
    for root, dirs, _ in os.walk(parts):
        if any(d.startswith(device) for d in dirs):
            return True
        if len(Path(root).relative_to(parts).parts) >= 5:
            dirs[:] = []
    return False


def check_board_part(board, vivado_root: str | None) -> Check:
    from finn.util.basic import pynq_part_map

    name = f"board part ({board.part})"
    finn_part = pynq_part_map.get(board.finn_board)
    if finn_part != board.part:
        return _check(name, False, f"board.json {board.part}, FINN's {board.finn_board}: {finn_part}",
                      "make board.json's part and finn_board agree with finn/util/basic.py pynq_part_map",
                      wrong=True)
    device = device_of(board.part)
    if not vivado_root:
        return _check(name, False, f"{device}: no Vivado to look in",
                      f"install Vivado with the device family of {device}")
    ok = _device_installed(vivado_root, device)
    return _check(name, ok, f"{device} {'in' if ok else 'not in'} {vivado_root}/data/parts",
                  f"add the device family of {device} to the Vivado installation (Xilinx installer, 'Devices')")


# ---------------------------------------------------------------------------------------------


def run_checks(board, out: Path) -> list[Check]:
    deps = finn_deps_dir()
    vivado_root = os.environ.get("XILINX_VIVADO")
    if deps is None and os.environ.get("FINN_DEPS"):
        deps = Path(os.environ["FINN_DEPS"])  # name the folder FINN will read in the table
    return [
        check_vivado(), check_hls_tool(), check_xilinx_vivado(), check_xilinx_hls(), check_ld_library_path(),
        check_finn_hlslib(deps), check_board_files(board.finn_board, deps, vivado_root), check_nlohmann_json(deps),
        check_cmake(), check_cxx(), check_openmp(), check_boost(), check_python_binding(),
        check_disk(out, DISK_GIB), check_memory(need_gib=MEMORY_GIB), check_board_part(board, vivado_root),
    ]


def format_table(checks: list[Check]) -> str:
    rows = [("check", "status", "found", "how to supply it")] + [(c.name, c.status, c.found, c.fix) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(rows[0][3]))
    return "\n".join(line.rstrip() for line in lines)


def preflight(board, out: Path) -> list[Check]:
    """Print the table; raise LicError naming what is missing when anything is."""
    checks = run_checks(board, out)
    print(format_table(checks), flush=True)
    bad = [c for c in checks if not c.ok]
    if bad:
        raise LicError(f"preflight for `make bitstream` on {board.name}: {len(bad)} of {len(checks)} checks failed "
                       f"({', '.join(c.name + ' ' + c.status for c in bad)}); each row above says how to supply it. "
                       "Without Vivado (XILINX_VIVADO), `make hw` builds everything up to the HLS code")
    return checks
