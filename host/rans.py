"""CompressAI's rANS decoder, without torch.

The compiled extension `compressai.ans` (pybind11, no torch symbols) is what every .lic stream was
coded with. Importing it the normal way runs `compressai/__init__.py`, which imports torch; the
board has no torch. So the extension is loaded straight from its file under the name it was built
with. On x86 that file comes from the compressai wheel; on the board from building CompressAI's
sdist (see host/README.md), whose rANS output is byte-identical to the wheel's.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from lic.errors import LicError

_MODULE = "compressai.ans"


@lru_cache(maxsize=1)
def _ans():
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    spec = importlib.util.find_spec("compressai")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise LicError("CompressAI's rANS coder is not installed: on x86 `pip install --no-deps "
                       "compressai==1.2.8`; on the board build it from the sdist (host/README.md)")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("ans*" + _suffix())):
            loader = importlib.machinery.ExtensionFileLoader(_MODULE, str(path))
            module = importlib.util.module_from_spec(importlib.util.spec_from_loader(_MODULE, loader))
            loader.exec_module(module)
            return module
    raise LicError(f"compressai is installed but has no compiled rANS extension (ans*{_suffix()}) in "
                   f"{', '.join(spec.submodule_search_locations)}; reinstall it so the extension is built")


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


class CdfTable:
    """One entropy model's quantised CDFs, as CompressAI's EntropyModel holds them after update():
    cdf [n, L] int32 (rows padded), cdf_length [n], offset [n]."""

    def __init__(self, cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray):
        if cdf.ndim != 2 or cdf_length.shape != (cdf.shape[0],) or offset.shape != (cdf.shape[0],):
            raise LicError(f"bad CDF table shapes {cdf.shape}, {cdf_length.shape}, {offset.shape}")
        self.cdf = np.ascontiguousarray(cdf, dtype=np.int32)
        self.cdf_length = np.ascontiguousarray(cdf_length, dtype=np.int32)
        self.offset = np.ascontiguousarray(offset, dtype=np.int32)
        self._lists = (self.cdf.tolist(), self.cdf_length.tolist(), self.offset.tolist())

    def __len__(self) -> int:
        return self.cdf.shape[0]

    def decode(self, stream: bytes, indexes: np.ndarray) -> np.ndarray:
        """Decode len(indexes.ravel()) symbols from one stream, symbol i with table indexes[i];
        returns int32 values shaped like `indexes`."""
        indexes = np.asarray(indexes)
        if indexes.size and (indexes.min() < 0 or indexes.max() >= len(self)):
            raise LicError(f"CDF index out of range 0..{len(self) - 1}")
        values = _ans().RansDecoder().decode_with_indexes(stream, indexes.ravel().astype(np.int32).tolist(),
                                                          *self._lists)
        return np.asarray(values, dtype=np.int32).reshape(indexes.shape)
