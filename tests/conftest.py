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
