"""What a user asked to keep is never lost and nothing is left half-written: the output path that is
the input, temp files on SIGTERM and after SIGKILL, and jobs refused before memory is spent."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from host import memory
from host.image_io import PARTIAL, save_png, write_atomic
from lic.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def png(tmp_path) -> Path:
    p = tmp_path / "b.png"
    save_png(p, np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8))
    return p


def test_encode_refuses_to_overwrite_its_input(png, capsys):
    before = png.read_bytes()
    assert main(["encode", str(png), "-o", str(png)]) == 1
    link = png.parent / "link.png"
    link.symlink_to(png)
    assert main(["encode", str(png), "-o", str(link)]) == 1
    err = capsys.readouterr().err
    assert err.count("refusing to overwrite it") == 2 and "Traceback" not in err
    assert png.read_bytes() == before


def test_oversized_images_are_refused_from_the_header(tmp_path, capsys):
    """1 x 16,777,216 pixels: the header is read, no tensor is made (torch would ask for ~13 GB)."""
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((1, 70_000, 3), np.uint8)).save(wide)
    assert main(["encode", str(wide), "-o", str(tmp_path / "w.lic")]) == 1
    assert "at most 65535 pixels a side" in capsys.readouterr().err


def test_max_memory_refuses_up_front(png, tmp_path, capsys):
    assert main(["encode", str(png), "-o", str(tmp_path / "x.lic"), "--max-memory", "100M"]) == 1
    err = capsys.readouterr().err
    assert "needs about" in err and "--max-memory" in err and not (tmp_path / "x.lic").exists()
    assert main(["encode", str(png), "-o", str(tmp_path / "x.lic"), "--max-memory", "lots"]) == 1
    assert "takes a size such as 4G" in capsys.readouterr().err


def test_memory_estimates_grow_with_the_padded_image():
    assert memory.padded_pixels(1, 1) == 64 * 64 and memory.padded_pixels(65, 64) == 128 * 64
    assert memory.parse_size("4G") == 4 * 2**30 and memory.parse_size("512MiB") == 512 * 2**20
    # the measurements behind the table (host/memory.py): 3072x2048, peak RSS 3.6 GB encoding, 1.2 GB
    # decoding with the student whole frame, 0.3 GB in tiles; each estimate within +25% above
    for kind, measured in (("encode", 3.73e9), ("teacher-decode", 3.69e9), ("student-whole", 1.17e9),
                           ("student-tiled", 0.29e9)):
        est = memory.estimate(kind, 2048, 3072)
        assert measured <= est <= 1.25 * measured, kind


def test_sigterm_while_writing_leaves_no_partial_file(png, tmp_path, monkeypatch):
    import host.image_io as image_io

    out = tmp_path / "x.lic"

    def killed(src, dst):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the partial file exists
        raise AssertionError("the signal handler should have raised")

    monkeypatch.setattr(image_io.os, "replace", killed)
    assert main(["encode", str(png), "-o", str(out)]) == 128 + signal.SIGTERM
    assert not out.exists() and not list(tmp_path.glob(f".*{PARTIAL}"))


def test_partial_files_of_killed_runs_are_removed_by_the_next(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".a.png.{dead}{PARTIAL}"
    live = tmp_path / f".b.png.{os.getppid()}{PARTIAL}"  # a run still going
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    write_atomic(tmp_path / "c.png", b"whole")
    assert not stale.exists() and live.exists() and (tmp_path / "c.png").read_bytes() == b"whole"


def test_special_files_and_oversized_files_are_refused_before_reading(tmp_path, capsys):
    """A FIFO named *.lic would block an open() forever; a directory named *.lic is no file; a 3 GB
    file (sparse here) whose header is a 128x128 image is refused from its size, unread."""
    from host.container import read_lic

    golden = GOLDEN / "q3_tuned_v2.lic"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.lic").write_bytes(golden.read_bytes())
    os.mkfifo(folder / "fifo.lic")
    (folder / "dir.lic").mkdir()
    huge = folder / "huge.lic"
    with open(huge, "wb") as f:
        f.write(golden.read_bytes()[:40])
        f.truncate(3 * 2**30)
    with pytest.raises(Exception, match="more than a 128x128 .lic file can hold"):
        read_lic(huge)
    out = tmp_path / "out"
    assert main(["decode", str(folder), "-o", str(out)]) == 1  # the bad ones fail, the good one is written
    err = capsys.readouterr().err
    assert err.count("not a regular file") == 2 and "can hold" in err and "Traceback" not in err
    assert [p.name for p in out.glob("*.png")] == ["a.png"]


def _golden_folder(tmp_path: Path, layout: dict[str, str]) -> Path:
    folder = tmp_path / "in"
    for rel, name in layout.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes((GOLDEN / f"{name}.lic").read_bytes())
    return folder


def test_decoding_a_folder_keeps_its_sub_folders_and_picks_a_decoder_per_file(tmp_path, capsys):
    """a/img.lic and b/img.lic are two images; a folder may mix rate points and decoders."""
    folder = _golden_folder(tmp_path, {"a/img.lic": "q3_tuned_v2", "b/img.lic": "q1_teacher_v1",
                                       "c.lic": "q4_tuned_v3"})
    out = tmp_path / "out"
    assert main(["decode", str(folder), "-o", str(out)]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a/img.png", "b/img.png", "c.png"]
    said = capsys.readouterr().out
    assert "3 images" in said and "student q3" in said and "teacher" in said


def test_two_inputs_for_one_output_are_refused_before_writing(tmp_path, capsys):
    folder = _golden_folder(tmp_path, {"a/img.lic": "q3_tuned_v2", "b/img.lic": "q3_teacher_v2"})
    out = tmp_path / "out"
    assert main(["decode", str(folder / "a" / "img.lic"), str(folder / "b" / "img.lic"), "-o", str(out)]) == 1
    assert "would both be written to" in capsys.readouterr().err and not out.exists()


def test_decode_refuses_to_overwrite_its_input(tmp_path, capsys):
    lic = _golden_folder(tmp_path, {"x.lic": "q3_tuned_v2"}) / "x.lic"
    before = lic.read_bytes()
    assert main(["decode", str(lic), "-o", str(lic)]) == 1
    assert "refusing to overwrite it" in capsys.readouterr().err and lic.read_bytes() == before


@pytest.mark.parametrize("tile", ["0", "20000"])
def test_tile_out_of_range_is_one_line(tmp_path, tile, capsys):
    lic = _golden_folder(tmp_path, {"x.lic": "q3_tuned_v2"}) / "x.lic"
    assert main(["decode", str(lic), "-o", str(tmp_path / "x.png"), "--tile", tile]) == 1
    assert "--tile must be in 1..1024" in capsys.readouterr().err


def test_memory_limit_tiles_the_student_and_refuses_the_teacher(tmp_path, capsys):
    """Under a limit a whole frame does not fit, the student decodes in its package's tiles (the same
    pixels); the teacher, which cannot tile, is refused before it starts."""
    from host.image_io import load_rgb

    src = tmp_path / "big.png"
    save_png(src, np.tile(load_rgb(GOLDEN / "source.png")[0], (8, 8, 1)))  # 1024x1024
    lic = tmp_path / "big.lic"
    assert main(["encode", str(src), "-o", str(lic), "--teacher", "q3-tuned", "--integer-hs"]) == 0
    assert main(["decode", str(lic), "-o", str(tmp_path / "whole.png")]) == 0
    assert "(student q3 on onnx)" in capsys.readouterr().out
    # a limit between the tiled and the whole-frame estimate
    limit = (memory.estimate("student-tiled", 1024, 1024) + memory.estimate("student-whole", 1024, 1024)) // 2
    assert memory.estimate("student-whole", 1024, 1024) > limit >= memory.estimate("student-tiled", 1024, 1024)
    assert main(["decode", str(lic), "-o", str(tmp_path / "tiled.png"), "--max-memory", str(limit)]) == 0
    assert "32x32 tiles" in capsys.readouterr().out
    assert (tmp_path / "tiled.png").read_bytes() == (tmp_path / "whole.png").read_bytes()
    assert main(["decode", str(lic), "-o", str(tmp_path / "t.png"), "--decoder", "teacher",
                 "--max-memory", str(limit)]) == 1
    assert "decoding with the teacher a 1024x1024 image needs about" in capsys.readouterr().err


@pytest.mark.parametrize("text, match", [("{bad json", "not valid JSON"), ("[1, 2]", "a JSON object"),
                                         ('{"tile": 32}', "halo must be an integer")])
def test_bad_tile_json_is_one_line(tmp_path, text, match):
    from host.decoder_package import DecoderPackage
    from host.fabric import read_tile_spec

    (tmp_path / "tile.json").write_text(text)
    with pytest.raises(Exception, match=match):
        read_tile_spec(tmp_path, DecoderPackage.load(GOLDEN.parent.parent / "host" / "decoders" / "q3"), "hw")


def test_a_tile_much_larger_than_the_image_is_priced_as_the_frame_it_makes(tmp_path, capsys):
    """--tile 1000 zero-extends a 128x128 image to 16,000 x 16,000 pixels: refused under a limit."""
    lic = _golden_folder(tmp_path, {"x.lic": "q3_tuned_v2"}) / "x.lic"
    assert main(["decode", str(lic), "-o", str(tmp_path / "x.png"), "--tile", "1000", "--max-memory", "4G"]) == 1
    assert "16000x16000 image needs about" in capsys.readouterr().err


def test_pillow_warnings_are_one_line_each(tmp_path, capsys):
    """A JPEG whose EXIF block is corrupt encodes, with Pillow's complaint as one `lic: warning` line."""
    import io

    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 3
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG", exif=exif.tobytes())
    data = bytearray(buf.getvalue())
    at = data.find(b"Exif\x00\x00")
    data[at + 10:at + 30] = b"\xff" * 20
    src = tmp_path / "bad-exif.jpg"
    src.write_bytes(bytes(data))
    assert main(["encode", str(src), "-o", str(tmp_path / "x.lic")]) == 0
    err = capsys.readouterr().err
    assert "lic: warning:" in err and "Corrupt EXIF" in err and "UserWarning" not in err


def test_onnxruntime_failures_are_one_line(tmp_path, capsys, monkeypatch):
    """onnxruntime's exceptions are not RuntimeErrors: a failed allocation inside it becomes lic's
    out-of-memory line, any other failure one lic: error line."""
    from host.backends import OnnxBackend

    lic = tmp_path / "a.lic"
    lic.write_bytes((GOLDEN / "q3_tuned_v2.lic").read_bytes())
    for message, expected in [("bad_alloc: Failed to allocate memory for requested buffer of size 9", "out of memory"),
                              ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code", "onnxruntime failed")]:
        class OrtLike(Exception):
            pass

        class FailingSession:
            def run(self, *args, **kwargs):
                raise OrtLike(message)

        original = OnnxBackend.__init__

        def init(self, *a, **k):
            original(self, *a, **k)
            self.session = FailingSession()

        monkeypatch.setattr(OnnxBackend, "__init__", init)
        assert main(["decode", str(lic), "-o", str(tmp_path / "x.png"), "--backend", "onnx"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
        assert not (tmp_path / "x.png").exists()
        monkeypatch.setattr(OnnxBackend, "__init__", original)
