"""`lic bench NAME`: side-by-side measurements, one module per benchmark (each with add_arguments
and run), so benchmarks are added without touching the others."""

from __future__ import annotations

import argparse
import importlib

# name -> (module, one-line help)
BENCHMARKS = {
    "entropy": ("bench.entropy", "C rANS decoder vs CompressAI's on the same Kodak streams: ms per image, speed ratio"),
    "substreams": ("bench.substreams", "format v3 tile substreams vs v2: rate overhead on Kodak, y decode time "
                                       "with 1 and 2 threads"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)


def run(args) -> int:
    return importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args)
