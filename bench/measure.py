"""Measured rows of `lic bench`: the three decoders on this machine's CPU, or on a CUDA GPU.

Every decoder decodes the same .lic v2 files (teacher encoder + integer h_s, the files a board
decodes): the entropy half (parse, rANS z, integer h_s, rANS y) is the torch-free host runtime, timed
once per file and shared by all decoders; then each decoder's synthesis turns the same y_hat into
pixels:
  teacher        the teacher's float g_s (torch; GDN), fp32 on the CPU; fp32/fp16/bf16 on a GPU
  float_student  the distilled student before quantisation (torch)
  quant_student  the quantised student: onnxruntime on the package's QCDQ ONNX (the host runtime's own
                 backend, integer-exact; float32 arithmetic on CPU) and, on a GPU, Brevitas in torch
"stitch" is the step from the network's output to the cropped 8-bit image (for the quantised
student, the host's dequantising multiply; with tiles, also their stitching).
"""

from __future__ import annotations

import copy
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch
from tqdm import tqdm

from bench import metrics
from bench.energy import run_window
from bench.frames import FrameSet
from bench.students import DECODERS
from host.backends import OnnxBackend
from host.decode_cli import default_package
from host.decoder_package import DecoderPackage, sha256_file
from host.runtime import HostDecoder, StageTimes
from lic.errors import LicError
from quantize.qat import load_quant_student
from quantize.quant_student import convs
from quantize.ship_students import STUDENTS_MANIFEST, read_students
from training.distill import load_float_student
from training.student_decoder import count_parameters, kmac_per_pixel
from training.teacher_codec import encode, package_encoder, to_rgb8

STAGES = ("parse", "rans_z", "h_s", "rans_y", "synthesis", "stitch")
_RUNTIME_STAGE = {"integer_hs": "h_s", "dequantise": "stitch"}


@dataclass
class Complexity:
    kmac_per_pixel: float
    parameters: int
    weight_bits: float             # as stored for this runtime; a mean over layers of mixed widths
    activation_bytes_per_latent: float  # largest layer input + output, float32, per latent pixel

    def row_fields(self, width: int, height: int, weight_bits: int | None = None,
                   activation_bytes: int = 4) -> dict:
        hp, wp = -(-height // 64) * 64, -(-width // 64) * 64   # what the decoder computes on
        bits = weight_bits or self.weight_bits
        return {"kmac_per_pixel": self.kmac_per_pixel,
                "gmac_per_frame": self.kmac_per_pixel * 1e3 * hp * wp / 1e9,
                "parameters": self.parameters, "weights_bytes": int(self.parameters * bits / 8),
                "activation_peak_bytes": int(self.activation_bytes_per_latent * (hp // 16) * (wp // 16)
                                             * activation_bytes / 4)}


@dataclass
class BenchModels:
    """The default rate point's encoder, its decoder package, and the three decoders."""
    package: object
    encoder: object                 # training.teacher_codec.EntropyModels (teacher + integer h_s)
    modules: dict[str, torch.nn.Module]
    complexity: dict[str, Complexity]
    quant_label: str
    host: object = None             # host.runtime.HostDecoder on the onnx backend
    info: dict = field(default_factory=dict)


def _mean_weight_bits(quant_student, qcfg) -> float:
    sizes = [c.weight.numel() for c in convs(quant_student)]
    return sum(n * b for n, b in zip(sizes, qcfg.weight_bits_list(len(sizes)))) / sum(sizes)


def _activation_bytes_per_latent(module: torch.nn.Module, channels: int, probe: int = 8) -> float:
    peak = 0

    def hook(m, inp, out):
        nonlocal peak
        x, o = getattr(inp[0], "value", inp[0]), getattr(out, "value", out)
        peak = max(peak, (x.numel() + o.numel()) * 4)

    leaves = [m for m in module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, probe, probe))
    finally:
        for h in handles:
            h.remove()
    return peak / (probe * probe)


def load_models() -> BenchModels:
    package = DecoderPackage.load(default_package())
    encoder = package_encoder(package)
    quality = package.manifest["quality"]
    entry = next((e for e in read_students(STUDENTS_MANIFEST) if e["quality"] == quality), None)
    if entry is None:
        raise LicError(f"no shipped float student for quality {quality} (training/students/students.json)")
    float_student, _, fp = load_float_student(entry["float"])
    if fp != encoder.teacher.decoder_fingerprint:
        raise LicError(f"the q{quality} float student was distilled from another teacher")
    quant_student, _, qcfg, _ = load_quant_student(package.path("quant_student.pt"))
    teacher_gs = encoder.teacher.model.g_s.eval()
    m = package.latent_channels
    modules = {"teacher": teacher_gs, "float_student": float_student, "quant_student": quant_student}
    student_params = package.manifest["student"]["parameters"]
    complexity = {
        "teacher": Complexity(kmac_per_pixel(teacher_gs, (4, 4), m), count_parameters(teacher_gs), 32,
                              _activation_bytes_per_latent(teacher_gs, m)),
        "float_student": Complexity(kmac_per_pixel(float_student, (4, 4), m), count_parameters(float_student), 32,
                                    _activation_bytes_per_latent(float_student, m)),
        "quant_student": Complexity(package.manifest["student"]["kmac_per_pixel"], student_params,
                                    _mean_weight_bits(quant_student, qcfg), _activation_bytes_per_latent(float_student, m)),
    }
    backend = OnnxBackend(package)  # threads: onnxruntime's default, or LIC_ORT_THREADS
    return BenchModels(package, encoder, modules, complexity,
                       qcfg.label(), HostDecoder(package, backend),
                       {"quality": quality, "teacher": encoder.teacher.name, "package": package.name,
                        # which weights were decoded: a later report compares these before quoting quality
                        "file_fingerprint": package.manifest["file_fingerprint"],
                        "quant_student_sha256": package.manifest["files"]["quant_student.pt"],
                        "float_student_sha256": sha256_file(Path(entry["float"]))})


def encode_frames(models: BenchModels, fs: FrameSet) -> list[bytes]:
    return [encode(models.encoder, rgb) for _, rgb in tqdm(fs.frames, desc=f"encode {fs.name}", unit="frame",
                                                             file=sys.stderr, leave=False)]


@dataclass
class EntropyResult:
    lic: object
    y: np.ndarray
    ms: dict[str, float]


def entropy_half(models: BenchModels, fs: FrameSet, files: list[bytes], counter=None) -> tuple[list[EntropyResult], float | None]:
    """The ARM's share on this CPU, per file: stage times, and the energy of the whole pass."""
    out = []
    e0 = counter.joules() if counter else None
    for (name, _), data in zip(fs.frames, files):
        lic, y, times = models.host.entropy_decode(data, name)
        out.append(EntropyResult(lic, y, {_RUNTIME_STAGE.get(k, k): v * 1e3 for k, v in times.seconds.items()}))
    return out, (counter.joules() - e0 if counter else None)


def synthesiser(models: BenchModels, decoder: str, device: str = "cpu", dtype: torch.dtype = torch.float32,
                module: torch.nn.Module | None = None) -> Callable:
    """(lic, y int32 [M,h,w]) -> (uint8 image, {synthesis, stitch} ms) for one decoder; `module` is
    that decoder already on `device` in `dtype` (default: models.modules[decoder], fp32 on the CPU)."""
    if decoder == "quant_student" and device == "cpu" and module is None:
        def run(lic, y):
            times = StageTimes()
            rgb = models.host.synthesise(lic, y, times)
            return rgb, {_RUNTIME_STAGE.get(k, k): v * 1e3 for k, v in times.seconds.items()}
        return run

    module = module if module is not None else models.modules[decoder]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(lic, y):
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = module(torch.from_numpy(y).to(device=device, dtype=dtype)[None])
            sync()
            t1 = time.perf_counter()
            rgb = to_rgb8(x[..., :lic.height, :lic.width].float().cpu())
        return rgb, {"synthesis": (t1 - t0) * 1e3, "stitch": (time.perf_counter() - t1) * 1e3}
    return run


def on_device(module: torch.nn.Module, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of `module` on device/dtype: casting the original to fp16 and back would round its weights."""
    return copy.deepcopy(module).to(device=device, dtype=dtype)


def quality(fs: FrameSet, files: list[bytes], outputs: list[np.ndarray]) -> dict:
    """Mean bpp / PSNR / MS-SSIM / VIF of one decoder's outputs against the originals."""
    recs = []
    for (_, rgb), data, out in zip(fs.frames, files, outputs):
        h, w = rgb.shape[:2]
        recs.append({"bpp": metrics.bpp(len(data), h, w), "psnr": metrics.psnr(rgb, out),
                     "ms_ssim": metrics.ms_ssim(rgb, out), "vif": metrics.vif_p(rgb, out)})
    return {k: float(np.mean([r[k] for r in recs])) if all(r[k] is not None for r in recs) else None
            for k in recs[0]}


def cpu_description() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    return f"{name} ({os.cpu_count()} logical CPUs)"


def _per_frame(total: dict[str, float], n: int) -> dict[str, float]:
    return {k: total.get(k, 0.0) / n for k in STAGES}


def cpu_rows(models: BenchModels, fs: FrameSet, files: list[bytes], counter, energy_how: str) -> list[dict]:
    """One full-decode row per decoder: serial stages, batch 1, one pass over the frame set."""
    load_before = os.getloadavg()[0]
    entropy, entropy_j = entropy_half(models, fs, files, counter)
    n = len(files)
    threads = torch.get_num_threads()
    rows = []
    for decoder in DECODERS:
        run = synthesiser(models, decoder)
        run(entropy[0].lic, entropy[0].y)  # warm-up: lazy initialisation is not per-frame work
        totals = {}
        for e in entropy:
            for k, v in e.ms.items():
                totals[k] = totals.get(k, 0.0) + v
        outputs = []
        e0 = counter.joules() if counter else None
        for e in tqdm(entropy, desc=f"cpu {fs.name} {decoder}", unit="frame", file=sys.stderr, leave=False):
            rgb, ms = run(e.lic, e.y)
            outputs.append(rgb)
            for k, v in ms.items():
                totals[k] = totals.get(k, 0.0) + v
        joules = (counter.joules() - e0 + entropy_j) if counter else None
        load = (load_before, os.getloadavg()[0])
        stages = _per_frame(totals, n)
        seconds = sum(stages.values()) / 1e3
        runtime = (f"onnxruntime {_ort_version()} (CPU EP)" if decoder == "quant_student"
                   else f"torch {torch.__version__}")
        row = {"platform": "cpu", "device": cpu_description(), "decoder": decoder,
               "precision": models.quant_label if decoder == "quant_student" else "fp32",
               "runtime": runtime, "batch": 1, "scope": "full decode",
               "frame_set": fs.name, "width": fs.width, "height": fs.height, "frames": n,
               "fps": 1.0 / seconds, "stages_ms": stages, "threads": threads, "load_average": load,
               "joules_per_frame": None if joules is None else joules / n,
               "source": "measured",
               "method": f"wall time of each stage (time.perf_counter), serial, one pass over {n} frames after "
                         f"one warm-up frame; {threads} torch threads; 1-min load average of the machine "
                         f"{load[0]:.1f} before, {load[1]:.1f} after (other processes share the cores); "
                         f"energy: {energy_how}",
               **quality(fs, files, outputs),
               **models.complexity[decoder].row_fields(fs.width, fs.height)}
        row["watts"] = None if joules is None else row["joules_per_frame"] * row["fps"]
        rows.append(row)
    return rows


def _ort_version() -> str:
    return onnxruntime.__version__


# --- GPU -------------------------------------------------------------------------------------------

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def batch_of(ys: list[np.ndarray], batch: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """`batch` latents of the most common shape among ys, cycled, stacked on the device."""
    shapes = [y.shape for y in ys]
    common = max(set(shapes), key=shapes.count)
    same = [y for y in ys if y.shape == common]
    return torch.stack([torch.from_numpy(same[i % len(same)]) for i in range(batch)]).to(device=device, dtype=dtype)


def synthesis_window(module: torch.nn.Module, ys: list[np.ndarray], batch: int, device: str,
                     dtype: torch.dtype, counter, seconds: float) -> dict:
    """Throughput and energy of repeated synthesis of `batch` frames at once, synchronised per call."""
    x = batch_of(ys, batch, device, dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        with torch.inference_mode():
            module(x)
        sync()

    step()  # warm-up (cuDNN autotuning, allocations)
    w = run_window(step, counter, seconds)
    frames = w.iterations * batch
    return {"fps": frames / w.seconds, "seconds": w.seconds, "frames": frames, "joules": w.joules,
            "watts": w.watts, "joules_per_frame": None if w.joules is None else w.joules / frames}


def best_batch(module, ys, device, dtype, probe_seconds: float, max_batch: int = 64) -> tuple[int, float]:
    """Largest throughput over batch 1, 2, 4, ...: stop at out-of-memory or when doubling gains < 5%."""
    if max_batch < 2:
        return 1, None
    best, best_fps = 1, synthesis_window(module, ys, 1, device, dtype, None, probe_seconds)["fps"]
    b = 2
    while b <= max_batch:
        try:
            fps = synthesis_window(module, ys, b, device, dtype, None, probe_seconds)["fps"]
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        if fps < best_fps * 1.05:
            break
        best, best_fps, b = b, fps, b * 2
    return best, best_fps
