"""training/packed_file.py: the long run's committed files, packed losslessly."""

import os

import pytest
import torch

from lic.errors import LicError
from training import packed_file


@pytest.mark.parametrize("size", [0, 1, 5, 4097])
def test_any_bytes_come_back_exactly(tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "a").write_bytes(data)
    assert packed_file.pack(tmp_path / "a", tmp_path / "a.xz")
    packed_file.unpack(tmp_path / "a.xz", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == data


def test_a_torch_checkpoint_packs_smaller_and_unchanged_files_are_not_rewritten(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3), torch.nn.Conv2d(64, 64, 3))
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(1, 32, 8, 8)).square().mean().backward()
    opt.step()
    torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": 1}, tmp_path / "checkpoint.pt")
    packed = tmp_path / "checkpoint.pt.xz"
    assert packed_file.pack(tmp_path / "checkpoint.pt", packed)
    # float32 weights and Adam moments: the planes must gain on what plain lzma gets (~8%)
    assert packed.stat().st_size < 0.85 * (tmp_path / "checkpoint.pt").stat().st_size
    mtime = packed.stat().st_mtime_ns
    assert not packed_file.pack(tmp_path / "checkpoint.pt", packed) and packed.stat().st_mtime_ns == mtime
    packed_file.unpack(packed, tmp_path / "back.pt")
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert all(torch.equal(back["net"][k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("damage", ["truncate", "flip", "not-packed"])
def test_a_damaged_packed_file_is_refused_and_nothing_is_written(tmp_path, damage):
    (tmp_path / "a").write_bytes(os.urandom(1000))
    packed_file.pack(tmp_path / "a", tmp_path / "a.xz")
    raw = (tmp_path / "a.xz").read_bytes()
    if damage == "truncate":
        raw = raw[: len(raw) - 40]
    elif damage == "flip":  # inside the header's digest: lzma's own check would catch a flip in the stream
        at = raw.index(b'"sha256": "') + 12
        raw = raw[:at] + (b"0" if raw[at:at + 1] != b"0" else b"1") + raw[at + 1:]
    else:
        raw = (tmp_path / "a").read_bytes()
    (tmp_path / "a.xz").write_bytes(raw)
    with pytest.raises(LicError, match="damaged packed file"):
        packed_file.unpack(tmp_path / "a.xz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path):
    import subprocess
    import sys

    got = subprocess.run([sys.executable, "-m", "training.packed_file", "unpack", str(tmp_path / "none.xz"),
                          str(tmp_path / "out")], capture_output=True, text=True)
    assert got.returncode == 1 and got.stderr.count("\n") == 1 and "No such file" in got.stderr
    (tmp_path / "a").write_bytes(b"abc")
    assert subprocess.run([sys.executable, "-m", "training.packed_file", "pack", str(tmp_path / "a"),
                           str(tmp_path / "a.xz")]).returncode == 0
    assert subprocess.run([sys.executable, "-m", "training.packed_file", "unpack", str(tmp_path / "a.xz"),
                           str(tmp_path / "b")]).returncode == 0 and (tmp_path / "b").read_bytes() == b"abc"
