"""`lic decode --decoder teacher`: the teacher's float decoder, the reference every student is
compared with. It needs torch, so it lives here and host/decode_cli.py finds it through
lic/plugins.py."""

from __future__ import annotations

from host.container import parse
from host.integer_hyper import IntegerHyperSynthesis
from lic.errors import LicError
from training.teacher import load_teacher
from training.teacher_codec import EntropyModels, decode, find_shipped


class TeacherDecoder:
    """Decodes any .lic version with the shipped teacher its header names (or --teacher's)."""

    def __init__(self, args):
        if args.backend not in (None, "torch"):
            raise LicError(f"the teacher decoder runs on --backend torch only (got {args.backend}); "
                           f"--decoder student runs on {args.backend}")
        self.args, self.models = args, {}
        self.name = "teacher"

    def decode(self, data: bytes, name: str):
        lic = parse(data, name)
        em = self.models.get(lic.fingerprint)
        if em is None:
            if self.args.teacher is not None:
                integer_hs = IntegerHyperSynthesis.load(self.args.integer_hs) if self.args.integer_hs else None
                em = EntropyModels(load_teacher(self.args.teacher), integer_hs)
            else:
                em = find_shipped(lic.fingerprint)
                if em is None:
                    raise LicError(f"{name} needs decoder {lic.fingerprint.hex()}, which is not a shipped "
                                   f"teacher; pass --teacher (and --integer-hs for format v2) with what encoded it")
            self.models[lic.fingerprint] = em
            self.name = f"teacher {em.name}"
        return decode(em, data, name, max_pixels=self.args.max_pixels), None
