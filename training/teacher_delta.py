"""Shipped teachers stored as a lossless delta against the default teacher (training/teachers/), and
the default teacher itself as a delta against nothing.

Why: the four shipped teachers are 45 MB of fp16 weights, and the repository travels to a GPU machine
only while it is under 64 MiB. All four were fine-tuned for 500 steps from one base run, so their
weights share sign, exponent and top mantissa bits: the XOR of a teacher's bytes with the default
teacher's is mostly zeros in the high byte planes, and lzma packs it to about half. The default
teacher alone gains less, but still: its sign-and-exponent bytes, taken apart from the noisy low
bytes, pack 11.2 -> 8.8 MB. Lossless: the unpacked state dict is the exported one bit for bit, so
every fingerprint and every .lic file is unchanged; a digest of both the base and the result is
checked on every load.

A delta file is a torch file (weights_only-safe) holding:
  kind            "teacher-xor-delta"
  base_file       the base teacher's file name, in the same folder; None: a delta against nothing
                  (the base itself), its tensors' own bytes in planes
  base_digest     state_digest() of the base it was packed against (None with no base)
  digest          state_digest() of the teacher it unpacks to
  tensors         [name, dtype, shape] of every tensor stored as XOR, in plane order
  planes          {itemsize: uint8 tensor}: lzma of the XOR bytes, byte plane after byte plane
  whole           tensors whose name, shape or dtype the base does not share, stored as they are
"""

from __future__ import annotations

import hashlib
import lzma
from pathlib import Path

import numpy as np
import torch

from lic.errors import LicError

KIND = "teacher-xor-delta"


def state_digest(state_dict: dict) -> str:
    """sha256 over names, dtypes, shapes and bytes of a state dict, as stored (before any upcast)."""
    h = hashlib.sha256()
    for name, t in sorted(state_dict.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def is_delta(obj) -> bool:
    return isinstance(obj, dict) and obj.get("kind") == KIND


def stands_alone(obj) -> bool:
    """A delta against nothing: the default teacher, which the others are deltas against."""
    return is_delta(obj) and obj.get("base_file") is None


def _bytes(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().contiguous().numpy().reshape(-1).view(np.uint8)


def pack(state_dict: dict, base: dict | None, base_file: str | None) -> dict:
    """The delta of `state_dict` against `base` (both as stored, i.e. fp16 conv weights); with no base
    (None), every tensor's own bytes."""
    xored = [k for k in sorted(state_dict) if base is None or (k in base and base[k].dtype == state_dict[k].dtype
                                                               and base[k].shape == state_dict[k].shape)]
    shared = set(xored)
    whole = {k: v for k, v in state_dict.items() if k not in shared}
    by_size: dict[int, list[np.ndarray]] = {}
    for k in xored:
        t = state_dict[k]
        x = _bytes(t) if base is None else _bytes(t) ^ _bytes(base[k])
        by_size.setdefault(t.element_size(), []).append(x.reshape(-1, t.element_size()))
    # Byte planes: the high bytes (sign, exponent) of similar weights XOR to runs of zeros that lzma
    # packs tightly, where interleaved with the noisy low bytes they would not.
    planes = {size: torch.frombuffer(bytearray(lzma.compress(np.concatenate(rows).T.tobytes(), preset=9)),
                                     dtype=torch.uint8)
              for size, rows in by_size.items()}
    return {"kind": KIND, "base_file": None if base is None else base_file,
            "base_digest": None if base is None else state_digest(base), "digest": state_digest(state_dict),
            "tensors": [[k, str(state_dict[k].dtype).removeprefix("torch."), list(state_dict[k].shape)] for k in xored],
            "planes": planes, "whole": whole}


def unpack(obj: dict, base: dict | None, name: str) -> dict:
    """The state dict a delta stands for; LicError if the base is not the one it was packed against
    (`base` is not read for a delta against nothing)."""
    try:
        alone = obj["base_file"] is None
        if not alone and state_digest(base) != obj["base_digest"]:
            raise LicError(f"{name} is stored as a delta against {obj['base_file']}, which has changed since; "
                           f"restore that file (git checkout) or re-export this teacher")
        specs = [(k, getattr(torch, dtype), tuple(shape)) for k, dtype, shape in obj["tensors"]]
        out = dict(obj["whole"])
        for size, blob in obj["planes"].items():
            group = [s for s in specs if torch.empty(0, dtype=s[1]).element_size() == size]
            raw = np.frombuffer(lzma.decompress(blob.numpy().tobytes()), dtype=np.uint8)
            rows = raw.reshape(size, -1).T
            at = 0
            for k, dtype, shape in group:
                n = int(np.prod(shape, dtype=np.int64))
                x = rows[at:at + n].reshape(-1)
                if not alone:
                    x = x ^ _bytes(base[k])
                out[k] = torch.from_numpy(x.copy().view(torch.empty(0, dtype=dtype).numpy().dtype)).reshape(shape)
                at += n
            if at != rows.shape[0]:
                raise ValueError("plane length does not match the tensor list")
    except LicError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, lzma.LZMAError) as e:
        raise LicError(f"{name}: damaged teacher delta file ({type(e).__name__})") from None
    if state_digest(out) != obj["digest"]:
        raise LicError(f"{name}: damaged teacher delta file (digest mismatch)")
    return out


def base_path(obj: dict, path: Path) -> Path:
    return Path(path).with_name(str(obj.get("base_file", "")))
