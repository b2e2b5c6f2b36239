"""The teacher: CompressAI's ScaleHyperprior (Ballé et al. 2018), loaded one of three ways.

A teacher *spec* names where it comes from:
  zoo:bmshj2018-hyperprior:Q   CompressAI's model zoo, through its own loader (needs the network)
  PATH                          a CompressAI state dict (.pth/.pth.tar/.pt), e.g. a zoo file
                                downloaded elsewhere or one written by `lic train-teacher`
  q1..q4 / default              a shipped default teacher (training/teachers/)
  qN-tuned                      the shipped teacher N with its g_a tuned for the shipped student
  PATH of a `lic tune-encoder` export   likewise, for the teacher whose fingerprint the export names

A tuned encoder shares its teacher's decoder side (h_s, entropy models, the students distilled from
it) but writes other latents, so it has a fingerprint of its own and names the teacher's as
`decoder_fingerprint`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from lic.compressai_compat import compressai  # noqa: F401  (must precede compressai imports)
from compressai import zoo
from compressai.models import ScaleHyperprior

from host.decoder_package import DEFAULT_QUALITY  # noqa: F401  (the default rate point, everywhere)
from lic.errors import LicError
from training import teacher_delta
from training.loop import read_torch_file

TEACHERS_DIR = Path(__file__).resolve().parent / "teachers"
MANIFEST = TEACHERS_DIR / "teachers.json"

# CompressAI's lambdas for bmshj2018-hyperprior, MSE, qualities 1..8 (its zoo documentation).
COMPRESSAI_LAMBDAS = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}
TUNED_ENCODER_KIND = "tuned-encoder"  # what `lic tune-encoder` exports (quantize/encoder_tuning.py)

# ScaleHyperprior downsamples by 2^4 (g_a) then 2^2 (h_a): inputs are padded to this multiple.
SPATIAL_MULTIPLE = 64


@dataclass
class Teacher:
    model: ScaleHyperprior
    fingerprint: bytes  # 16 bytes, see model_fingerprint()
    name: str           # how it was asked for, for messages and reports
    quality: int | None = None
    lmbda: float | None = None
    base_fingerprint: bytes | None = None  # for a tuned encoder: the teacher it was tuned from

    @property
    def decoder_fingerprint(self) -> bytes:
        """The teacher whose h_s, entropy models and students decode this model's latents."""
        return self.base_fingerprint or self.fingerprint


def model_fingerprint(model: torch.nn.Module) -> bytes:
    """16-byte digest of every tensor in the state dict (names, shapes, dtypes, values).

    It covers the entropy models' CDF tables as well as weights, so two models that could
    produce or read different bitstreams never share a fingerprint.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.digest()[:16]


def _entropy_tables_missing(model: ScaleHyperprior) -> bool:
    return model.entropy_bottleneck._quantized_cdf.numel() == 0 or \
        model.gaussian_conditional._quantized_cdf.numel() == 0


def from_state_dict(state_dict: dict, name: str) -> Teacher:
    """Build a teacher from a CompressAI-format state dict (N and M are read off the shapes)."""
    state_dict = {k: (v.float() if torch.is_floating_point(v) else v) for k, v in state_dict.items()}
    try:
        model = ScaleHyperprior.from_state_dict(state_dict)
    except (KeyError, RuntimeError) as e:
        raise LicError(f"{name}: not a CompressAI ScaleHyperprior state dict ({str(e).splitlines()[0]})") from None
    if _entropy_tables_missing(model):
        # A training checkpoint saved before update(): derive the CDF tables now.
        model.update(force=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return Teacher(model=model, fingerprint=model_fingerprint(model), name=name)


def load_state_dict_file(path: Path) -> dict:
    return state_dict_of(read_torch_file(path, "teacher checkpoint"), path)


def state_dict_of(obj, path: Path) -> dict:
    """The state dict a teacher file holds, whatever its layout (a shipped delta is unpacked)."""
    if teacher_delta.stands_alone(obj):
        return teacher_delta.unpack(obj, None, Path(path).name)
    if teacher_delta.is_delta(obj):
        base = teacher_delta.base_path(obj, path)
        base_obj = read_torch_file(base, f"base teacher of {Path(path).name}")
        if teacher_delta.is_delta(base_obj) and not teacher_delta.stands_alone(base_obj):
            raise LicError(f"{base}: a teacher delta's base must be a full teacher file, not another delta")
        return teacher_delta.unpack(obj, state_dict_of(base_obj, base), Path(path).name)
    return _plain_state_dict(obj, path)


def _plain_state_dict(obj, path: Path) -> dict:
    for key in ("state_dict", "model"):  # CompressAI's examples/train.py layout; `lic train-teacher`'s
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise LicError(f"{path}: checkpoint holds no state dict")
    # DDP-wrapped models save keys as "module.x"; CompressAI's own files do not.
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_zoo(architecture: str, quality: int) -> Teacher:
    """Load through CompressAI's zoo loader, which downloads the weights on first use."""
    if architecture != "bmshj2018-hyperprior":
        raise LicError(f"zoo model {architecture!r} is not a ScaleHyperprior; use bmshj2018-hyperprior")
    if quality not in COMPRESSAI_LAMBDAS:
        raise LicError(f"zoo quality must be 1..8, got {quality}")
    try:
        model = zoo.bmshj2018_hyperprior(quality=quality, metric="mse", pretrained=True, progress=False)
    except Exception as e:  # URLError, HTTPError, socket errors, ...: all mean "could not download"
        raise LicError(
            f"could not download CompressAI zoo weights for {architecture} q{quality} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}); offline, download the "
            f"file elsewhere and pass its path as the teacher instead"
        ) from None
    model.eval()
    return Teacher(model=model, fingerprint=model_fingerprint(model), name=f"zoo:{architecture}:{quality}",
                   quality=quality, lmbda=COMPRESSAI_LAMBDAS[quality])


def read_manifest() -> list[dict]:
    if not MANIFEST.is_file():
        return []
    return json.loads(MANIFEST.read_text())["teachers"]


def shipped_entry(quality: int) -> dict:
    """teachers.json's entry for a shipped rate point ({} when there is none)."""
    return next((e for e in read_manifest() if e["quality"] == quality), {})


def load_default(quality: int) -> Teacher:
    entries = {e["quality"]: e for e in read_manifest()}
    if quality not in entries:
        have = ", ".join(f"q{q}" for q in sorted(entries)) or "none"
        raise LicError(f"no shipped teacher for quality {quality} (shipped: {have})")
    e = entries[quality]
    t = from_state_dict(load_state_dict_file(TEACHERS_DIR / e["file"]), name=f"q{quality}")
    if t.fingerprint.hex() != e["fingerprint"]:
        raise LicError(f"shipped teacher {e['file']} does not match its manifest fingerprint (corrupt checkout?)")
    t.quality, t.lmbda = quality, e["lambda"]
    return t


def load_teacher(spec: str | None = None, quality: int | None = None) -> Teacher:
    """Resolve a teacher spec (see module doc); with no spec, the shipped teacher for `quality`."""
    if spec is None or spec == "default":
        return load_default(quality or DEFAULT_QUALITY)
    if spec.startswith("zoo:"):
        parts = spec.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise LicError(f"bad zoo spec {spec!r}; expected zoo:bmshj2018-hyperprior:Q")
        return load_zoo(parts[1], int(parts[2]))
    if len(spec) == 2 and spec[0] == "q" and spec[1].isdigit():
        return load_default(int(spec[1]))
    if spec.endswith("-tuned") and len(spec) == 8 and spec[0] == "q" and spec[1].isdigit():
        return load_tuned_default(int(spec[1]))
    path = Path(spec)
    obj = read_torch_file(path, "teacher checkpoint")
    if isinstance(obj, dict) and obj.get("kind") == TUNED_ENCODER_KIND:
        return from_tuned_encoder(obj, str(path))
    return from_state_dict(state_dict_of(obj, path), name=str(path))


def from_tuned_encoder(obj: dict, name: str) -> Teacher:
    """A `lic tune-encoder` export put into the shipped teacher it names: its g_a is the teacher's
    plus int8 steps x per-channel scales for conv weights, and given outright for the rest."""
    try:
        base_fp = bytes.fromhex(obj["teacher_fingerprint"])
        steps, scales, other = obj["g_a_delta_int8"], obj["g_a_delta_scale"], obj["g_a_other"]
    except (KeyError, TypeError, ValueError):
        raise LicError(f"{name}: damaged tuned-encoder file") from None
    entry = next((e for e in read_manifest() if e["fingerprint"] == base_fp.hex()), None)
    if entry is None:
        raise LicError(f"{name} was tuned from teacher {base_fp.hex()}, which is not a shipped teacher")
    base = load_default(entry["quality"])
    g_a = base.model.g_a.state_dict()
    try:
        for k, step in steps.items():
            g_a[k] = g_a[k] + step.float() * scales[k].float()[:, None, None, None]
        g_a.update({k: v.float() for k, v in other.items()})
        base.model.g_a.load_state_dict(g_a)
    except (RuntimeError, KeyError, IndexError, AttributeError) as e:
        raise LicError(f"{name}: g_a does not fit teacher q{entry['quality']} ({str(e).splitlines()[0]})") from None
    return Teacher(model=base.model, fingerprint=model_fingerprint(base.model), name=name, quality=base.quality,
                   lmbda=base.lmbda, base_fingerprint=base.fingerprint)


def load_tuned_default(quality: int) -> Teacher:
    entry = shipped_entry(quality)
    if "tuned_encoder" not in entry:
        raise LicError(f"no shipped tuned encoder for quality {quality} (`lic tune-encoder` makes one)")
    t = from_tuned_encoder(read_torch_file(TEACHERS_DIR / entry["tuned_encoder"], "tuned encoder"), f"q{quality}-tuned")
    if t.fingerprint.hex() != entry["tuned_encoder_fingerprint"]:
        raise LicError(f"shipped {entry['tuned_encoder']} does not match its manifest fingerprint (corrupt checkout?)")
    return t


def _stored_as_fp16(key: str, tensor: torch.Tensor) -> bool:
    """Conv weights and biases, ~99% of the bytes, lose nothing that matters in fp16. Everything else
    stays fp32: bounds (the 1e-9 likelihood bound underflows to 0 in fp16), the scale table, GDN's
    reparametrised beta/gamma (offsets near 2^-18) and the entropy bottleneck's density parameters."""
    return torch.is_floating_point(tensor) and key.endswith((".weight", ".bias")) and \
        not key.startswith("entropy_bottleneck.")


def stored_form(state_dict: dict) -> dict:
    return {k: (v.half() if _stored_as_fp16(k, v) else v) for k, v in state_dict.items()}


def save_compact(model: ScaleHyperprior, path: Path) -> None:
    """Write the shipped form: CompressAI state dict, CDF tables included, conv weights as fp16.

    fp16 halves the repository size; the loader upcasts to fp32, so encoder and decoder see the same
    weights and the fingerprint is taken after the upcast.
    """
    sd = stored_form(model.state_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(sd, tmp)
    tmp.replace(path)
