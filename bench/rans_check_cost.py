"""What the checked rANS decoding (host/rans.py: isolated child, zero padding, re-encoding) costs
against calling CompressAI's decoder directly, on the y stream of one format-v2 file.

    python -m bench.rans_check_cost FILE.lic [--package host/decoders/q3]

CPU time of this process plus its waited-for children (getrusage), median of 7 runs each: wall
time on a shared machine says more about the other jobs than about the decoder.
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

from host.container import parse
from host.decoder_package import DecoderPackage
from host.geometry import hyperprior_geometry
from host.rans import _ans


def _cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("lic", type=Path)
    p.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "host" / "decoders" / "q3")
    args = p.parse_args()
    package = DecoderPackage.load(args.package)
    lic = parse(args.lic.read_bytes(), str(args.lic))
    geo = hyperprior_geometry(lic, z_channels=len(package.z_table), y_channels=package.latent_channels,
                              spatial_multiple=package.spatial_multiple)
    indexes = package.integer_hs.indexes(package.z_table.decode_per_row(lic.streams[0], geo.z_shape))
    table, stream = package.y_table, lic.streams[1]

    def unchecked():
        return _ans().RansDecoder().decode_with_indexes(stream, indexes.ravel().astype(np.int32).tolist(),
                                                         *table._lists)

    def checked():
        return table.decode(stream, indexes)

    assert list(unchecked()) == checked().ravel().tolist()
    runs = {"unchecked": [], "checked": []}
    for _ in range(7):
        for name, fn in (("unchecked", unchecked), ("checked", checked)):
            t = _cpu()
            fn()
            runs[name].append(_cpu() - t)
    print(f"{args.lic}: y stream, {indexes.size:,} symbols: " + ", ".join(
        f"{k} {np.median(v) * 1000:.0f} ms CPU" for k, v in runs.items()) + " (median of 7, with children)")


if __name__ == "__main__":
    main()
