"""CompressAI's rANS coder under AddressSanitizer + UBSan over a .lic fuzz corpus (`make asan`).

    python tests/asan_rans.py ASAN_EXTENSION.so CORPUS_FOLDER... [--mutations N]

The extension is CompressAI's rans_interface.cpp rebuilt with -fsanitize=address,undefined (the
Makefile target does it from the sdist); Python must run with libasan preloaded and ASAN_OPTIONS /
UBSAN_OPTIONS log_path set (the target does that too). Every input goes two ways, each in a forked
child so that one crash does not end the run:

  raw      the header trusted, z and y handed straight to CompressAI's decoder (what lic did before
           issue 11): shows what the decoder itself does with corrupt streams
  checked  the host runtime's path (host/runtime.py): header, geometry and stream-length checks,
           then the decoder in its isolated child, then the re-encoding check

The corpus is the given folders' files plus N structure-aware mutations of them (tests/lic_fuzz.py).
Prints how many inputs each way reached the decoder; the sanitizer reports land in the log files,
which the Makefile target counts per way.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402

import host.rans  # noqa: E402
from host.backends import Backend  # noqa: E402
from host.container import parse  # noqa: E402
from host.decoder_package import DecoderPackage  # noqa: E402
from host.geometry import hyperprior_geometry  # noqa: E402
from host.isolation import call_isolated  # noqa: E402
from host.runtime import HostDecoder  # noqa: E402
from lic.errors import LicError  # noqa: E402
from lic_fuzz import Mutator  # noqa: E402

MAX_PIXELS = 1024 * 1024


def load_extension(path: Path):
    loader = importlib.machinery.ExtensionFileLoader("compressai.ans", str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("compressai.ans", loader))
    loader.exec_module(module)
    return module


def raw_decode(package: DecoderPackage, ans, data: bytes) -> None:
    """lic before issue 11: the header's geometry trusted, the streams decoded unchecked."""
    lic = parse(data)
    geo = hyperprior_geometry(lic, z_channels=len(package.z_table), y_channels=package.latent_channels,
                              spatial_multiple=package.spatial_multiple, max_pixels=MAX_PIXELS)
    z_index = np.broadcast_to(np.arange(geo.z_shape[0], dtype=np.int32)[:, None, None], geo.z_shape)

    def run():
        z = ans.RansDecoder().decode_with_indexes(lic.streams[0], z_index.ravel().tolist(), *package.z_table._lists)
        idx = package.integer_hs.indexes(np.asarray(z, dtype=np.int32).reshape(geo.z_shape))
        y = ans.RansDecoder().decode_with_indexes(lic.streams[1], idx.ravel().tolist(), *package.y_table._lists)
        return np.asarray(y, dtype=np.int32)
    call_isolated(run, "raw", extra_bytes=0, cpu_seconds=60)


def main() -> None:
    args = sys.argv[1:]
    mutations = 0
    if "--mutations" in args:
        i = args.index("--mutations")
        mutations = int(args[i + 1])
        del args[i:i + 2]
    ans = load_extension(Path(args[0]))
    host.rans._ans = lambda: ans  # every decode in this process uses the sanitized build
    corpus = [p.read_bytes() for folder in args[1:] for p in sorted(Path(folder).iterdir()) if p.is_file()]
    m = Mutator(20261126)
    seeds = [d for d in corpus if _parses(d)]
    corpus += [m.mutate(seeds[i % len(seeds)])[1] for i in range(mutations)] if seeds else []
    package = DecoderPackage.load(REPO / "host" / "decoders" / "q3")
    decoder = HostDecoder(package, Backend(), max_pixels=MAX_PIXELS)
    way = os.environ.get("LIC_ASAN_WAY", "both")
    stats = {"inputs": len(corpus), "raw_reached_decoder": 0, "raw_crashed": 0, "checked_reached_decoder": 0,
             "checked_decoded": 0}
    reached = [0]
    original = host.rans.decode_checked

    def counting(*a, **k):
        reached[0] += 1
        return original(*a, **k)
    host.rans.decode_checked = counting
    for data in corpus:
        if way in ("both", "raw"):
            try:
                raw_decode(package, ans, data)
                stats["raw_reached_decoder"] += 1
            except LicError as e:
                if "entropy decoder" in str(e):
                    stats["raw_reached_decoder"] += 1
                    stats["raw_crashed"] += "crashed" in str(e)
        if way in ("both", "checked"):
            try:
                decoder.entropy_decode(data, "asan")
                stats["checked_decoded"] += 1
            except LicError:
                pass
    stats["checked_reached_decoder"] = reached[0]
    print(" ".join(f"{k}={v}" for k, v in stats.items()))


def _parses(data: bytes) -> bool:
    try:
        parse(data)
        return True
    except LicError:
        return False


if __name__ == "__main__":
    main()
