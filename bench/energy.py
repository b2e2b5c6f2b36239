"""Energy counters and measurement windows for `lic bench`.

Energy is read from hardware counters around long windows of repeated work, as Zeus does it:
  - CPU: Intel/AMD RAPL through /sys/class/powercap (package domains; DRAM not included). The
    counter covers the whole package, so other processes' work on the same machine is counted too.
  - GPU: NVML's total-energy counter (nvmlDeviceGetTotalEnergyConsumption, millijoules since the
    driver loaded; Volta and newer), read through nvidia-ml-py. It covers the GPU board only.
Where no counter is readable the figure is None ("not measurable here"), never a guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lic.errors import LicError

POWERCAP = Path("/sys/class/powercap")


class RaplCounter:
    """Sum of the package domains' energy_uj counters, with wrap-around handled."""

    name = "RAPL package energy (/sys/class/powercap)"

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self.ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self._last = [self._raw(d) for d in domains]
        self._total_uj = 0

    @staticmethod
    def _raw(d: Path) -> int:
        return int((d / "energy_uj").read_text())

    def joules(self) -> float:
        for i, d in enumerate(self.domains):
            now = self._raw(d)
            delta = now - self._last[i]
            self._total_uj += delta if delta >= 0 else delta + self.ranges[i]
            self._last[i] = now
        return self._total_uj / 1e6


def rapl_counter(root: Path = POWERCAP) -> tuple[RaplCounter | None, str]:
    """(counter, how) or (None, why not)."""
    if not root.is_dir():
        return None, f"not measurable here: no {root} (RAPL not exposed to this machine)"
    domains = []
    for d in sorted(root.glob("*rapl:*")):
        name = d / "name"
        if d.name.count(":") == 1 and name.is_file() and name.read_text().strip().startswith("package"):
            domains.append(d)
    if not domains:
        return None, f"not measurable here: no RAPL package domain under {root}"
    try:
        return RaplCounter(domains), f"RAPL package energy, {len(domains)} package(s), DRAM excluded"
    except (OSError, ValueError) as e:
        return None, f"not measurable here: RAPL counters not readable ({e})"


class NvmlCounter:
    """NVML total energy of one GPU (the one torch uses)."""

    name = "NVML total-energy counter"

    def __init__(self, torch_device_index: int = 0):
        try:
            import pynvml  # why: optional, only on a GPU machine
        except ImportError:
            raise LicError("GPU energy needs nvidia-ml-py (pinned in requirements.lock): "
                           "pip install --no-deps nvidia-ml-py") from None

        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
            # torch's device index counts only CUDA_VISIBLE_DEVICES; NVML's counts all: match by UUID.
            uuid = getattr(torch.cuda.get_device_properties(torch_device_index), "uuid", None)
            try:
                self.handle = pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except pynvml.NVMLError:
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(torch_device_index)
            name = pynvml.nvmlDeviceGetName(self.handle)
            self.device_name = name.decode() if isinstance(name, bytes) else name
            self.power_limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000.0
            self.joules()  # pre-Volta GPUs have no total-energy counter: NVMLError_NotSupported here
        except pynvml.NVMLError as e:
            raise LicError(f"NVML energy counter not readable ({e})") from None

    def joules(self) -> float:
        return self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0


@dataclass
class Window:
    iterations: int
    seconds: float
    joules: float | None

    @property
    def watts(self) -> float | None:
        return None if self.joules is None else self.joules / self.seconds


def run_window(step: Callable[[], None], counter, min_seconds: float, min_iterations: int = 3) -> Window:
    """Repeat step() (one unit of work, synchronised: it returns when the work is done) until at least
    min_seconds and min_iterations have passed, reading the energy counter at both ends."""
    e0 = counter.joules() if counter else None
    t0 = time.perf_counter()
    n = 0
    while True:
        step()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds and n >= min_iterations:
            break
    joules = counter.joules() - e0 if counter else None
    return Window(n, elapsed, joules)


def idle_watts(counter, seconds: float) -> float | None:
    """Mean power with nothing submitted (reported beside, never subtracted silently)."""
    if counter is None:
        return None
    return run_window(lambda: time.sleep(min(0.5, seconds)), counter, seconds, 1).watts
