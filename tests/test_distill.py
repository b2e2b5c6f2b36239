"""`lic distill` and `lic qat` on a tiny random teacher (M=24) and an 8-channel student: a few steps each."""

import json
from dataclasses import replace
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from host.decoder_package import sha256_file
from host.image_io import save_png
from lic.cli import main
from lic.errors import LicError
from quantize.qat import load_quant_student
from training.distill import load_float_student
from training.teacher import load_teacher

from conftest import TINY_TRAINING as TINY


def lic(*args) -> int:
    return main([str(a) for a in args])


def _y_hat(teacher, size=64):
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        return torch.round(teacher.model.g_a(x))


def test_help(capsys):
    for command in ("distill", "qat"):
        with pytest.raises(SystemExit) as e:
            main([command, "--help"])
        assert e.value.code == 0
        assert f"usage: lic {command}" in capsys.readouterr().out


def test_distill_resume_export(tmp_path, common, tiny_teacher, capsys):
    run = tmp_path / "run"
    assert lic("distill", *common, "--channels", "8", "--run-dir", run, "--steps", "2", "--save-every", "2") == 0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 2
    out = tmp_path / "student.pt"
    assert lic("distill", *common, "--channels", "8", "--run-dir", run, "--steps", "3", "--export", out) == 0
    assert "resuming" in capsys.readouterr().err
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 3
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["steps"] == 3 and prov["kind"] == "float-student"
    assert prov["teacher_fingerprint"] == tiny_teacher.fingerprint.hex()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"psnr_student", "psnr_teacher", "loss"} <= set(log[-1])

    student, cfg, fingerprint = load_float_student(out)
    assert fingerprint == tiny_teacher.fingerprint
    assert cfg.latent_channels == 24 and cfg.channels == (8, 8, 8, 8)
    y_hat = _y_hat(tiny_teacher)
    assert student(y_hat).shape == (1, 3, 64, 64)


def test_init_from_another_student(tmp_path, common, float_export):
    out = tmp_path / "ft.pt"
    assert lic("distill", *common, "--init", float_export, "--channels", "99", "--run-dir", tmp_path / "run",
               "--steps", "1", "--lr", "0", "--lr-final", "0", "--export", out) == 0
    a, cfg_a, _ = load_float_student(float_export)
    b, cfg_b, _ = load_float_student(out)
    assert cfg_a == cfg_b  # the init's architecture, not --channels
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # lr 0
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["init"] == str(float_export) and prov["init_sha256"] == sha256_file(float_export)
    # the init's own record, nested whole: a continued run's history needs no hand-written summary
    assert prov["init_provenance"] == json.loads(float_export.with_suffix(".provenance.json").read_text())


def test_init_grows_latent_convs(tmp_path, common, float_export, tiny_teacher, capsys):
    """--init with more --latent-convs than the init has: the grown student (lr 0) decodes exactly as
    the init does; fewer than the init has is refused in one line."""
    out = tmp_path / "grown.pt"
    assert lic("distill", *common, "--init", float_export, "--latent-convs", "2", "--run-dir", tmp_path / "run",
               "--steps", "1", "--lr", "0", "--lr-final", "0", "--export", out) == 0
    a, _, _ = load_float_student(float_export)
    b, cfg_b, _ = load_float_student(out)
    assert cfg_b.latent_convs == 2
    y_hat = _y_hat(tiny_teacher)
    with torch.no_grad():
        assert torch.equal(a(y_hat), b(y_hat))
    assert json.loads(out.with_suffix(".provenance.json").read_text())["grown_to_latent_convs"] == 2
    capsys.readouterr()
    assert lic("distill", *common, "--init", out, "--latent-convs", "1", "--run-dir", tmp_path / "run2",
               "--steps", "1", "--export", tmp_path / "x.pt") == 1
    assert "can only grow" in capsys.readouterr().err


def test_resume_refuses_another_student(tmp_path, common):
    run = tmp_path / "run"
    assert lic("distill", *common, "--channels", "8", "--run-dir", run, "--steps", "1") == 0
    assert lic("distill", *common, "--channels", "12", "--run-dir", run, "--steps", "2") == 1


def test_loss_decreases_on_one_batch(tmp_path, tiny_teacher_path):
    """Overfit check: one mirror-symmetric 64x64 image, so RandomCrops' crop and random flip always
    give the same batch; 30 steps must bring the loss well down."""
    folder = tmp_path / "one"
    folder.mkdir()
    y, x = np.mgrid[0:64, 0:64]
    x = np.minimum(x, 63 - x)
    save_png(folder / "a.png", np.stack([x * 8, y * 4, (x + y) * 3], 2).clip(0, 255).astype(np.uint8))
    run = tmp_path / "run"
    assert lic("distill", "--teacher", tiny_teacher_path, "--data", folder, "--crop", "64", "--batch-size", "1",
               "--threads", "1", "--channels", "8", "--run-dir", run, "--steps", "30", "--log-every", "1",
               "--lr", "3e-3", "--lr-final", "3e-3") == 0
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_feature_matching(tmp_path, common, tiny_teacher):
    run, out = tmp_path / "run", tmp_path / "s.pt"
    assert lic("distill", *common, "--channels", "8,8,6,6", "--convs-per-stage", "2", "--upsample", "deconv4",
               "--w-feature", "1", "--run-dir", run, "--steps", "2", "--log-every", "1", "--export", out) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(r["feature"] > 0 for r in log)
    # One adapter per teacher IGDN (3), trained in the checkpoint, left out of the export.
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    assert sum(k.startswith("adapters.") and k.endswith(".weight") for k in ck["net"]) == 3
    student, _, _ = load_float_student(out)
    assert student(_y_hat(tiny_teacher)).shape == (1, 3, 64, 64)


def test_qat_from_float_export(quant_export, tiny_teacher):
    model, cfg, qcfg, fingerprint = load_quant_student(quant_export)
    assert fingerprint == tiny_teacher.fingerprint
    assert qcfg.weight_bits == 3 and list(qcfg.act_bits) == [4, 4, 4, 6]
    y_hat = _y_hat(tiny_teacher)
    out = model(y_hat)
    assert out.shape == (1, 3, 64, 64)
    # Loaded scales are the trained ones, not Brevitas' initial 1.0: the output is not all clipped.
    assert model.output_scale() != 1.0 and torch.isfinite(out).all()
    prov = json.loads(quant_export.with_suffix(".provenance.json").read_text())
    assert prov["kind"] == "quant-student" and prov["quant_config"]["weight_bits"] == 3


def test_qat_resumes(tmp_path, common, float_export):
    run = tmp_path / "run"
    args = ["qat", "--student", float_export, *common, "--run-dir", run, "--calib-batches", "1"]
    assert lic(*args, "--steps", "1") == 0
    assert lic(*args, "--steps", "2") == 0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 2


def test_wrong_file_kinds(tmp_path, float_export, quant_export, tiny_teacher_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    for path in (quant_export, tiny_teacher_path, garbage, tmp_path / "missing.pt"):
        with pytest.raises(LicError):
            load_float_student(path)
    for path in (float_export, tiny_teacher_path, garbage):
        with pytest.raises(LicError):
            load_quant_student(path)
    broken = torch.load(float_export, weights_only=True)
    broken["config"]["channels"] = [9, 9, 9, 9]  # weights no longer fit
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(LicError):
        load_float_student(tmp_path / "broken.pt")


def test_qat_refuses_bad_inputs(tmp_path, common, float_export, tiny_teacher_path):
    run = tmp_path / "run"
    assert lic("qat", "--student", tiny_teacher_path, *common, "--run-dir", run, "--steps", "1") == 1
    assert lic("qat", "--student", float_export, *common, "--run-dir", run, "--steps", "1",
               "--act-bits", "4,4") == 1
    # A student is bound to its teacher's y_hat: another teacher is refused.
    from lic.compressai_compat import compressai  # noqa: F401
    from compressai.models import ScaleHyperprior

    torch.manual_seed(1)
    other = ScaleHyperprior(16, 24)
    other.update(force=True)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    assert load_teacher(str(tmp_path / "other.pth")).fingerprint != load_float_student(float_export)[2]
    args = [a if a != str(tiny_teacher_path) else str(tmp_path / "other.pth") for a in common]
    assert lic("qat", "--student", float_export, *args, "--run-dir", run, "--steps", "1") == 1
    assert not run.exists()


def test_crop_must_be_multiple_of_16(tmp_path, common):
    args = [a if a != "64" else "72" for a in common]
    assert lic("distill", *args, "--channels", "8", "--run-dir", tmp_path / "run", "--steps", "1") == 1


def test_torchrun_two_processes_with_features(tmp_path, tiny_teacher_path, image_folder):
    """DDP (gloo on CPU) with feature adapters and hooks: both ranks step and rank 0 exports."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "s.pt"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "lic.cli", "distill", "--teacher", str(tiny_teacher_path), "--data", str(image_folder),
                        *TINY, "--channels", "8", "--w-feature", "1", "--run-dir", str(tmp_path / "ddp"),
                        "--steps", "2", "--export", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["step"] == 2
    assert json.loads(out.with_suffix(".provenance.json").read_text())["batch_size"] == 4


def test_qat_init_continues_a_quantised_student(tmp_path, common, float_export, quant_export):
    out = tmp_path / "cont.pt"
    assert lic("qat", "--student", float_export, "--init", quant_export, *common, "--steps", "1", "--lr", "0",
               "--lr-final", "0", "--run-dir", tmp_path / "run", "--export", out) == 0
    a, _, qa, _ = load_quant_student(quant_export)
    b, _, qb, _ = load_quant_student(out)
    assert qa == qb  # the init's bit widths, not the flags' defaults
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # lr 0
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["init"] == str(quant_export)
    assert prov["init_provenance"] == json.loads(quant_export.with_suffix(".provenance.json").read_text())


def test_with_quantisers_calibrates_the_changed_relu_and_holds_the_rest(quant_export):
    from quantize.quant_student import calibrate_activations, with_quantisers

    model, cfg, _, _ = load_quant_student(quant_export)
    new, carried = with_quantisers(model, replace(model.qcfg, act_bits=[4, 4, 4, 8]))
    torch.manual_seed(0)
    calibrate_activations(new, [4 * torch.randn(1, cfg.latent_channels, 4, 4) for _ in range(2)], keep=carried)
    state = new.state_dict()
    assert carried and all(torch.equal(state[k], v) for k, v in carried.items())
    scalings = [m for m in new.modules() if type(m).__name__ == "ParameterFromRuntimeStatsScaling"]
    # every scale is a set value, the changed one included: none is left for QAT's first steps to collect
    assert all(m.counter > m.collect_stats_steps for m in scalings)
    last_relu = [name for name, m in new.named_modules() if type(m).__name__ == "QuantReLU"][-1]
    assert not any(k.startswith(last_relu + ".") for k in carried)


def test_qat_init_with_other_act_bits_recalibrates_only_the_changed_relu(tmp_path, common, float_export,
                                                                          quant_export):
    out = tmp_path / "rebit.pt"
    assert lic("qat", "--student", float_export, "--init", quant_export, *common, "--act-bits", "4,4,4,8",
               "--calib-batches", "2", "--steps", "1", "--lr", "0", "--lr-final", "0", "--run-dir", tmp_path / "run",
               "--export", out) == 0
    a, _, qa, _ = load_quant_student(quant_export)
    b, _, qb, _ = load_quant_student(out)
    assert list(qa.act_bits) == [4, 4, 4, 6] and list(qb.act_bits) == [4, 4, 4, 8]
    assert qb.weight_bits == qa.weight_bits == 3  # the init's, not the flag's default
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    last_relu = [name for name, m in b.named_modules() if type(m).__name__ == "QuantReLU"][-1]
    for k in sa:
        if k.startswith(last_relu + "."):
            assert not torch.equal(sa[k], sb[k])  # calibrated for 8 bits
        else:
            assert torch.equal(sa[k], sb[k]), k  # weights and the other scales carried over (lr 0)
    assert json.loads(out.with_suffix(".provenance.json").read_text())["init_act_bits"] == [4, 4, 4, 6]
    assert lic("qat", "--student", float_export, "--init", quant_export, *common, "--act-bits", "4,8",
               "--run-dir", tmp_path / "bad", "--steps", "1") == 1
    # wider than the package's int8 ONNX export can hold: refused before training, not at export
    assert lic("qat", "--student", float_export, *common, "--act-bits", "16", "--run-dir", tmp_path / "wide",
               "--steps", "1") == 1


def test_qat_init_with_other_weight_quantisers_carries_weights_and_exports(tmp_path, common, float_export,
                                                                            quant_export, tiny_teacher_path,
                                                                            integer_hs_path):
    out = tmp_path / "w8max.pt"
    assert lic("qat", "--student", float_export, "--init", quant_export, *common, "--weight-bits", "8,3,3,3,8",
               "--weight-scale", "max", "--calib-batches", "2", "--steps", "1", "--lr", "0", "--lr-final", "0",
               "--run-dir", tmp_path / "run", "--export", out) == 0
    a, _, qa, _ = load_quant_student(quant_export)
    b, _, qb, _ = load_quant_student(out)
    assert qa.weight_scale == "mse" and qb.weight_scale == "max" and list(qb.weight_bits) == [8, 3, 3, 3, 8]
    assert list(qb.act_bits) == list(qa.act_bits)  # not given: the init's
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        if ".weight_quant." not in k:
            assert torch.equal(sa[k], sb[k]), k  # weights, biases and activation scales carried (lr 0)
    convs = [m for m in b.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [int(m.quant_weight().bit_width) for m in convs] == [8, 3, 3, 3, 8]
    prov = json.loads(out.with_suffix(".provenance.json").read_text())
    assert prov["init_weight_bits"] == [3] * 5 and prov["init_weight_scale"] == "mse"
    # `lic export` refuses a package whose QONNX or onnxruntime output differs from Brevitas'
    assert lic("export", out, "--teacher", tiny_teacher_path, "--integer-hs", integer_hs_path, "-o", tmp_path / "pkg",
               "--tile", "8") == 0
    assert lic("qat", "--student", float_export, "--init", quant_export, *common, "--weight-bits", "8,4",
               "--run-dir", tmp_path / "bad", "--steps", "1") == 1


def test_quant_export_with_unknown_weight_scale_is_refused_in_one_line(tmp_path, quant_export):
    obj = torch.load(quant_export, map_location="cpu", weights_only=False)
    obj["quant_config"]["weight_scale"] = "percentile"
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(LicError, match="weight_scale must be one of"):
        load_quant_student(tmp_path / "bad.pt")


def test_weight_average_math():
    from training.loop import WeightAverage
    model = torch.nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor(0))
    w0 = model.weight.detach().clone()
    avg = WeightAverage(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
        model.count.fill_(7)
    avg.update(model)  # ramp: min(0.5, 2/11)
    d = 2 / 11
    assert torch.allclose(avg.average["weight"], d * w0 + (1 - d) * (w0 + 1))
    assert int(avg.average["count"]) == 7  # integer buffers are copied, not averaged
    again = WeightAverage(model, 0.5, avg.state())
    assert again.updates == 1 and again.average is avg.average
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(LicError):
            WeightAverage(model, bad)


def test_qat_exports_the_weight_average(tmp_path, common, float_export):
    """--ema exports the average the checkpoint holds, not the last step's weights; the same finished run
    re-exported without --ema gives the last step's weights (a control from the same batches)."""
    run = tmp_path / "run"
    args = ["qat", "--student", float_export, *common, "--run-dir", run, "--calib-batches", "1", "--steps", "3",
            "--lr", "1e-2", "--lr-final", "1e-2"]
    assert lic(*args, "--ema", "0.9", "--export", tmp_path / "avg.pt") == 0
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ck["ema"]["updates"] == 3
    avg = torch.load(tmp_path / "avg.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(avg[k], v) for k, v in ck["ema"]["average"].items())
    assert json.loads((tmp_path / "avg.provenance.json").read_text())["ema"] == 0.9
    assert lic(*args, "--export", tmp_path / "last.pt") == 0
    last = torch.load(tmp_path / "last.pt", weights_only=True)["state_dict"]
    raw = {k.removeprefix("student."): v for k, v in ck["net"].items() if k.startswith("student.")}
    assert all(torch.equal(last[k], raw[k]) for k in last)
    assert any(not torch.equal(last[k], avg[k]) for k in last if last[k].is_floating_point())
    assert "ema" not in json.loads((tmp_path / "last.provenance.json").read_text())


def test_minutes_stops_with_a_checkpoint_and_the_same_command_resumes(tmp_path, common, capsys):
    """--minutes fits a run to the time at hand: it stops at a step boundary with its checkpoint and
    no export, exit 0; the same command (a larger budget) resumes and exports at --steps."""
    run, out = tmp_path / "run", tmp_path / "student.pt"
    args = ["distill", *common, "--channels", "8", "--run-dir", run, "--save-every", "1000", "--export", out]
    assert lic(*args, "--steps", "1000", "--minutes", "0.0001") == 0
    stopped = torch.load(run / "checkpoint.pt", weights_only=False)["step"]
    assert 1 <= stopped < 1000 and not out.exists()
    assert "the same command resumes it" in capsys.readouterr().err
    assert lic(*args, "--steps", str(stopped + 2), "--minutes", "5") == 0
    assert "resuming" in capsys.readouterr().err
    assert json.loads(out.with_suffix(".provenance.json").read_text())["steps"] == stopped + 2


def test_minutes_must_be_positive(tmp_path, common, capsys):
    assert lic("distill", *common, "--run-dir", tmp_path / "r", "--minutes", "0") == 1
    assert "--minutes must be positive" in capsys.readouterr().err


def test_long_run_keeps_its_checkpoint_with_progress(tmp_path, common):
    """training/long_run.py: save copies the current phase's checkpoint into the committed folder
    with its step and core-hours, and the exports later phases start from (the first phase's and the
    newest, never a pile); restore brings them back to an empty build folder; status reads them."""
    from training import long_run

    phases = ["float+", "qat", "qat2"]
    runs, keep = tmp_path / "runs", tmp_path / "keep"
    with pytest.raises(LicError, match="nothing to save"):
        long_run.save(runs, keep, phases)
    assert lic("distill", *common, "--channels", "8", "--run-dir", runs / "q3-float", "--steps", "2",
               "--save-every", "1", "--log-every", "1") == 0
    progress = long_run.save(runs, keep, phases)
    assert progress["phase"] == "float" and progress["step"] == 2 and progress["last_log"]["step"] == 2
    # committed packed, and smaller; restore gives back the checkpoint bit for bit
    packed = keep / "checkpoint.pt.xz"
    assert not (keep / "checkpoint.pt").exists() and packed.stat().st_size < (runs / "q3-float" / "checkpoint.pt").stat().st_size
    assert long_run.status(tmp_path / "gone", keep, phases)["phase"] == "float"
    assert long_run.restore(tmp_path / "lost", keep, phases) == ["q3-float/checkpoint.pt", "q3-float/log.jsonl"]
    assert (tmp_path / "lost" / "q3-float" / "checkpoint.pt").read_bytes() == (runs / "q3-float" / "checkpoint.pt").read_bytes()
    # --save takes it back out where the repository has no room for it: the phase restarts, and says so
    dropped = long_run.drop_checkpoint(runs, keep, phases)
    assert "restarts" in dropped["checkpoint_not_kept"] and not packed.exists() and not (keep / "log.jsonl").exists()
    assert json.loads((keep / "progress.json").read_text()) == dropped
    assert long_run.restore(tmp_path / "lost2", keep, phases) == []

    # the float phase finishes (its export) and the next has not started: no checkpoint is kept
    (runs / "float.pt").write_bytes(b"float")
    (runs / "float.provenance.json").write_text("{}")
    progress = long_run.save(runs, keep, phases)
    assert progress["phase"] == "qat" and progress["finished"] == ["float"]
    assert progress["phases"]["float"]["step"] == 2 and not (keep / "checkpoint.pt.xz").exists()
    # qat2 finished too: qat's export is superseded and leaves the committed folder, in either form
    (runs / "qat.pt").write_bytes(b"qat")
    (runs / "qat2.pt").write_bytes(b"qat2")
    (keep / "qat.pt").write_bytes(b"qat")  # an older commit's plain copy
    progress = long_run.save(runs, keep, phases)
    assert progress["phase"] == "finished" and progress["finished"] == ["float", "qat", "qat2"]
    assert sorted(p.name for p in keep.glob("*.pt*")) == ["float.pt.xz", "qat2.pt.xz"]

    fresh = tmp_path / "fresh"
    assert sorted(long_run.restore(fresh, keep, phases)) == ["float.provenance.json", "float.pt", "qat2.pt"]
    assert (fresh / "qat2.pt").read_bytes() == b"qat2"
    assert long_run._finished(fresh, ["float", "qat", "qat2"]) == ["float", "qat", "qat2"]

    # a folder committed before packing (plain NAME.pt) still restores
    (keep / "qat2.pt.xz").unlink()
    (keep / "qat2.pt").write_bytes(b"qat2")
    older = tmp_path / "older"
    assert "qat2.pt" in long_run.restore(older, keep, phases) and (older / "qat2.pt").read_bytes() == b"qat2"


def test_long_run_verdicts_finish_phases_and_are_kept(tmp_path):
    """A phase that measures (a milestone's verdict) or that a verdict skipped leaves NAME.json
    instead of an export: it counts as finished, is committed and comes back on a fresh machine."""
    from training import long_run

    phases = ["float+", "gate", "enc+", "verdict"]
    runs, keep = tmp_path / "runs", tmp_path / "keep"
    runs.mkdir()
    (runs / "float.pt").write_bytes(b"float")
    (runs / "gate.json").write_text('{"beats": false}')
    progress = long_run.save(runs, keep, phases)
    assert progress["phase"] == "enc" and progress["finished"] == ["float", "gate"]
    # a phase building its target cache first has no checkpoint: --status reports the cache
    (runs / "cache-refined.tmp").mkdir()
    (runs / "cache-refined.tmp" / "progress.json").write_text(json.dumps(
        {"what": {"entries": [{}] * 900}, "entries_done": 182, "clipped": 0, "seconds": 830.3}))
    assert long_run.status(runs, keep, phases) == {"from": str(runs), "phase": "enc", "finished": ["float", "gate"],
                                                   "building": {"cache-refined": "182 of 900 entries saved, 0.23 h"}}
    shutil.rmtree(runs / "cache-refined.tmp")
    for skipped in ("enc", "verdict"):
        (runs / f"{skipped}.json").write_text('{"skipped": "gate"}')
    progress = long_run.save(runs, keep, phases)
    assert progress["phase"] == "finished"
    assert sorted(p.name for p in keep.iterdir() if p.name != "progress.json") == [
        "enc.json", "float.pt.xz", "gate.json", "verdict.json"]
    fresh = tmp_path / "fresh"
    long_run.restore(fresh, keep, phases)
    assert json.loads((fresh / "gate.json").read_text()) == {"beats": False}
    assert long_run._finished(fresh, ["float", "gate", "enc", "verdict"]) == ["float", "gate", "enc", "verdict"]


def test_long_run_keeps_exports_only_while_needed_and_no_encoder_checkpoint(tmp_path):
    """NAME+LATER keeps NAME's export until phase LATER has finished; a checkpoint over the limit (an
    encoder's g_a with its Adam state) is not committed, and progress says the phase restarts."""
    from training import long_run

    phases = ["float+qat2", "qat", "qat2", "enc"]
    runs, keep = tmp_path / "runs", tmp_path / "keep"
    runs.mkdir()
    for name in ("float", "qat"):
        (runs / f"{name}.pt").write_bytes(name.encode())
    long_run.save(runs, keep, phases)
    assert sorted(p.name for p in keep.glob("*.pt.xz")) == ["float.pt.xz", "qat.pt.xz"]  # qat2 still needs float
    (runs / "qat2.pt").write_bytes(b"qat2")
    (runs / "q3-enc").mkdir()
    torch.save({"step": 3, "elapsed_s": 10.0, "g_a": torch.zeros(long_run.CHECKPOINT_LIMIT // 4 + 1)},
               runs / "q3-enc" / "checkpoint.pt")
    progress = long_run.save(runs, keep, phases)
    assert sorted(p.name for p in keep.glob("*.pt.xz")) == ["qat2.pt.xz"]
    assert progress["phase"] == "enc" and progress["step"] == 3 and progress["steps"] is None
    assert "restarts" in progress["checkpoint_not_kept"] and not (keep / "checkpoint.pt.xz").exists()
