import json
import socket

import pytest
import torch

from lic.errors import LicError
from training import teacher as teacher_mod
from training.teacher import load_teacher, model_fingerprint


def test_local_checkpoint_loads_as_compressai_state_dict(tiny_teacher_path, tiny_teacher):
    sd = torch.load(tiny_teacher_path, weights_only=True)
    assert tiny_teacher.model.g_a[0].weight.shape[0] == 16  # N read off the shapes
    assert torch.equal(tiny_teacher.model.g_s[0].weight, sd["g_s.0.weight"])


def test_wrapped_checkpoints_load_the_same_model(tmp_path, tiny_teacher_path, tiny_teacher):
    sd = torch.load(tiny_teacher_path, weights_only=True)
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "ddp.pth.tar")
    assert load_teacher(str(tmp_path / "ddp.pth.tar")).fingerprint == tiny_teacher.fingerprint


def test_fingerprint_sees_a_single_weight(tiny_teacher_path):
    t = load_teacher(str(tiny_teacher_path))
    before = model_fingerprint(t.model)
    with torch.no_grad():
        t.model.g_s[0].weight[0, 0, 0, 0] += 1e-6
    assert model_fingerprint(t.model) != before


def test_bad_checkpoints(tmp_path):
    with pytest.raises(LicError, match="not found"):
        load_teacher(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(LicError, match="cannot read"):
        load_teacher(str(tmp_path / "junk.pt"))
    torch.save({"g_a.0.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(LicError, match="not a CompressAI ScaleHyperprior"):
        load_teacher(str(tmp_path / "other.pt"))


def test_zoo_offline_fails_with_a_clear_message(monkeypatch):
    """The real zoo loader runs; only the network is taken away, as on a machine offline."""
    def refuse(*a, **k):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-lic-test")
    with pytest.raises(LicError, match="could not download CompressAI zoo weights.*pass its path"):
        load_teacher("zoo:bmshj2018-hyperprior:3")


def test_bad_zoo_specs():
    with pytest.raises(LicError, match="bad zoo spec"):
        load_teacher("zoo:bmshj2018-hyperprior")
    with pytest.raises(LicError, match="not a ScaleHyperprior"):
        load_teacher("zoo:cheng2020-anchor:3")


def test_shipped_teachers_match_their_manifest():
    entries = teacher_mod.read_manifest()
    assert len(entries) >= 4, "at least four shipped rate points"
    lambdas = [e["lambda"] for e in sorted(entries, key=lambda e: e["quality"])]
    assert lambdas == sorted(lambdas)
    from compressai.models.google import get_scale_table

    for e in entries:
        t = teacher_mod.load_default(e["quality"])  # verifies the fingerprint against the manifest
        assert t.model.g_a[0].weight.shape[0] == 128
        # fp16 shipping must not touch bounds and tables (1e-9 is 0 in fp16)
        gc = t.model.gaussian_conditional
        assert gc.likelihood_lower_bound.bound.item() == pytest.approx(1e-9, rel=1e-6)
        assert torch.equal(gc.scale_table, torch.tensor(get_scale_table(), dtype=torch.float32))
        prov = json.loads((teacher_mod.TEACHERS_DIR / e["file"]).with_suffix(".provenance.json").read_text())
        assert {"command", "steps", "train_time_s", "hardware", "data"} <= prov.keys()
