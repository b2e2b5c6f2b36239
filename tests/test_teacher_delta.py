"""The shipped teachers stored as deltas against the default one: lossless, and loud when broken."""

import pytest
import torch

from lic.errors import LicError
from training import teacher_delta
from training.teacher import (TEACHERS_DIR, load_state_dict_file, load_teacher, model_fingerprint, read_manifest,
                              stored_form)


def _fine_tuned(sd: dict, seed: int) -> dict:
    """A few hundred small steps away from `sd`, as the shipped rate points are from one base run."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        if torch.is_floating_point(v):
            v = (v.float() * (1 + 1e-2 * torch.randn(v.shape, generator=g))).to(v.dtype)
        out[k] = v
    return out


@pytest.fixture
def base_and_other(tmp_path, tiny_teacher):
    base = stored_form(tiny_teacher.model.state_dict())
    other = _fine_tuned(base, seed=1)
    other["gaussian_conditional._quantized_cdf"] = torch.ones(3, 7, dtype=torch.int32)  # a shape the base lacks
    torch.save(base, tmp_path / "base.pt")
    return tmp_path, base, other


def test_round_trip_is_bit_exact(base_and_other):
    tmp_path, base, other = base_and_other
    delta = teacher_delta.pack(other, base, "base.pt")
    torch.save(delta, tmp_path / "other.pt")
    back = load_state_dict_file(tmp_path / "other.pt")
    assert back.keys() == other.keys()
    for k in other:
        assert back[k].dtype == other[k].dtype and torch.equal(back[k], other[k]), k
    assert "gaussian_conditional._quantized_cdf" in delta["whole"]


def test_the_base_packs_against_nothing_and_still_serves_as_the_base(base_and_other):
    tmp_path, base, other = base_and_other
    torch.save(teacher_delta.pack(other, base, "base.pt"), tmp_path / "other.pt")
    alone = teacher_delta.pack(base, None, "base.pt")
    assert teacher_delta.stands_alone(alone) and not alone["whole"]
    torch.save(alone, tmp_path / "base.pt")
    for name, want in (("base.pt", base), ("other.pt", other)):
        back = load_state_dict_file(tmp_path / name)
        assert back.keys() == want.keys()
        assert all(back[k].dtype == want[k].dtype and torch.equal(back[k], want[k]) for k in want), name


def test_a_delta_against_another_delta_is_refused(base_and_other):
    tmp_path, base, other = base_and_other
    torch.save(teacher_delta.pack(other, base, "base.pt"), tmp_path / "other.pt")
    torch.save(teacher_delta.pack(base, other, "other.pt"), tmp_path / "base.pt")
    with pytest.raises(LicError, match="not another delta"):
        load_teacher(str(tmp_path / "other.pt"))


def test_a_changed_base_is_refused(base_and_other):
    tmp_path, base, other = base_and_other
    torch.save(teacher_delta.pack(other, base, "base.pt"), tmp_path / "other.pt")
    torch.save(_fine_tuned(base, seed=2), tmp_path / "base.pt")
    with pytest.raises(LicError, match="against base.pt, which has changed"):
        load_teacher(str(tmp_path / "other.pt"))
    (tmp_path / "base.pt").unlink()
    with pytest.raises(LicError, match="base teacher of other.pt not found"):
        load_teacher(str(tmp_path / "other.pt"))


def test_a_damaged_delta_is_refused(base_and_other):
    tmp_path, base, other = base_and_other
    delta = teacher_delta.pack(other, base, "base.pt")
    size = next(iter(delta["planes"]))
    blob = delta["planes"][size].clone()
    delta["planes"][size] = blob[: len(blob) // 2]  # truncated lzma stream
    torch.save(delta, tmp_path / "other.pt")
    with pytest.raises(LicError, match="damaged teacher delta file"):
        load_teacher(str(tmp_path / "other.pt"))
    delta["planes"][size] = blob
    delta["digest"] = "0" * 64
    torch.save(delta, tmp_path / "other.pt")
    with pytest.raises(LicError, match="digest mismatch"):
        load_teacher(str(tmp_path / "other.pt"))


def test_shipped_teachers_unpack_to_their_manifest_fingerprints():
    """Every shipped teacher but the base is a delta against it, the base one against nothing, and each
    loads to the fingerprint its files carry."""
    for e in read_manifest():
        obj = torch.load(TEACHERS_DIR / e["file"], weights_only=True)
        assert teacher_delta.is_delta(obj) and teacher_delta.stands_alone(obj) == (e["quality"] == 3), e["file"]
        t = load_teacher(str(TEACHERS_DIR / e["file"]))
        assert model_fingerprint(t.model).hex() == e["fingerprint"]
