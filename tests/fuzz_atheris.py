"""Coverage-guided fuzzing of the .lic container parser and entropy decoding (Atheris/libFuzzer).

    make fuzz SEED=1 COUNT=20000          # both targets, COUNT inputs each
    python tests/fuzz_atheris.py --target runtime -seed=1 -runs=20000 build/fuzz/corpus/runtime
    python tests/fuzz_atheris.py --target rans -seed=1 -runs=20000 build/fuzz/corpus/rans

Targets:
  runtime  bytes -> the host runtime's entropy decoding with the shipped q3 package: parse, header /
           geometry / stream-length checks, rANS z, integer h_s, rANS y (everything before synthesis)
  rans     bytes -> (table, symbol count, indexes, stream) -> CdfTable.decode with the q3 tables;
           its corpus starts from the z and y streams of the runtime corpus's real files

Only LicError may escape; any other exception, a signal or a hang is a finding (libFuzzer stops
and writes the input as crash-*). Mutations: libFuzzer's own, and half of the time the
structure-aware ones of tests/lic_fuzz.py. The runtime corpus starts from real .lic files (made
here from Kodak crops if ../shared/data/kodak exists, else from synthetic photos).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
MAX_PIXELS = 512 * 512  # keeps every input to milliseconds; the limit itself is tested in test_fuzz.py

with atheris.instrument_imports():
    import numpy as np

    import host.container  # noqa: F401
    import host.geometry  # noqa: F401
    import host.rans  # noqa: F401
    import host.runtime  # noqa: F401
    from lic.errors import LicError
    from lic_fuzz import Mutator


def seed_corpus(folder: Path) -> None:
    """Real files: crops of Kodak images (or synthetic photos) coded by the shipped q3 teacher."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return
    from test_fuzz import photo
    from training.teacher import load_default
    from training.teacher_codec import EntropyModels, encode, shipped_integer_hs

    em = EntropyModels(load_default(3), shipped_integer_hs(3))
    kodak = REPO.parent / "shared" / "data" / "kodak"
    images = []
    if kodak.is_dir():
        from host.image_io import load_rgb

        for i, p in enumerate(sorted(kodak.glob("*.png"))[:6]):
            rgb, _ = load_rgb(p)
            images.append(rgb[37 * i:37 * i + 64 + 13 * i, 51 * i:51 * i + 96 + 7 * i])
    images += [photo(75, 100, 0), photo(1, 1, 1), photo(17, 150, 2)]
    for i, rgb in enumerate(images):
        (folder / f"real{i}.lic").write_bytes(encode(em, np.ascontiguousarray(rgb)))


def runtime_target():
    from host.backends import Backend
    from host.decoder_package import DecoderPackage
    from host.runtime import HostDecoder

    decoder = HostDecoder(DecoderPackage.load(REPO / "host" / "decoders" / "q3"), Backend(), max_pixels=MAX_PIXELS)

    def one_input(data: bytes) -> None:
        try:
            decoder.entropy_decode(data, "fuzz")
        except LicError as e:
            assert "\n" not in str(e)
    return one_input


def rans_input(table: int, indexes: np.ndarray, stream: bytes) -> bytes:
    """The rans target's input: table (1 byte), n (u16), n index bytes, then the stream."""
    return bytes([table]) + len(indexes).to_bytes(2, "big") + indexes.astype(np.uint8).tobytes() + stream


def seed_rans_corpus(folder: Path, runtime_corpus: Path) -> None:
    """Real (table, indexes, stream) triples: the z and y streams of the runtime corpus's files."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()) or not runtime_corpus.is_dir():
        return
    from host.container import parse
    from host.decoder_package import DecoderPackage
    from host.geometry import hyperprior_geometry

    package = DecoderPackage.load(REPO / "host" / "decoders" / "q3")
    for p in sorted(runtime_corpus.glob("real*.lic")):
        lic = parse(p.read_bytes())
        geo = hyperprior_geometry(lic, z_channels=len(package.z_table), y_channels=package.latent_channels,
                                  spatial_multiple=package.spatial_multiple)
        z = package.z_table.decode_per_row(lic.streams[0], geo.z_shape)
        y_index = package.integer_hs.indexes(z).ravel()
        z_index = np.broadcast_to(np.arange(geo.z_shape[0])[:, None, None], geo.z_shape).ravel()
        for t, idx, stream in ((0, z_index, lic.streams[0]), (1, y_index, lic.streams[1])):
            if len(idx) < 1 << 16:
                (folder / f"{p.stem}_{'zy'[t]}.bin").write_bytes(rans_input(t, idx, stream))


def rans_target():
    from host.decoder_package import DecoderPackage

    package = DecoderPackage.load(REPO / "host" / "decoders" / "q3")
    tables = [package.z_table, package.y_table]

    def one_input(data: bytes) -> None:
        if len(data) < 3:
            return
        table = tables[data[0] % 2]
        n = max(1, int.from_bytes(data[1:3], "big"))
        indexes = np.frombuffer(data[3:3 + n], dtype=np.uint8).astype(np.int32) % len(table)
        stream = data[3 + n:]
        if len(indexes) < n:
            return
        try:
            values = table.decode(stream, indexes, "fuzz")
            assert values.shape == indexes.shape
        except LicError as e:
            assert "\n" not in str(e)
    return one_input


def structure_aware(data: bytes, max_size: int, seed: int) -> bytes:
    if seed % 2 == 0:
        try:
            return Mutator(seed).mutate(data)[1][:max_size]
        except Exception:  # not a well-formed .lic any more: libFuzzer's byte-level mutations instead
            pass
    return atheris.Mutate(data, max_size)


def main() -> None:
    argv = sys.argv[:]
    target = "runtime"
    if "--target" in argv:
        i = argv.index("--target")
        target = argv[i + 1]
        del argv[i:i + 2]
    folders = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if target == "runtime":
        for f in folders:
            seed_corpus(f)
        one_input = runtime_target()
        atheris.Setup(argv, one_input, custom_mutator=structure_aware)
    elif target == "rans":
        for f in folders:
            seed_rans_corpus(f, f.parent / "runtime")
        atheris.Setup(argv, rans_target())
    else:
        raise SystemExit(f"unknown --target {target!r}: runtime or rans")
    atheris.Fuzz()


if __name__ == "__main__":
    main()
