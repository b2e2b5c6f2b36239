"""Boards are folders: fpga_projects/<board>/board.json says part, clock, shell flow, resources,
the budget the folding may use, the accelerator's tile and the fps target. Adding a board is
adding a folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "fpga_projects"
REQUIRED = ("part", "finn_board", "shell_flow", "clock_ns", "resources", "budget", "tile", "target_fps", "frame")


@dataclass
class Board:
    name: str
    folder: Path
    part: str
    finn_board: str
    shell_flow: str
    clock_ns: float
    resources: dict[str, int]
    budget: dict[str, float]
    tile: int
    target_fps: float
    frame: tuple[int, int]   # width, height of the frame fps is quoted for
    mvau_wwidth_max: int = 36
    # LUTs kept free for what FINN's layer estimates leave out: FIFOs, data width converters, the
    # two IODMAs, AXI interconnect, reset and clock logic of the shell. A stated assumption (share of
    # the device), not a measurement: replace it with the post-route numbers of a `make bitstream`.
    lut_margin: float = 0.10
    # BRAM18 kept free for what the block RAM estimates get wrong: FINN's per-layer BRAM models
    # (weights, thresholds, line buffers: Vivado maps some differently) and our FIFO/IODMA model
    # (hls/folding.py infrastructure), which are counted in the budget themselves. A stated assumption,
    # like lut_margin; `make bitstream`'s post-route utilisation should replace it.
    bram_margin: float = 0.05
    description: str = ""
    # the board's ARM processing system, for `lic board-rate`: core, arch (Debian's: armhf, arm64), cores,
    # clock_mhz with its clock_source, cpi_assumed [low, high]; for the cycle model (board/arm_cycles.py)
    # llvm_mcpu, caches (line, L1 D / I and L2 bytes and ways, with their source) and miss_cycles
    arm: dict | None = None

    @property
    def clock_hz(self) -> float:
        return 1e9 / self.clock_ns

    def margin(self, resource: str) -> float:
        return {"LUT": self.lut_margin, "BRAM_18K": self.bram_margin}.get(resource, 0.0)

    def limit(self, resource: str) -> float:
        """Units of `resource` FINN's layers, the FIFOs and the IODMAs may use: device total x budget
        fraction, less the LUT and BRAM margins for what the estimates leave out or get wrong."""
        total = self.resources.get(resource, 0)
        return total * (self.budget.get(resource, 1.0) - self.margin(resource))


def available_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def load_board(name: str) -> Board:
    path = BOARDS_DIR / name / "board.json"
    if not path.is_file():
        raise LicError(f"unknown board {name!r}: no {path.relative_to(BOARDS_DIR.parent)}; "
                       f"boards: {', '.join(available_boards())}")
    try:
        d = json.loads(path.read_text())
    except ValueError as e:
        raise LicError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise LicError(f"{path} lacks {', '.join(missing)}")
    d.pop("board", None)
    return Board(name=name, folder=path.parent, **{**d, "frame": tuple(d["frame"])})


def board_rate_path(board: str) -> Path:
    """Where `lic board-rate` keeps a board's ARM estimate (board/rate.py writes it, `make hw`
    reads it): build/board-rate.json for PYNQ-Z2 (the first board; its readers predate the others),
    else build/board-rate-<board>.json."""
    return REPO / "build" / ("board-rate.json" if board == "pynq-z2" else f"board-rate-{board}.json")
