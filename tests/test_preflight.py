"""hls/preflight.py: each check both ways (ok, and missing or wrong version) on real files in a
temporary folder, with PATH and the environment pointed at them; FINN itself is not replaced.
And `lic hw --bitstream` stops at the preflight, before any FINN step."""

import os
import sys
from pathlib import Path

import pytest

from conftest import run_lic
import hls.preflight as pf
from hls.boards import load_board


def _exe(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _vivado_install(root: Path, release: str) -> Path:
    """A Vivado installation's layout: <root>/Vivado/<release>/bin/vivado and a device folder."""
    home = root / "Vivado" / release
    _exe(home / "bin" / "vivado")
    (home / "data" / "parts" / "xilinx" / "zynq" / "devint" / "zynq" / "xc7z020").mkdir(parents=True)
    return home


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("XILINX_VIVADO", "XILINX_HLS", "FINN_TOOL_DIR_OVERRIDE", "LD_LIBRARY_PATH", "FINN_DEPS", "BOOST_ROOT",
                "CXX"):
        # set first, so the undo restores each variable even where the code under test writes os.environ
        # itself (use_finn_deps sets FINN_DEPS): a delenv of an absent variable records nothing to undo
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return monkeypatch


def test_vivado_and_hls_tool_on_path(clean_env, tmp_path):
    assert pf.check_vivado().status == pf.MISSING and pf.check_hls_tool().status == pf.MISSING
    good = _vivado_install(tmp_path, "2024.2")
    hls = _exe(tmp_path / "Vitis_HLS" / "2024.2" / "bin" / "vitis_hls")
    clean_env.setenv("PATH", f"{good / 'bin'}:{hls.parent}")
    clean_env.setenv("XILINX_VIVADO", str(good))
    assert pf.check_vivado().ok and pf.check_hls_tool().ok and pf.check_xilinx_vivado().ok
    old = _vivado_install(tmp_path / "old", "2023.1")
    clean_env.setenv("PATH", f"{old / 'bin'}:{hls.parent}")
    assert pf.check_vivado().status == pf.WRONG
    clean_env.setenv("XILINX_VIVADO", str(old))
    assert pf.check_xilinx_vivado().status == pf.WRONG


def test_hls_tool_follows_finns_choice(clean_env, tmp_path):
    """After 2024.2 FINN calls vitis-run instead of vitis_hls (finn/util/hls.py); the release must match Vivado's."""
    assert pf.hls_tool_name((2024, 2)) == "vitis_hls" and pf.hls_tool_name((2025, 1)) == "vitis-run"
    clean_env.setenv("XILINX_VIVADO", str(tmp_path / "Vivado" / "2025.1"))
    run = _exe(tmp_path / "Vitis" / "2025.1" / "bin" / "vitis-run")
    clean_env.setenv("PATH", str(run.parent))
    c = pf.check_hls_tool()
    assert c.name == "vitis-run on PATH" and c.status == pf.WRONG  # found, but 2025.1 is not a supported release
    clean_env.setenv("XILINX_VIVADO", str(tmp_path / "Vivado" / "2022.2"))
    hls = _exe(tmp_path / "Vitis_HLS" / "2024.2" / "bin" / "vitis_hls")
    clean_env.setenv("PATH", str(hls.parent))
    assert pf.check_hls_tool().status == pf.WRONG  # 2024.2 HLS beside a 2022.2 Vivado


def test_xilinx_hls_and_ld_library_path(clean_env, tmp_path):
    assert pf.check_xilinx_hls().status == pf.MISSING and pf.check_ld_library_path().status == pf.MISSING
    hls = tmp_path / "Vitis_HLS" / "2024.2"
    (hls / "include").mkdir(parents=True)
    (hls / "include" / "ap_int.h").write_text("// ap_int\n")
    clean_env.setenv("XILINX_HLS", str(hls))
    assert pf.check_xilinx_hls().ok
    vivado = _vivado_install(tmp_path, "2024.2")
    clean_env.setenv("XILINX_VIVADO", str(vivado))
    assert pf.check_ld_library_path().status == pf.MISSING
    clean_env.setenv("LD_LIBRARY_PATH", f"/usr/lib:{vivado}/lib/lnx64.o")
    assert pf.check_ld_library_path().ok


def _finn_deps(root: Path, boards=("pynq-z2/A.0",)) -> Path:
    (root / "finn-hlslib").mkdir(parents=True)
    (root / "finn-hlslib" / "mvau.hpp").write_text("// mvau\n")
    (root / "nlohmann_json" / "json").mkdir(parents=True)
    (root / "nlohmann_json" / "json" / "CMakeLists.txt").write_text("project(nlohmann_json)\n")
    for b in boards:
        (root / "board_files" / b).mkdir(parents=True)
        (root / "board_files" / b / "board.xml").write_text("<board/>\n")
    return root


def test_finn_deps_found_where_finn_looks(clean_env, tmp_path):
    """FINN_DEPS first, then site-packages/finn/finn_deps (where `finn deps update` without -d puts them)."""
    from finn.interface.settings import FINN_ROOT

    default = (Path(FINN_ROOT) / "finn_deps").resolve()
    assert default in pf.finn_deps_candidates()
    deps = _finn_deps(tmp_path / "deps")
    clean_env.setenv("FINN_DEPS", str(deps))
    assert pf.finn_deps_candidates()[0] == deps.resolve() and pf.finn_deps_dir() == deps.resolve()
    assert pf.check_finn_hlslib(deps).ok and pf.check_nlohmann_json(deps).ok
    assert pf.check_board_files("Pynq-Z2", deps, None).ok
    assert pf.check_board_files("KV260_SOM", deps, None).status == pf.MISSING
    empty = tmp_path / "empty"
    empty.mkdir()
    clean_env.setenv("FINN_DEPS", str(empty))
    if not (default / "finn-hlslib" / "mvau.hpp").is_file():
        assert pf.finn_deps_dir() is None and pf.use_finn_deps() is None
    for check in (pf.check_finn_hlslib, pf.check_nlohmann_json):
        assert check(empty).status == pf.MISSING and "finn deps update" in check(empty).fix
    assert pf.check_board_files("Pynq-Z2", empty, None).status == pf.MISSING


def test_finn_deps_in_finns_default_folder(clean_env, tmp_path):
    """`finn deps update` without -d: the lookup finds site-packages/finn/finn_deps, and use_finn_deps
    points FINN_DEPS at it, so FINN (which reads FINN_DEPS first) looks there too."""
    import finn.interface.settings as settings

    clean_env.setattr(settings, "FINN_ROOT", tmp_path / "finn")
    deps = _finn_deps(tmp_path / "finn" / "finn_deps")
    assert pf.finn_deps_dir() == deps.resolve()
    assert pf.use_finn_deps() == deps.resolve() and os.environ["FINN_DEPS"] == str(deps.resolve())


def test_board_files_shipped_with_vivado(tmp_path):
    vivado = tmp_path / "Vivado" / "2024.2"
    assert pf.check_board_files("ZCU104", None, str(vivado)).status == pf.MISSING
    (vivado / "data" / "xhub" / "boards" / "XilinxBoardStore" / "boards" / "Xilinx" / "zcu104" / "1.1").mkdir(parents=True)
    (vivado / "data" / "xhub" / "boards" / "XilinxBoardStore" / "boards" / "Xilinx" / "zcu104" / "1.1" / "board.xml") \
        .write_text("<board/>\n")
    assert pf.check_board_files("ZCU104", None, str(vivado)).ok
    assert pf.finn_board_part("Pynq-Z2") == "tul.com.tw:pynq-z2:part0:1.0"


def test_cmake_from_the_venv():
    c = pf.check_cmake()
    assert c.ok and "4.0" in c.found
    # a Python without the venv's site-packages has no cmake module
    assert pf.check_cmake([sys.executable, "-S", "-I"]).status == pf.MISSING


def test_compiler_and_openmp(clean_env, tmp_path):
    import shutil

    clean_env.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")  # g++ runs as, ld from PATH
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++ on this machine")
    assert pf.check_cxx(gxx).ok and pf.check_openmp(gxx).ok
    clean_env.setenv("CXX", str(tmp_path / "no-such-g++"))
    assert pf.check_cxx().status == pf.MISSING and pf.check_openmp().status == pf.MISSING


def test_boost_program_options(tmp_path, monkeypatch):
    root = tmp_path / "boost"
    assert pf.check_boost([str(root / "include")], [str(root / "lib")]).status == pf.MISSING
    (root / "include" / "boost").mkdir(parents=True)
    (root / "include" / "boost" / "program_options.hpp").write_text("// po\n")
    (root / "lib").mkdir()
    (root / "lib" / "libboost_program_options.so.1.74.0").write_bytes(b"\x7fELF")
    # the runtime library alone links nothing: the dev package's unversioned .so is needed
    assert pf.check_boost([str(root / "include")], [str(root / "lib")]).status == pf.MISSING
    (root / "lib" / "libboost_program_options.so").symlink_to("libboost_program_options.so.1.74.0")
    monkeypatch.setenv("BOOST_ROOT", str(root))
    assert pf.check_boost().ok


def test_python_binding(tmp_path):
    assert pf.check_python_binding().ok
    assert pf.check_python_binding(str(tmp_path)).status == pf.MISSING


def test_disk_and_memory(tmp_path):
    assert pf.check_disk(tmp_path / "not" / "yet", need_gib=0).ok
    assert pf.check_disk(tmp_path, need_gib=10 ** 9).status == pf.MISSING
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemAvailable:   12582912 kB\n")
    assert pf.check_memory(meminfo).ok  # 12 GiB
    meminfo.write_text("MemTotal:       8192000 kB\nMemAvailable:    4194304 kB\n")
    assert pf.check_memory(meminfo).status == pf.MISSING
    assert pf.check_memory(tmp_path / "none").status == pf.MISSING


def test_board_part(tmp_path):
    board = load_board("pynq-z2")
    assert pf.device_of(board.part) == "xc7z020" and pf.device_of("xczu7ev-ffvc1156-2-e") == "xczu7ev"
    assert pf.check_board_part(board, None).status == pf.MISSING
    vivado = _vivado_install(tmp_path, "2024.2")
    assert pf.check_board_part(board, str(vivado)).ok
    assert pf.check_board_part(load_board("zcu104"), str(vivado)).status == pf.MISSING  # no xczu7ev installed
    board.part = "xc7z010clg400-1"
    assert pf.check_board_part(board, str(vivado)).status == pf.WRONG  # FINN's Pynq-Z2 is an xc7z020


def test_table_lists_every_check(tmp_path):
    checks = [pf.Check("vivado on PATH", pf.MISSING, "not on PATH", "install it"), pf.Check("cmake", pf.OK, "4.0.3", "")]
    lines = pf.format_table(checks).splitlines()
    assert lines[0].split()[:3] == ["check", "status", "found"] and len(lines) == 4
    assert "missing" in lines[2] and lines[2].endswith("install it") and lines[3].split()[-2:] == ["ok", "4.0.3"]


def test_bitstream_stops_at_preflight(clean_env, tmp_path, capsys):
    """Without Vivado, `lic hw --bitstream` (what `make bitstream` runs) prints the table and stops
    before any FINN step: no build folder, one error line."""
    clean_env.setenv("PATH", os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    out = tmp_path / "b"
    assert run_lic("hw", "--board", "pynq-z2", "-o", out, "--bitstream") == 1
    captured = capsys.readouterr()
    assert "vivado on PATH" in captured.out and "XILINX_VIVADO" in captured.out
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("lic: error: preflight") and "XILINX_VIVADO missing" in last
    assert not out.exists()
    assert run_lic("hw", "--board", "pynq-z2", "-o", out, "--preflight") == 1


def test_preflight_passes_when_everything_is_there(clean_env, tmp_path, capsys):
    """Every check ok on a machine laid out as a user's: Vivado and Vitis HLS installations, FINN's
    dependencies, Boost; `lic hw --preflight` then exits 0 (memory and disk thresholds set to what
    this machine has, the rest as shipped)."""
    import shutil

    if shutil.which("g++", path="/usr/local/bin:/usr/bin:/bin") is None:
        pytest.skip("no g++ on this machine")
    vivado = _vivado_install(tmp_path, "2024.2")
    hls = tmp_path / "Vitis_HLS" / "2024.2"
    _exe(hls / "bin" / "vitis_hls")
    (hls / "include").mkdir(parents=True)
    (hls / "include" / "ap_int.h").write_text("// ap_int\n")
    deps = _finn_deps(tmp_path / "deps")
    boost = tmp_path / "boost"
    (boost / "include" / "boost").mkdir(parents=True)
    (boost / "include" / "boost" / "program_options.hpp").write_text("// po\n")
    (boost / "lib").mkdir()
    (boost / "lib" / "libboost_program_options.so").write_bytes(b"\x7fELF")
    clean_env.setenv("PATH", f"{vivado / 'bin'}:{hls / 'bin'}:/usr/local/bin:/usr/bin:/bin")
    for var, value in (("XILINX_VIVADO", vivado), ("XILINX_HLS", hls), ("FINN_DEPS", deps), ("BOOST_ROOT", boost),
                       ("LD_LIBRARY_PATH", f"{vivado}/lib/lnx64.o")):
        clean_env.setenv(var, str(value))
    clean_env.setattr(pf, "MEMORY_GIB", 0.0)
    clean_env.setattr(pf, "DISK_GIB", 0.0)
    checks = pf.run_checks(load_board("pynq-z2"), tmp_path / "build")
    assert [c.name for c in checks if not c.ok] == []
    assert run_lic("hw", "--board", "pynq-z2", "-o", tmp_path / "build", "--preflight") == 0
    assert "needs is here" in capsys.readouterr().out
