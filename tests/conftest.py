from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"


@pytest.fixture(scope="session")
def kodak() -> Path:
    if not KODAK.is_dir():
        pytest.skip(f"Kodak images not found at {KODAK}")
    return KODAK


@pytest.fixture(scope="session")
def tiny_teacher_path(tmp_path_factory) -> Path:
    """A small, randomly initialised ScaleHyperprior in CompressAI's state-dict format: it codes and
    decodes for real, just badly, and keeps codec tests fast."""
    from lic.compressai_compat import compressai  # noqa: F401
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    model = ScaleHyperprior(16, 24)
    model.update(force=True)
    path = tmp_path_factory.mktemp("teacher") / "tiny.pth.tar"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tiny_teacher_path):
    from training.teacher import load_teacher

    return load_teacher(str(tiny_teacher_path))


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A 75x100 crop of a Kodak-like smooth image: odd size, not a multiple of 64."""
    y, x = np.mgrid[0:75, 0:100]
    img = np.stack([(x * 2.5) % 256, (y * 3.1) % 256, ((x + y) * 1.3) % 256], axis=2)
    return img.astype(np.uint8)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Three small random PNGs: enough for a training loop to draw crops from."""
    from host.image_io import save_png

    d = tmp_path_factory.mktemp("train-images")
    rng = np.random.default_rng(0)
    for i in range(3):
        save_png(d / f"{i}.png", rng.integers(0, 256, (80, 96, 3), dtype=np.uint8))
    return d


# ---- a tiny student pipeline on the tiny teacher: float student -> QAT -> integer h_s -> package

TINY_TRAINING = ["--crop", "64", "--batch-size", "2", "--threads", "1"]


def run_lic(*args) -> int:
    from lic.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="session")
def common(tiny_teacher_path, image_folder) -> list[str]:
    return ["--teacher", str(tiny_teacher_path), "--data", str(image_folder), *TINY_TRAINING]


@pytest.fixture(scope="session")
def float_export(tmp_path_factory, common) -> Path:
    d = tmp_path_factory.mktemp("float")
    out = d / "student.pt"
    assert run_lic("distill", *common, "--channels", "8", "--run-dir", d / "run", "--steps", "2",
                   "--export", out) == 0
    return out


@pytest.fixture(scope="session")
def quant_export(tmp_path_factory, common, float_export) -> Path:
    d = tmp_path_factory.mktemp("quant")
    out = d / "quant.pt"
    assert run_lic("qat", "--student", float_export, *common, "--run-dir", d / "run", "--steps", "2",
                   "--calib-batches", "2", "--act-bits", "4,4,4,6", "--weight-bits", "3", "--export", out) == 0
    return out


@pytest.fixture(scope="session")
def quant_hyper(tiny_teacher):
    """A calibrated, untrained 8-channel integer-able h_s for the tiny teacher."""
    from quantize.quant_hyper import HyperConfig, QuantHyperSynthesis, init_log_scale_bias
    from quantize.quant_student import calibrate_activations

    torch.manual_seed(1)
    m = tiny_teacher.model
    cfg = HyperConfig(in_channels=m.h_a[-1].out_channels, out_channels=m.g_a[-1].out_channels, channels=8)
    model = QuantHyperSynthesis(cfg)
    init_log_scale_bias(model, 2.0)
    calibrate_activations(model, [torch.randint(-6, 7, (2, cfg.in_channels, 5, 7)).float() for _ in range(3)])
    return model.eval()


@pytest.fixture(scope="session")
def integer_hs(quant_hyper, tiny_teacher):
    from quantize.integer_hyper import to_integer

    return to_integer(quant_hyper, tiny_teacher.model.gaussian_conditional.scale_table)


@pytest.fixture(scope="session")
def integer_hs_path(tmp_path_factory, integer_hs) -> Path:
    path = tmp_path_factory.mktemp("integer-hs") / "integer_hs.npz"
    path.write_bytes(integer_hs.to_bytes())
    return path


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, quant_export, tiny_teacher_path, integer_hs_path) -> Path:
    out = tmp_path_factory.mktemp("package") / "tiny"
    assert run_lic("export", quant_export, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path,
                   "-o", out, "--tile", "8") == 0
    return out
