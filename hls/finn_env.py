"""Every workaround that lets finn-plus 1.6.1 run its Vivado-free steps on a machine without Vivado.

FINN's flow assumes a Xilinx installation from the first import. The steps up to HLS/RTL code
generation do not need one, so these shims make them importable and runnable here; each says the
upstream reason. Nothing here changes what FINN computes.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FINN_BUILD_DIR = REPO / "build" / "finn"


def vivado_available() -> bool:
    root = os.environ.get("XILINX_VIVADO")
    return bool(root) and Path(root, "bin", "vivado").exists()


def prepare_finn_import(build_dir: Path | None = None) -> None:
    """Call before importing finn.builder.* or finn.transformation.fpgadataflow.*."""
    # FINN writes generated code and temporary models under FINN_BUILD_DIR and refuses to run
    # without it (finn.util.basic.make_build_dir).
    build_dir = Path(build_dir or os.environ.get("FINN_BUILD_DIR") or DEFAULT_FINN_BUILD_DIR).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    os.environ["FINN_BUILD_DIR"] = str(build_dir)
    if not vivado_available():
        # finn.builder.build_dataflow_steps does `from finn.xsi import SimEngine` at import time;
        # finn.xsi resolves that lazy name by checking XILINX_VIVADO and raises OSError without it
        # (finn/xsi/__init__.py, __getattr__ -> ensure_available). Only rtlsim uses SimEngine, and
        # rtlsim needs Vivado anyway, so binding the lazy names to None is safe here.
        import finn.xsi as xsi

        for name in getattr(xsi, "_LAZY_NAMES", ()):
            if name not in vars(xsi):
                setattr(xsi, name, None)


def fold_upsample_layers(model, target_cycles: int):
    """Give each UpsampleNearestNeighbour the smallest SIMD (a divisor of its channels) that meets
    `target_cycles`.

    Why: finn-plus 1.6.1's SetFolding has no rule for UpsampleNearestNeighbour ("SetFolding doesn't
    know how to handle op_type UpsampleNearestNeighbour_hls") and leaves SIMD at 1, i.e. one channel
    per cycle: at the last x2 stage of a 32-latent tile that alone is 512 x 512 x channels cycles per
    tile. Its HLS template (upsample_nn<..., CF, CF>) and get_exp_cycles do support SIMD."""
    from qonnx.custom_op.registry import getCustomOp

    for node in model.graph.node:
        if node.op_type.startswith("UpsampleNearestNeighbour"):
            inst = getCustomOp(node)
            channels = inst.get_nodeattr("NumChannels")
            for simd in [d for d in range(1, channels + 1) if channels % d == 0]:
                inst.set_nodeattr("SIMD", simd)
                if inst.get_exp_cycles() <= target_cycles:
                    break
    return model
