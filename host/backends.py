"""Where the student synthesis runs: one interface, several runtimes.

A backend maps integer latents y_hat [1, M, h, w] to the integer pixels the quantised student emits
[1, 3, 16h, 16w] (the host multiplies by the package's output scale afterwards). All backends
execute the same quantised network, so for the same input they must return the same integers;
tests/test_host_runtime.py compares them.

  onnx      onnxruntime on student.onnx (QCDQ), any input size; CPU, or CUDA when installed
  torch     the Brevitas model (quant_student.pt); needs torch + brevitas, the reference
            (quantize/torch_backend.py)
  finn-sim  FINN's HW-layer graph executed in Python (hls/finn_sim_backend.py, from `make hw`),
            fixed tile size
  pynq      the bitstream on a PYNQ board's fabric, through host/accelerator_driver.py (FINN's IODMAs
            on PYNQ's Overlay), fixed tile, a frame's tiles in one batch

`tile` is None for backends that take any size and the square latent tile size for those built for
one shape; the runtime (host/runtime.py) tiles the frame for the latter, and any backend can run
tiled: windows in the accelerator's stream layout (NHWC integers, host/tiling.py) through run_windows,
or without waiting for them (start_windows: the board's pipeline, host/runtime.py decode_stream).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from host.decoder_package import STUDENT_ONNX, DecoderPackage
from lic.errors import LicError

BACKENDS = ("onnx", "torch", "finn-sim", "pynq")  # lic/plugins.py has where each one lives


def default_backend() -> str:
    """pynq on a PYNQ board (the `pynq` package is there, and no onnxruntime wheel exists for its
    32-bit ARM), onnx elsewhere."""
    import importlib.util

    return "pynq" if importlib.util.find_spec("pynq") is not None else "onnx"


class Backend:
    name = "?"
    tile: int | None = None
    buffer_sets = 2  # frames in flight in the runtime's pipeline: one filled while the other runs
    last_timings: dict[str, float] = {}  # seconds of the last run_windows' parts beside the compute (pynq: cache)

    def run(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def input_windows(self, n: int, tile: int, channels: int, dtype) -> np.ndarray:
        """Where the runtime writes a frame's n windows [n, tile, tile, channels] for run_windows: a
        new array here; on a board, the accelerator's input DMA buffer itself."""
        return np.empty((n, tile, tile, channels), dtype)

    def run_windows(self, x: np.ndarray) -> np.ndarray:
        """A frame's windows in the accelerator's stream layout, integers [n, t, t, M] -> [n, 16t,
        16t, 3]: one run per window here; the fabric backends take them as the accelerator does
        (pynq: all windows in one DMA batch)."""
        return np.concatenate([self.run(x[i:i + 1].transpose(0, 3, 1, 2)) for i in range(len(x))]).transpose(0, 2, 3, 1)

    def window_slots(self, n: int, tile: int, channels: int, dtype, count: int) -> list[np.ndarray]:
        """`count` places for a frame's n windows, which the runtime fills in turn while the
        accelerator works on another (on a board: DMA buffer sets)."""
        return [np.empty((n, tile, tile, channels), dtype) for _ in range(count)]

    def start_windows(self, x: np.ndarray) -> "WindowJob":
        """Hand a frame's windows to the accelerator without waiting for its output: batches run
        one at a time, in the order given (here on one worker thread, the backend's "device")."""
        with _DEVICE_LOCK:
            if getattr(self, "_device", None) is None:
                self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lic-{self.name}")
        return WindowJob(self._device.submit(self.run_windows, x).result)


_DEVICE_LOCK = threading.Lock()


class WindowJob:
    """A batch the accelerator has been given: wait_done() returns once it has finished (the
    accelerator is free again), result() gives its output windows [n, T, T, 3]; each thread-safe,
    the work behind them done once."""

    def __init__(self, result, wait_done=None):
        self._result, self._wait_done = result, wait_done
        self._lock, self._out, self.done_at = threading.Lock(), None, None
        self.started_at, self.timings = time.perf_counter(), {}

    def wait_done(self) -> float:
        with self._lock:
            if self.done_at is None:
                if self._wait_done is not None:
                    self.done_at = self._wait_done()
                else:
                    self._out = self._result()
                    self.done_at = time.perf_counter()
            return self.done_at

    def result(self) -> np.ndarray:
        self.wait_done()
        with self._lock:
            if self._out is None:
                self._out = self._result()
            return self._out


def to_int_pixels(values: np.ndarray, scale: float) -> np.ndarray:
    # Dequantised outputs are int * scale in float32: dividing by the same scale and rounding
    # recovers the integer exactly for the |int| <= 2^(bits-1) the output quantiser allows.
    return np.rint(values / np.float32(scale)).astype(np.int16)


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, package: DecoderPackage, hw_dir: Path | None = None, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise LicError("the onnx backend needs onnxruntime (pip install onnxruntime)") from None
        so = ort.SessionOptions()
        so.log_severity_level = 3  # the TorchScript exporter lists biases as graph inputs: ort warns per bias
        if os.environ.get("LIC_ORT_THREADS"):
            so.intra_op_num_threads = int(os.environ["LIC_ORT_THREADS"])
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                  if p in ort.get_available_providers()]
        path = package.path(STUDENT_ONNX)
        try:
            self.session = ort.InferenceSession(os.fspath(path), so, providers=providers)
        except Exception as e:  # onnxruntime's own exception types: a damaged or foreign model
            raise LicError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) < 1 or len(outputs) < 1 or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4 \
                or inputs[0].shape[1] != package.latent_channels or outputs[0].shape[1] != 3:
            raise LicError(f"{path}: takes {inputs[0].shape if inputs else None} and gives "
                           f"{outputs[0].shape if outputs else None}; the manifest says [N, "
                           f"{package.latent_channels}, h, w] latents to [N, 3, H, W] pixels")
        self.input_name = inputs[0].name
        self.scale = package.output_scale

    def run(self, y: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self.input_name: y.astype(np.float32)})[0]
        except (MemoryError, LicError):
            raise
        except Exception as e:  # onnxruntime's exceptions derive from Exception only, not RuntimeError
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            if "alloc" in first.lower():  # lic's top level makes this one line, as for torch and numpy
                raise MemoryError(first) from None
            raise LicError(f"onnxruntime failed on a {list(y.shape)} input ({first})") from None
        return to_int_pixels(out, self.scale)


def make_backend(name: str, package: DecoderPackage, *, hw_dir: Path | None = None) -> Backend:
    """The backend called `name` (lic/plugins.py says where each lives: those needing torch or FINN
    outside host/, which imports neither)."""
    from lic import plugins

    if name not in plugins.BACKENDS:
        raise LicError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return plugins.load(plugins.BACKENDS[name])(package, hw_dir=hw_dir)
