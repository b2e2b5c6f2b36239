"""Bit-exactness of the host runtime over a folder of .lic v2 files: onnx whole frame against onnx
tiles, torch tiles and the FINN HW-layer graph (finn-sim, needs `make hw`). Slow: finn-sim takes
about 27 s per Kodak image on 2 cores.

    python -m bench.check_backends build/demo/lic [--hw-dir fpga_projects/pynq-z2/build]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from host.backends import make_backend
from host.decode_cli import SHIPPED_PACKAGES
from host.decoder_package import DecoderPackage
from host.fabric import DEFAULT_HW_DIR
from host.runtime import HostDecoder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--package", type=Path, default=SHIPPED_PACKAGES / "q3")
    p.add_argument("--hw-dir", type=Path, default=DEFAULT_HW_DIR)
    args = p.parse_args(argv)
    pkg = DecoderPackage.load(args.package)
    reference = HostDecoder(pkg, make_backend("onnx", pkg))
    others = {"onnx tiles": HostDecoder(pkg, make_backend("onnx", pkg), tile=pkg.tile),
              "torch tiles": HostDecoder(pkg, make_backend("torch", pkg), tile=pkg.tile),
              "finn-sim": HostDecoder(pkg, make_backend("finn-sim", pkg, hw_dir=args.hw_dir))}
    failures = 0
    for f in sorted(args.folder.glob("*.lic")):
        data = f.read_bytes()
        ref = reference.decode(data, str(f))[0]
        same = {name: bool(np.array_equal(ref, d.decode(data, str(f))[0])) for name, d in others.items()}
        failures += not all(same.values())
        print(f.name, " ".join(f"{k}={'same' if v else 'DIFFERENT'}" for k, v in same.items()), flush=True)
    print("all bit-exact" if not failures else f"{failures} files differ")
    return int(failures > 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
