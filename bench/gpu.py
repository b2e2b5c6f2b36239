"""Measured GPU rows of `lic bench --device cuda`: synthesis on the GPU, energy from NVML.

Per frame set, decoder and precision: the PSNR/MS-SSIM/VIF of that precision's output for every
frame (batch 1), then two windows of repeated synthesis (batch 1, and the batch that maximises
throughput, found by doubling until it stops paying or memory runs out), each at least `window`
seconds, with NVML's energy counter read at both ends. Idle power is measured once, before any work,
and reported beside (never silently subtracted): the rows also give joules above idle. The entropy
stages (parse, rANS, h_s) run on the host CPU of the same machine; their times are in stages_ms.
"""

from __future__ import annotations

import platform
import sys

import torch
from tqdm import tqdm

from bench.energy import NvmlCounter, idle_watts, run_window
from bench.measure import (PRECISIONS, STAGES, best_batch, cpu_description, on_device, quality,
                           synthesis_window, synthesiser)
from bench.students import DECODERS
from host.backends import OnnxBackend
from host.runtime import HostDecoder, StageTimes
from lic.errors import LicError


class GpuSession:
    def __init__(self, idle_seconds: float):
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        try:
            self.counter = NvmlCounter(index)
            why_not = None
        except LicError as e:  # energy unknown (null), speed still measured
            self.counter, why_not = None, str(e)
            print(f"lic bench: GPU energy not measurable here: {why_not}", file=sys.stderr)
        self.idle_watts = idle_watts(self.counter, idle_seconds)
        self.machine = {"gpu": self.counter.device_name if self.counter else props.name,
                        "gpu_memory_gib": props.total_memory / 2**30,
                        "power_limit_watts": self.counter.power_limit_w if self.counter else None,
                        "idle_watts": self.idle_watts,
                        "idle_seconds": idle_seconds, "host_cpu": cpu_description(), "torch": torch.__version__,
                        "cuda": torch.version.cuda, "python": platform.python_version()}
        self.energy_how = (f"not measurable here: {why_not}" if why_not else
                           f"NVML total-energy counter over the window (GPU board only; idle "
                           f"{self.idle_watts:.1f} W measured separately over {idle_seconds:.0f} s, not subtracted)")


def _configs(decoder: str, quant_label: str):
    """(precision label, torch dtype or None for onnxruntime) pairs measured for a decoder."""
    if decoder != "quant_student":
        return [(name, dt) for name, dt in PRECISIONS.items()]
    out = [(f"{quant_label} emulated in fp32 (Brevitas)", torch.float32)]
    try:
        import onnxruntime as ort  # why: optional here: a GPU machine may lack onnxruntime's CUDA build

        if "CUDAExecutionProvider" in ort.get_available_providers():
            out.append((f"{quant_label} QCDQ (onnxruntime CUDA EP)", None))
    except ImportError:
        pass
    return out


def _ort_cuda_synthesiser(models):
    """The package's ONNX on onnxruntime's CUDA provider, through the host runtime (numpy in and out:
    the host-device copies are part of its time)."""
    host = HostDecoder(models.package, OnnxBackend(models.package, providers=["CUDAExecutionProvider"]))

    def run(lic, y):
        times = StageTimes()
        rgb = host.synthesise(lic, y, times)
        s = times.seconds
        return rgb, {"synthesis": s["synthesis"] * 1e3, "stitch": s["dequantise"] * 1e3}
    return run, host


def gpu_rows(models, fs, files, entropy, window: float, session, device: str = "cuda",
             probe_seconds: float = 1.0, max_batch: int = 64) -> list[dict]:
    """Rows for one frame set. `session` gives counter, idle_watts and machine (GpuSession on a GPU);
    the loop runs unchanged on device "cpu", which is how the tests exercise it."""
    cuda = device.startswith("cuda")
    n = len(files)
    host_ms = {k: sum(e.ms.get(k, 0.0) for e in entropy) / n for k in ("parse", "rans_z", "h_s", "rans_y")}
    rows = []
    for decoder in DECODERS:
        for label, dtype in _configs(decoder, models.quant_label):
            if dtype is None:
                run, host = _ort_cuda_synthesiser(models)
            else:
                module = on_device(models.modules[decoder], device, dtype)
                run = synthesiser(models, decoder, device, dtype, module)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            run(entropy[0].lic, entropy[0].y)
            outputs, synth = [], {"synthesis": 0.0, "stitch": 0.0}
            for e in tqdm(entropy, desc=f"gpu {fs.name} {decoder} {label}", unit="frame", file=sys.stderr,
                          leave=False):
                rgb, ms = run(e.lic, e.y)
                outputs.append(rgb)
                for k in synth:
                    synth[k] += ms[k]
            q = quality(fs, files, outputs)
            ys = [e.y for e in entropy]
            if dtype is None:
                w = run_window(lambda: run(entropy[0].lic, entropy[0].y), session.counter, window)
                windows = [(1, {"fps": w.iterations / w.seconds, "seconds": w.seconds, "frames": w.iterations,
                                "joules": w.joules, "watts": w.watts,
                                "joules_per_frame": None if w.joules is None else w.joules / w.iterations})]
            else:
                windows = [(1, synthesis_window(module, ys, 1, device, dtype, session.counter, window))]
                b, _ = best_batch(module, ys, device, dtype, probe_seconds, max_batch)
                if b > 1:
                    windows.append((b, synthesis_window(module, ys, b, device, dtype, session.counter, window)))
            peak = torch.cuda.max_memory_allocated() if cuda else None
            for batch, w in windows:
                above = (None if session.idle_watts is None or w["joules"] is None else
                         (w["watts"] - session.idle_watts) * w["seconds"] / w["frames"])
                rows.append({
                    "platform": "gpu", "device": session.machine["gpu"], "decoder": decoder, "precision": label,
                    "runtime": (f"torch {torch.__version__} CUDA {torch.version.cuda}" if dtype is not None
                                else "onnxruntime CUDA EP"),
                    "batch": batch, "scope": "synthesis", "frame_set": fs.name, "width": fs.width,
                    "height": fs.height, "frames": w["frames"], "fps": w["fps"], "watts": w["watts"],
                    "joules_per_frame": w["joules_per_frame"], "joules_per_frame_above_idle": above,
                    "idle_watts": session.idle_watts,
                    "stages_ms": {**host_ms, "synthesis": 1e3 / w["fps"], "stitch": synth["stitch"] / n},
                    "gpu_peak_memory_bytes": peak, "quality_frames": n, "source": "measured",
                    "method": f"GPU synthesis only, batch {batch}, {w['seconds']:.1f} s window of repeated work "
                              f"synchronised per call; energy: {session.energy_how}; entropy stages on the host "
                              f"CPU ({session.machine['host_cpu']})",
                    **q, **models.complexity[decoder].row_fields(
                        fs.width, fs.height, activation_bytes=2 if dtype in (torch.float16, torch.bfloat16) else 4)})
            module = None  # free this copy's device memory before the next
            if cuda:
                torch.cuda.empty_cache()
    assert all(k in STAGES for r in rows for k in r["stages_ms"])
    return rows
