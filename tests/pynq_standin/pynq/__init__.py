"""A recording stand-in for the parts of PYNQ 3 that FINN's IODMA drivers use, for tests on x86
only (never installed): Overlay (IPs by name, each an MMIO with read/write), allocate (buffers with
device_address, flush, invalidate) and pynq.ps.Clocks. Everything they do is appended to LOG:

  ("overlay", bitfile, download)   ("fclk0_mhz", mhz)   ("allocate", shape, dtype, cacheable, address)
  ("write", ip, offset, value)     ("read", ip, offset, value)
  ("flush", address)               ("invalidate", address)
  ("write", region, offset, word)  one per 32-bit word an MMIO of AXILITE is written (bytes: word by word)

Its fabric is an IODMA pair as FINN's Zynq shell has it: once every input and output IODMA has
been started (register 0x00 = 1) it reads COUNT batches from the input buffer's DDR copy, runs
FABRIC (set by the test: the real student on those windows), keeps the accelerator busy for at
least DELAY_S, writes the output buffer's DDR copy and raises the output IODMA's ap_done (bit 1,
cleared when read) and ap_idle (bit 2). A buffer's numpy array is the ARM's cached view and its DDR
copy is separate: the DMA sees only what flush() wrote, and the ARM sees the DMA's output only
after invalidate(). TIMELINE gets ("fabric", start, end, count) per batch.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np

LOG: list[tuple] = []
TIMELINE: list[tuple] = []
FABRIC = None  # callable(input bytes uint8 [count, *packed shape], count) -> output bytes uint8
DELAY_S = 0.0
LOG_READS = True  # off while a driver spins on a register (every read is still counted in READS)
READS: dict[str, int] = {}
# AXI-lite regions of the overlay beside the IODMAs (a shared build's runtime-writable layers), as
# PYNQ's ip_dict names them: {"<cell>/<interface>": (phys_addr, addr_range)}; set by the test
AXILITE: dict[str, tuple[int, int]] = {}
MEMORY: dict[str, np.ndarray] = {}  # their contents, uint32 words, as written

_lock = threading.RLock()
_buffers: dict[int, "PynqBuffer"] = {}
_count = [0]


def reset() -> None:
    global FABRIC, DELAY_S, LOG_READS
    with _lock:
        LOG.clear()
        TIMELINE.clear()
        _buffers.clear()
        _count[0] = 0
        READS.clear()
        FABRIC, DELAY_S, LOG_READS = None, 0.0, True
        AXILITE.clear()
        MEMORY.clear()


class MMIO:
    """pynq.MMIO over one AXILITE region: write(offset, int) one register, write(offset, bytes) the
    words in order (PYNQ's write_mm), each logged; outside the region is an error, as on the board."""

    def __init__(self, base_addr: int, length: int = 4, **kwargs):
        names = [k for k, (base, size) in AXILITE.items() if base == base_addr]
        if len(names) != 1 or length > AXILITE[names[0]][1]:
            raise RuntimeError(f"no AXI-lite region of {length} bytes at 0x{base_addr:x}")
        self.name, self.base_addr, self.length = names[0], base_addr, length
        MEMORY.setdefault(self.name, np.zeros(length // 4, np.uint32))

    def write(self, offset: int, data) -> None:
        words = [int(data)] if isinstance(data, int) else list(np.frombuffer(bytes(data), "<u4"))
        if offset % 4 or offset + 4 * len(words) > self.length:
            raise RuntimeError(f"{self.name}: write of {len(words)} words at {offset} outside its {self.length} bytes")
        with _lock:
            for i, w in enumerate(words):
                LOG.append(("write", self.name, offset + 4 * i, int(w)))
                MEMORY[self.name][offset // 4 + i] = w

    def read(self, offset: int = 0, length: int = 4) -> int:
        return int(MEMORY[self.name][offset // 4])


class PynqBuffer(np.ndarray):
    """pynq.buffer.PynqBuffer: the array the ARM reads and writes, plus the DDR behind it."""

    def __array_finalize__(self, obj):
        self.device_address = getattr(obj, "device_address", None)
        self.ddr = getattr(obj, "ddr", None)

    def flush(self):
        with _lock:
            LOG.append(("flush", self.device_address))
            self.ddr[...] = np.asarray(self).reshape(-1).view(np.uint8)

    def invalidate(self):
        with _lock:
            LOG.append(("invalidate", self.device_address))
            np.asarray(self).reshape(-1).view(np.uint8)[...] = self.ddr

    def freebuffer(self):
        pass


def allocate(shape, dtype="u4", target=None, cacheable=True, **kwargs):
    with _lock:
        k = _count[0]
        _count[0] += 1
        # above 4 GiB on purpose, so that a driver that drops the high word of an address is caught
        address = ((k + 1) << 32) | (0x10000000 + (k << 24))
        buf = np.zeros(shape, dtype).view(PynqBuffer)
        buf.device_address = address
        buf.ddr = np.zeros(buf.nbytes, np.uint8)
        _buffers[address] = buf
        LOG.append(("allocate", tuple(int(s) for s in np.atleast_1d(shape)), np.dtype(dtype).name, bool(cacheable),
                    address))
        return buf


class _IODMA:
    """One FINN IODMA's s_axi_control: ap_ctrl_hs at 0x00, buffer address at 0x10/0x14, count at 0x1C."""

    def __init__(self, overlay: "Overlay", name: str):
        self.overlay, self.name, self.regs = overlay, name, {0x10: 0, 0x14: 0, 0x1C: 0}
        self.running, self.done = False, False

    def read(self, offset: int) -> int:
        with _lock:
            if offset == 0:
                value = int(self.running) | (int(self.done) << 1) | (int(not self.running) << 2)
                self.done = False  # ap_done clears when read
            else:
                value = self.regs.get(offset, 0)
            READS[self.name] = READS.get(self.name, 0) + 1
            if LOG_READS:
                LOG.append(("read", self.name, offset, value))
            return value

    def write(self, offset: int, value: int) -> None:
        with _lock:
            LOG.append(("write", self.name, offset, int(value)))
            if offset == 0:
                if value & 1:
                    if self.running:
                        raise RuntimeError(f"{self.name} started while running")
                    self.running = True
                    self.overlay._maybe_run()
            else:
                self.regs[offset] = int(value)


class Overlay:
    def __init__(self, bitfile_name, download=True, device=None, **kwargs):
        LOG.append(("overlay", str(bitfile_name), bool(download)))
        self.device = "standin-device"
        self._ips: dict[str, _IODMA] = {}

    @property
    def ip_dict(self):
        return {**{name: {} for name in self._ips},
                **{name: {"phys_addr": base, "addr_range": size} for name, (base, size) in AXILITE.items()}}

    def __getattr__(self, name):
        if re.fullmatch(r"[io]dma\d+", name):
            ips = self.__dict__.setdefault("_ips", {})
            return ips.setdefault(name, _IODMA(self, name))
        raise AttributeError(name)

    def _maybe_run(self) -> None:
        dmas = list(self._ips.values())
        if not all(d.running for d in dmas):
            return
        idma = next(d for d in dmas if d.name.startswith("i"))
        odma = next(d for d in dmas if d.name.startswith("o"))
        src = _buffers[idma.regs[0x10] | (idma.regs[0x14] << 32)]
        dst = _buffers[odma.regs[0x10] | (odma.regs[0x14] << 32)]
        count = idma.regs[0x1C]
        if odma.regs[0x1C] != count:
            raise RuntimeError("input and output IODMAs started with different counts")
        threading.Thread(target=self._run, args=(idma, odma, src, dst, count), daemon=True).start()

    def _run(self, idma, odma, src, dst, count):
        t0 = time.perf_counter()
        per = src.ddr.size // src.shape[0]
        x = src.ddr[:count * per].reshape(count, *src.shape[1:]).copy()
        y = np.ascontiguousarray(FABRIC(x, count)).reshape(-1).view(np.uint8)
        time.sleep(max(0.0, t0 + DELAY_S - time.perf_counter()))
        with _lock:
            dst.ddr[:y.size] = y
            t1 = time.perf_counter()
            TIMELINE.append(("fabric", t0, t1, count))
            for d in (idma, odma):
                d.running = False
            odma.done = True


class Bitstream:
    """Imported by finn-plus-driver's instrumentation overlays, which the tests do not run."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("pynq.Bitstream is not part of the stand-in")
