"""The accelerator's board build folder, and the `pynq` backend that runs its bitstream.

A board build folder (`make hw` / `make bitstream BOARD=...` writes fpga_projects/<board>/build/)
holds tile.json: the latent tile the accelerator was compiled for and the layout of its input and
output streams. Its other reader is the `finn-sim` backend (hls/finn_sim_backend.py), which executes
the FINN HW-layer graph on the workstation and needs FINN, so it lives with hls/.

  pynq       the bitstream on the board's fabric through host/accelerator_driver.py (FINN's IODMAs on
             PYNQ's Overlay, programmed as finn-plus-driver's FINNDMAOverlay programs them), set up
             from the driver/settings.json that finn-plus 1.6.1's step_make_driver writes; a frame's
             tiles go to the IODMAs as one batch, two buffer sets in turn.

Both backends take a frame's windows in the accelerator's stream layout, already clipped to its input type
(host/tiling.py fill_windows: the build removes the student's input quantiser, hls/transforms.py
RemoveIntegerInputQuant, which clips; the host does it instead). For INT8 streams, which FINN packs
as the plain values, the pynq backend hands the runtime its DMA buffers themselves: the windows are
written into the input buffer and the image is read out of the output buffer, with no packing,
layout or type conversion on the ARM (what `lic board-rate` counts is then all the ARM does).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from host.backends import Backend, WindowJob
from host.decoder_package import DecoderPackage, is_fingerprint
from lic.errors import LicError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HW_DIR = REPO / "fpga_projects" / "pynq-z2" / "build"
TILE_JSON = "tile.json"


def read_tile_spec(hw_dir: Path, package: DecoderPackage, need: str) -> dict:
    spec_path = hw_dir / TILE_JSON
    if not spec_path.is_file():
        raise LicError(f"no accelerator build in {hw_dir} ({TILE_JSON} missing): run `make {need} BOARD=pynq-z2` "
                       f"first, or pass --hw-dir with a board build folder")
    try:
        spec = json.loads(spec_path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise LicError(f"{spec_path}: not valid JSON ({type(e).__name__}); rebuild it with `make {need}`") from None
    _check_tile_spec(spec, spec_path)
    if spec.get("shared_weights"):
        layers, entry = weight_set_for(hw_dir, spec, package, need)
        return dict(spec, weight_set=entry, weight_layers=layers)
    fp = spec.get("file_fingerprint")
    if not (is_fingerprint(fp) and package.decodes(bytes.fromhex(fp))) or \
            spec.get("student_sha256") != package.manifest["files"].get("quant_student.pt"):
        raise LicError(f"the accelerator in {hw_dir} was built for another student than package {package.name}; "
                       f"rebuild it with `make {need}`")
    return spec


def weight_set_for(hw_dir: Path, spec: dict, package: DecoderPackage, need: str) -> tuple[list[dict], dict]:
    """A shared build (`lic hw --shared-weights`): its runtime-writable layers, and the weight set of
    runtime_weights/weights.json that serves this package: its decoding contract (file_fingerprint)
    and its student (sha256) both match."""
    from host.accelerator_driver import read_weight_sets

    layers, sets = read_weight_sets(hw_dir, str(spec["shared_weights"]))
    student = package.manifest["files"].get("quant_student.pt")
    for entry in sets:
        fp = entry.get("file_fingerprint")
        if is_fingerprint(fp) and package.decodes(bytes.fromhex(fp)) and entry.get("student_sha256") == student:
            return layers, entry
    raise LicError(f"the shared accelerator in {hw_dir} carries no weights for package {package.name} (its sets: "
                   f"{', '.join(str(e.get('name')) for e in sets) or 'none'}); rebuild it with `make {need} SHARED=1` "
                   f"and this package among its rate packages")


# tile.json key -> (type, smallest, largest); the file is read from a folder the user names
_TILE_SPEC = {"tile": (int, 1, 1024), "halo": (int, 0, 64), "upscale": (int, 1, 64), "input_bits": (int, 2, 16),
              "output_bits": (int, 2, 16)}


def _check_tile_spec(spec, path: Path) -> None:
    if not isinstance(spec, dict):
        raise LicError(f"{path}: not an accelerator description (a JSON object)")
    for key, (kind, lo, hi) in _TILE_SPEC.items():
        v = spec.get(key)
        if not (isinstance(v, kind) and not isinstance(v, bool) and lo <= v <= hi):
            raise LicError(f"{path}: {key} must be an integer in {lo}..{hi}, not {v!r}")
    for key in ("input_layout", "output_layout"):
        if spec.get(key) not in ("NHWC", "NCHW"):
            raise LicError(f"{path}: {key} must be NHWC or NCHW, not {spec.get(key)!r}")


def to_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """Windows [n, t, t, M] -> the layout the model's stream has."""
    return x if layout == "NHWC" else x.transpose(0, 3, 1, 2)


def from_model_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "NHWC" else x.transpose(0, 2, 3, 1)


# One overlay per bitstream in a process: the packages of a shared build's rate points each get a
# backend (host/decode_cli.py makes one per decoding contract), and all of them drive this one, which
# then switches weights between files instead of reprogramming the fabric.
_DRIVERS: dict[str, object] = {}


def shared_driver(bitfile: Path, info: dict):
    from host.accelerator_driver import IODMADriver

    key = str(Path(bitfile).resolve())
    if key not in _DRIVERS:
        _DRIVERS[key] = IODMADriver(bitfile, info)
    return _DRIVERS[key]


class PynqBackend(Backend):
    name = "pynq"

    def __init__(self, package: DecoderPackage, hw_dir: Path | None = None):
        hw_dir = Path(hw_dir) if hw_dir is not None else DEFAULT_HW_DIR
        if importlib.util.find_spec("pynq") is None:
            raise LicError("the pynq backend runs on a PYNQ board: pynq not installed (PYNQ image 3.x; "
                           "host/install_board.sh installs the runtime into PYNQ's venv); on this machine use "
                           "--backend finn-sim or onnx")
        spec = read_tile_spec(hw_dir, package, "bitstream")
        bitfile, settings = hw_dir / spec.get("bitfile", "bitfile/finn-accel.bit"), hw_dir / "driver" / "settings.json"
        if not bitfile.is_file() or not bitfile.with_suffix(".hwh").is_file() or not settings.is_file():
            raise LicError(f"{hw_dir} lacks {bitfile.name}, its .hwh or driver/settings.json: run `make bitstream` "
                           f"(needs Vivado) and copy its build folder to the board")
        from host.accelerator_driver import IODMADriver, WeightSet, read_settings

        shared = bool(spec.get("shared_weights"))
        info = read_settings(settings, runtime_weights=shared)
        self.tile, self.spec = int(spec["tile"]), spec
        self.driver = shared_driver(bitfile, info) if shared else IODMADriver(bitfile, info)
        self.weight_set = None
        if shared:
            self.weight_set = WeightSet(hw_dir / "runtime_weights", spec["weight_layers"], spec["weight_set"])
        streams = self.driver.streams
        for which, plain in (("input", streams.plain_input), ("output", streams.plain_output)):
            # the students' streams: INT8 both ways, which FINN packs as the values themselves
            if not plain or spec[f"{which}_layout"] != "NHWC" or spec[f"{which}_bits"] != 8:
                raise LicError(f"{settings}: the accelerator's {which} stream is {getattr(streams, which[0] + 'dt')} "
                               f"({spec[f'{which}_layout']}, {spec[f'{which}_bits']} bits); the pynq backend moves "
                               f"8-bit NHWC streams as they are and packs no others: rebuild with 8-bit "
                               f"{which}s")
        self._sets, self._running = [], None

    def window_slots(self, n: int, tile: int, channels: int, dtype, count: int) -> list[np.ndarray]:
        """The input DMA buffers of `count` buffer sets for batches of n, as int8 windows."""
        if np.dtype(dtype) != np.int8:
            raise LicError(f"the pynq backend takes int8 windows, not {np.dtype(dtype).name}")
        if len(self._sets) < count or self._sets[0].n != n:
            self._wait_running()  # the running batch may be using a set about to be dropped
            self._sets = [self.driver.allocate(n) for _ in range(count)]
        views = [self.driver.input_windows(b) for b in self._sets[:count]]
        if views[0].shape != (n, tile, tile, channels):
            raise LicError(f"the accelerator takes windows {views[0].shape[1:]}, not {(tile, tile, channels)}")
        return views

    def input_windows(self, n: int, tile: int, channels: int, dtype) -> np.ndarray:
        """The first buffer set's input buffer: the runtime writes the windows where the DMA reads."""
        return self.window_slots(n, tile, channels, dtype, 1)[0]

    def _wait_running(self) -> None:
        if self._running is not None:
            self._running.wait_done()

    def start_windows(self, x: np.ndarray) -> WindowJob:
        """Flush the windows' buffer set and start it as soon as the accelerator is free (the
        wait for the batch before sleeps); the job's result() invalidates the output buffer and
        is a view of it, valid until that set is started again."""
        bufs = next((b for b in self._sets if np.may_share_memory(x, b.ibuf)), None)
        if bufs is None:  # windows from elsewhere: into a buffer set first
            self.window_slots(x.shape[0], x.shape[1], x.shape[3], np.int8, 1)[0][...] = x
            bufs = self._sets[0]
        t = time.perf_counter()
        self.driver.flush(bufs)  # before waiting: the clean of the caches is then off the fabric's path
        clean = time.perf_counter() - t
        self._wait_running()
        if self.weight_set is not None:
            # a shared build: this package's weights, written only when another package's ran last
            self.last_weight_load = self.driver.load_weights(self.weight_set)
        started = self.driver.kick(bufs)

        def finish():
            t = time.perf_counter()
            out = self.driver.finish(bufs)
            job.timings["cache_invalidate"] = time.perf_counter() - t
            return out

        job = WindowJob(finish, lambda: self.driver.wait(bufs, started))
        # measured on the board: what lic board-rate's model assumes (hls/estimates.py BOARD_ASSUMPTIONS)
        job.started_at, job.timings["cache_clean"] = started, clean
        self._running = job
        return job

    def run_windows(self, x: np.ndarray) -> np.ndarray:
        """All windows in one DMA batch; the result is a view of the output DMA buffer, valid
        until its buffer set runs again (the runtime converts it into the image at once)."""
        job = self.start_windows(x)
        out = job.result()
        self.last_timings = job.timings
        return out
