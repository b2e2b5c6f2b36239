"""Make `import compressai` work in our pinned environment.

Why: compressai 1.2.8's package __init__ imports `compressai.registry.transforms`, which imports
`torchvision.transforms` only to copy its class names into a registry used by CompressAI's own
training CLI. PyPI's torchvision wheels are CUDA builds that fail to import beside the CPU torch
2.13.0 we pin ("operator torchvision::nms does not exist"), and pulling one in would also drag an
unpinned torch. Nothing we use (models, layers, entropy models, compressai.ans) touches torchvision,
so when it is not importable we register an empty `torchvision.transforms` namespace: the registry
then simply lists no torchvision transforms. A real torchvision, if installed and working, wins.

Import this module before the first `import compressai` (the project's modules do it via
`from lic.compressai_compat import compressai`).
"""

import importlib.util
import sys
import types


def _torchvision_importable() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision.transforms  # noqa: F401
    except Exception:  # a broken CUDA torchvision raises RuntimeError, not ImportError
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.transforms", None)
        return False
    return True


if "compressai" not in sys.modules and not _torchvision_importable():
    _tv = types.ModuleType("torchvision")
    _tv.transforms = types.ModuleType("torchvision.transforms")
    _tv.__lic_placeholder__ = True
    sys.modules["torchvision"] = _tv
    sys.modules["torchvision.transforms"] = _tv.transforms

import compressai  # noqa: E402

__all__ = ["compressai"]
