"""The FINN accelerator's IODMAs on PYNQ's Overlay, allocate and MMIO: what the board needs of
finn-plus-driver 1.6.1's FINNDMAOverlay (platform "zynq-iodma"), without its imports.

Why not finn-plus-driver itself: its overlay module imports qonnx (DataType, gen_finn_dt_tensor),
and qonnx imports onnx, which has no 32-bit ARM wheel: pip compiles onnx on the A9 (cmake,
protobuf; an hour or more). The board needs none of that to run the students' accelerator, whose
streams are plain INT8 (FINN packs a byte-aligned type, with both of FINNDMAOverlay's reversals, as
the values themselves; tests/test_hw_build.py checks it against FINN's packing).

What is the same as FINNDMAOverlay (tests/test_board_driver.py runs finn-plus-driver's own code and
this module against one recording stand-in of PYNQ and compares every register write and cache
operation):
  - settings: driver/settings.json's "driver_information", as FINN's step_make_driver writes it
    (io_shape_dict with idma_names / odma_names, platform, fclk_mhz, runtime_weights)
  - the overlay: Overlay(bitfile, download=True, device=None), then PL clock 0 set to 100 MHz (FINN's
    Zynq shell feeds its Clocking Wizard a fixed 100 MHz)
  - buffers: allocate(shape=(n, *ishape_packed[1:]), dtype=uint8, cacheable=True, target=device),
    one per input, the same for outputs
  - a run: flush each input buffer; check each output IODMA is idle (control register bit 2);
    per output IODMA then per input IODMA write 0x10 (buffer address, low 32 bits), 0x14 (high 32
    bits), 0x1C (batch size), 0x00 = 1 (ap_start); wait until each output IODMA reports ap_done
    (control register bit 1); invalidate each output buffer before reading it.
What differs, and why:
  - the wait sleeps between reads of the control register (time.sleep releases the GIL), first
    until shortly before the batch is expected to finish (the last batch's duration), instead of
    reading it in a Python loop that holds one A9 core and the GIL for the whole batch; it gives up
    with an error after `timeout_s` instead of spinning forever. FINN's Zynq shell does not connect
    the IODMAs' interrupt lines (make_zynq_proj.py wires none), so there is no interrupt to wait on.
  - several buffer sets can be allocated (double buffering: the ARM fills one while the fabric
    reads the other); each run names its set.
  - accelerators with external (DDR-streamed) or MLO weights are refused with a clear error; ones
    with runtime-writable weights only for a shared build (`lic hw --shared-weights`, tile.json
    "shared_weights"), whose weight sets load_weights writes.
  - runtime weights (load_weights): finn-plus-driver's load_runtime_weights writes every layer's file
    at offset 0 of the partition's MMIO (overlays/dma.py: `layer_mmio.write_mm(0, ...)` for every
    layer of a partition), so all layers land in one place; here each layer's file goes to its own
    AXI-lite region, the ip_dict entry "<partition cell>/s_axilite_<k>" that CreateStitchedIP and
    PYNQ's HWH parser name (k: the layer's index among the runtime-writable layers, graph order),
    then one batch of zeros runs, as FINN's flush_accel does, so that no weights the streamers had
    prefetched before the write are used by a real batch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lic.errors import LicError

# The HLS IODMA's s_axi_control registers (FINN's IODMA template: ap_ctrl_hs plus its arguments),
# at the offsets FINNDMAOverlay.execute_on_buffers writes.
CTRL, ADDR_LO, ADDR_HI, COUNT = 0x00, 0x10, 0x14, 0x1C
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
FCLK_MHZ = 100.0  # FINN's Zynq shell: the Clocking Wizard's input is PL clock 0 at a fixed 100 MHz


def dtype_name(text: str) -> str:
    """"DataType['INT8']" (how settings.json stores FINN's DataType) -> "INT8"."""
    return text[text.index("[") + 1:text.index("]")].strip("'\"")


@dataclass(frozen=True)
class Streams:
    """The accelerator's one input and one output stream, from settings.json's io_shape_dict."""
    idt: str
    odt: str
    ishape_normal: tuple
    ishape_packed: tuple
    oshape_normal: tuple
    oshape_packed: tuple

    @classmethod
    def from_io_shape_dict(cls, io: dict) -> "Streams":
        if io.get("num_inputs", 1) != 1 or io.get("num_outputs", 1) != 1:
            raise LicError("the accelerator must have one input and one output stream")
        first = lambda k: tuple(int(v) for v in io[k][0])
        return cls(dtype_name(io["idt"][0]), dtype_name(io["odt"][0]), first("ishape_normal"),
                   first("ishape_packed"), first("oshape_normal"), first("oshape_packed"))

    @staticmethod
    def _plain(dt: str, normal: tuple, packed: tuple) -> bool:
        return dt in ("INT8", "UINT8") and int(np.prod(normal[1:])) == int(np.prod(packed[1:]))

    @property
    def plain_input(self) -> bool:
        """The packed input bytes are the 8-bit values themselves, in stream order."""
        return self._plain(self.idt, self.ishape_normal, self.ishape_packed)

    @property
    def plain_output(self) -> bool:
        return self._plain(self.odt, self.oshape_normal, self.oshape_packed)


def read_settings(path: Path, runtime_weights: bool = False) -> dict:
    """driver/settings.json's driver_information, checked for what this driver can run;
    runtime_weights: the build is a shared one (tile.json "shared_weights"), whose runtime-writable
    weights load_weights writes."""
    try:
        info = json.loads(Path(path).read_text())["driver_information"]
    except (OSError, ValueError, KeyError) as e:
        raise LicError(f"{path}: not the settings.json of FINN's driver step ({e})") from None
    if info.get("driver_type", "FINNDMAOverlay") != "FINNDMAOverlay" or info.get("platform") != "zynq-iodma":
        raise LicError(f"{path}: driver {info.get('driver_type')} on platform {info.get('platform')}; host/"
                       f"accelerator_driver.py runs FINN's FINNDMAOverlay on zynq-iodma (a PYNQ Zynq board)")
    io = info.get("io_shape_dict", {})
    if (info.get("runtime_weights") and not runtime_weights) or info.get("external_weights") \
            or io.get("external_weights") or int(io.get("number_of_external_weights", 0) or 0) \
            or io.get("mlo_weight_config"):
        raise LicError(f"{path}: the accelerator has runtime-writable, external or DDR (MLO) weights, which "
                       f"host/accelerator_driver.py does not load; build it with the weights in the bitstream "
                       f"(FINN's default for the students)")
    return info


# The weight sets of a shared build (hls/shared_weights.py writes them; runtime_weights/weights.json)
RT_FORMAT = "lic-runtime-weights-v1"
# CPU programmed I/O through the Zynq-7000's M_AXI_GP ports, UG585 Table 22-8: "< 25 MB/s" (estimated)
AXILITE_MB_S = 25.0


def read_words(path: Path) -> np.ndarray:
    """A runtime-weight file (FINN's decoupled_runtime format: one 32-bit hex word per line)."""
    try:
        text = "".join(Path(path).read_text().split())
        return np.frombuffer(bytes.fromhex(text), dtype=">u4").astype(np.uint32)
    except (OSError, ValueError) as e:
        raise LicError(f"{path}: not a runtime-weight file ({e})") from None


class WeightSet:
    """One rate point's weights for a shared build: (interface, words) per runtime-writable layer."""

    def __init__(self, root: Path, layers: list[dict], entry: dict):
        self.root, self.entry, self.name = Path(root), entry, str(entry["name"])
        files = entry["files"]
        if len(files) != len(layers):
            raise LicError(f"weight set {self.name}: {len(files)} files for {len(layers)} layers")
        self.interfaces = [str(layer["interface"]) for layer in layers]
        self.limits = [int(layer["axilite_bytes"]) for layer in layers]
        self.files = [self.root / f for f in files]
        self._words: list[np.ndarray] | None = None

    def words(self) -> list[np.ndarray]:
        """Each layer's words, read once (parsing the files is most of a first load's ARM time)."""
        if self._words is None:
            self._words = [read_words(f) for f in self.files]
            for f, w, limit in zip(self.files, self._words, self.limits):
                if 4 * len(w) > limit:
                    raise LicError(f"{f}: {len(w)} words overrun the layer's AXI-lite space of {limit} bytes")
        return self._words

    @property
    def bytes(self) -> int:
        return int(self.entry.get("bytes") or sum(4 * len(w) for w in self.words()))

    @property
    def estimated_switch_s(self) -> float:
        """The AXI-lite writes at AXILITE_MB_S: an estimate (a lower bound), not a measurement."""
        return self.bytes / (AXILITE_MB_S * 1e6)


def read_weight_sets(hw_dir: Path, manifest_rel: str) -> tuple[list[dict], list[dict]]:
    """(layers, sets) of a shared build's runtime_weights/weights.json."""
    path = Path(hw_dir) / manifest_rel
    try:
        m = json.loads(path.read_text())
        if m.get("format") != RT_FORMAT:
            raise ValueError(f"format {m.get('format')!r}, not {RT_FORMAT}")
        return list(m["layers"]), list(m["sets"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise LicError(f"{path}: not a shared build's weight-set manifest ({e}); rebuild with "
                       f"`lic hw --shared-weights`") from None


class BufferSet:
    """One batch's input and output DMA buffers (PYNQ buffers: numpy arrays with device_address,
    flush() and invalidate())."""

    def __init__(self, ibuf, obuf, n: int):
        self.ibuf, self.obuf, self.n = ibuf, obuf, n


class IODMADriver:
    """FINN's IODMA accelerator on a PYNQ Overlay (the `pynq` package: PYNQ's on a board, a
    recording stand-in in tests)."""

    def __init__(self, bitfile: Path, info: dict, timeout_s: float = 10.0, poll_s: float = 2.5e-4):
        import pynq
        from pynq.ps import Clocks

        self.pynq, self.timeout_s, self.poll_s = pynq, timeout_s, poll_s
        io = info["io_shape_dict"]
        self.streams = Streams.from_io_shape_dict(io)
        self.overlay = pynq.Overlay(str(bitfile), download=True, device=None)
        Clocks.fclk0_mhz = FCLK_MHZ
        try:
            self.idma = [getattr(self.overlay, name) for name in io.get("idma_names", ["idma0"])]
            self.odma = [getattr(self.overlay, name) for name in io.get("odma_names", ["odma0"])]
        except AttributeError as e:
            raise LicError(f"{bitfile}: the overlay lacks an IODMA that settings.json names ({e})") from None
        self.expected_s: dict[int, float] = {}  # batch size -> its last duration: how long to sleep before polling
        self.reads = 0  # control-register reads while waiting (tests: the wait sleeps, it does not spin)
        self.loaded: str | None = None  # the weight set last written (shared builds; None: the bitstream's own)
        self._axilite: dict[str, object] = {}
        self._flush_bufs: BufferSet | None = None

    def axilite(self, interface: str):
        """The MMIO of a layer's AXI-lite region: the overlay's ip_dict entry ending in /interface
        (PYNQ names a cell with several AXI-lite slaves "<cell>/<interface>")."""
        if interface not in self._axilite:
            keys = [k for k in self.overlay.ip_dict if k == interface or k.endswith("/" + interface)]
            if len(keys) != 1:
                raise LicError(f"the overlay has {len(keys)} AXI-lite regions named {interface} ({keys}); is the "
                               f"bitstream the shared build its runtime_weights/weights.json belongs to?")
            entry = self.overlay.ip_dict[keys[0]]
            self._axilite[interface] = self.pynq.MMIO(int(entry["phys_addr"]), int(entry["addr_range"]))
        return self._axilite[interface]

    def load_weights(self, weight_set: WeightSet) -> dict:
        """Write a rate point's weights into every runtime-writable layer, each file to its layer's
        AXI-lite region in address order (a weight memory line is stored when its last word is written,
        finn-rtllib axilite.sv), then run one batch of zeros to flush what the weight streamers had
        prefetched (FINN's flush_accel). Nothing is written when the set is the one last loaded.
        The accelerator must be idle (the caller waited for its batch)."""
        if weight_set.name == self.loaded:
            return {"loaded": False, "set": weight_set.name}
        for dma in self.odma:
            if not dma.read(CTRL) & AP_IDLE:
                raise LicError("the accelerator's output IODMA is not idle: weights are written between batches")
        t = time.perf_counter()
        self.loaded = None  # a failed write leaves no set named as loaded
        for interface, words in zip(weight_set.interfaces, weight_set.words()):
            self.axilite(interface).write(0, words.astype("<u4").tobytes())
        if self._flush_bufs is None:
            self._flush_bufs = self.allocate(1)
        self.run(self._flush_bufs)
        self.loaded = weight_set.name
        return {"loaded": True, "set": weight_set.name, "bytes": weight_set.bytes,
                "seconds": time.perf_counter() - t, "estimated_switch_s": weight_set.estimated_switch_s}

    def allocate(self, n: int) -> BufferSet:
        s, device = self.streams, self.overlay.device
        alloc = lambda shape: self.pynq.allocate(shape=(n, *shape[1:]), dtype=np.uint8, cacheable=True, target=device)
        return BufferSet(alloc(s.ishape_packed), alloc(s.oshape_packed), n)

    def input_windows(self, bufs: BufferSet) -> np.ndarray:
        """The input buffer as the int8 windows [n, *ishape_normal[1:]] (plain INT8 streams)."""
        return bufs.ibuf.view(np.int8).reshape(bufs.n, *self.streams.ishape_normal[1:])

    def output_windows(self, bufs: BufferSet) -> np.ndarray:
        return bufs.obuf.view(np.int8).reshape(bufs.n, *self.streams.oshape_normal[1:])

    def flush(self, bufs: BufferSet) -> None:
        """Out of the ARM's caches into DDR, where the input IODMA reads: the ARM wrote the windows."""
        bufs.ibuf.flush()

    def kick(self, bufs: BufferSet) -> float:
        """Start both IODMAs on `bufs` (flushed); returns the start time. The accelerator runs one
        batch at a time: the previous one must have been waited for."""
        for dma in self.odma:
            if not dma.read(CTRL) & AP_IDLE:
                raise LicError("the accelerator's output IODMA is not idle: a batch is still running")
        for dma, buf in [(d, bufs.obuf) for d in self.odma] + [(d, bufs.ibuf) for d in self.idma]:
            address = int(buf.device_address)
            dma.write(ADDR_LO, address & 0xFFFFFFFF)
            dma.write(ADDR_HI, (address >> 32) & 0xFFFFFFFF)
            dma.write(COUNT, bufs.n)
            dma.write(CTRL, AP_START)
        return time.perf_counter()

    def start(self, bufs: BufferSet) -> float:
        self.flush(bufs)
        return self.kick(bufs)

    def wait(self, bufs: BufferSet, started: float) -> float:
        """Sleep until every output IODMA has reported ap_done; returns the time it was seen.
        ap_done clears when read, so one thread waits."""
        expected = self.expected_s.get(bufs.n)
        if expected:
            # a batch of n takes about as long as the last one did: sleep through most of it
            time.sleep(max(0.0, started + expected - 1e-3 - time.perf_counter()))
        poll, busy = self.poll_s, False
        for dma in self.odma:
            while not (status := dma.read(CTRL)) & AP_DONE:
                self.reads, busy = self.reads + 1, True
                if time.perf_counter() - started > self.timeout_s:
                    raise LicError(f"the accelerator did not finish a batch of {bufs.n} in {self.timeout_s:g} s "
                                   f"(output IODMA status 0x{status:x}): is the bitstream the one settings.json "
                                   f"belongs to?")
                time.sleep(poll)
                if not expected:
                    poll = min(2e-3, poll * 1.5)  # no estimate yet (first batch): back off to 2 ms
            self.reads += 1
        done = time.perf_counter()
        # Seen busy, done is known to within a poll; seen done at once, the batch may have ended any
        # time before (the waiter came late): then only let the estimate shrink.
        self.expected_s[bufs.n] = done - started if busy or not expected else min(expected, done - started)
        return done

    def finish(self, bufs: BufferSet) -> np.ndarray:
        """The output windows of a finished batch (a view of the output buffer), invalidated first:
        the IODMA wrote DDR behind the ARM's caches."""
        bufs.obuf.invalidate()
        return self.output_windows(bufs)

    def run(self, bufs: BufferSet) -> np.ndarray:
        """One batch, start to finish, as FINNDMAOverlay runs one."""
        self.wait(bufs, self.start(bufs))
        return self.finish(bufs)
