import pytest

from host.container import FORMAT_V1, LicFile, parse
from lic.errors import LicError


def sample() -> bytes:
    return LicFile(version=FORMAT_V1, fingerprint=bytes(range(16)), height=75, width=100,
                   streams=[b"zzzz", b"y" * 37]).to_bytes()


def test_round_trip():
    lic = parse(sample())
    assert (lic.version, lic.height, lic.width) == (FORMAT_V1, 75, 100)
    assert lic.fingerprint == bytes(range(16))
    assert lic.streams == [b"zzzz", b"y" * 37]


def test_every_truncation_is_a_clean_error():
    data = sample()
    for n in range(len(data)):
        with pytest.raises(LicError):
            parse(data[:n])


def test_every_single_byte_corruption_is_a_clean_error():
    data = sample()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises(LicError):
            parse(bytes(bad))


def test_foreign_file():
    with pytest.raises(LicError, match="not a .lic file"):
        parse(b"\x89PNG\r\n\x1a\n" + bytes(100))


def test_newer_version_says_so():
    data = bytearray(LicFile(version=9, fingerprint=bytes(16), height=1, width=1, streams=[]).to_bytes())
    with pytest.raises(LicError, match="version 9 is written by a newer lic"):
        parse(bytes(data))


def test_oversized_image_refused():
    with pytest.raises(LicError, match="does not fit"):
        LicFile(version=FORMAT_V1, fingerprint=bytes(16), height=70000, width=10).to_bytes()
