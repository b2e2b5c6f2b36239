"""`lic`: the command line of lic-fpga. Each subcommand lives in its stage package; this file only
dispatches and turns LicError (and other expected failures) into one-line errors with exit code 1."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from lic import __version__
from lic.errors import LicError

# name -> (module with add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS = {
    "encode": ("quantize.encode_cli", "encode an image to a .lic file with the teacher"),
    "decode": ("host.decode_cli", "decode .lic files to PNG with the teacher or the quantised student"),
    "eval": ("bench.evaluate", "rate-distortion evaluation on a folder (Kodak by default) with classical baselines"),
    "demo": ("bench.demo", "the main job on the shipped defaults: encode, decode with teacher and student, "
                           "FPGA estimates, report (make demo)"),
    "eval-students": ("bench.students", "student decoders vs their teachers on Kodak: PSNR, MACs, BD-rate"),
    "hs-rate": ("bench.hs_rate", "what the integer h_s costs in rate over the float h_s, on Kodak and held-out photos"),
    "bench": ("bench.platform_bench", "FPGA vs GPU vs CPU: fps, joules per frame, per-stage time, quality of the "
                                      "same files, every figure labelled measured/estimated/published (make bench)"),
    "pareto": ("bench.pareto", "PSNR loss against decoder MACs for a sweep of quantised students (+ FPGA estimates)"),
    "train-teacher": ("training.train_teacher", "train a ScaleHyperprior teacher on random crops (DDP-ready)"),
    "cache-targets": ("quantize.cache_targets_cli", "compute a frozen teacher's distillation targets once, over whole "
                                               "training images (for `lic distill/qat --cache`)"),
    "distill": ("training.distill", "distil a small student decoder g_s from a frozen teacher (DDP-ready)"),
    "prune": ("training.prune", "structured channel pruning of a wider float student to per-stage widths or a kMAC "
                                "budget (measured Taylor importance), fine-tuned from the cache"),
    "tune-encoder": ("quantize.encoder_tuning", "fine-tune the teacher's encoder g_a for the quantised student that "
                                                "decodes its files (rate-distortion loss; decoder side frozen)"),
    "qat": ("quantize.qat", "quantisation-aware training of a distilled student (Brevitas)"),
    "export": ("export.package", "write the deployable decoder package (ONNX, QONNX, integer h_s, CDF tables) "
                                 "for a quantised student"),
    "hw": ("hls.build", "compile the quantised student to a FINN accelerator for a board (make hw / make bitstream)"),
    "track": ("training.tracking", "experiment tracking: a training run's log.jsonl as TensorBoard events (opt-in)"),
    "board-rate": ("board.rate", "the board's frame rate: ARM stages (estimated under qemu, or measured "
                                       "--on-board) beside the fabric's estimate"),
    "distill-hyper": ("quantize.distill_hyper", "train the integer hyper-decoder (h_s) that makes entropy "
                                                "decoding bit-exact across platforms"),
}


def _function(module: str, prefix: str, name: str):
    """A module serving several subcommands names its functions add_<name>_arguments / run_<name>;
    a module serving one uses add_arguments / run."""
    mod = importlib.import_module(module)
    return getattr(mod, f"{prefix}_{name.replace('-', '_')}" + ("_arguments" if prefix == "add" else ""), None) \
        or getattr(mod, "add_arguments" if prefix == "add" else "run")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser for `command`; only its module is imported, so `lic --help` stays instant
    and one stage's heavy or broken import never breaks another's command."""
    p = argparse.ArgumentParser(
        prog="lic",
        description="lic-fpga: learned image compression whose decoder runs on FPGA fabric. "
                    "Run `lic COMMAND --help` for each command.",
    )
    p.add_argument("--version", action="version", version=f"lic-fpga {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _function(module, "add", name)(sp)
    return p


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so that what is being written is cleaned up
    (host/image_io.py write_atomic) as it is for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # signal handlers can only be set from the main thread (a caller's worker thread keeps its own)
    handled = (signal.SIGTERM, signal.SIGHUP) if threading.current_thread() is threading.main_thread() else ()
    previous = {s: signal.signal(s, _raise_terminated) for s in handled}
    try:
        return _main(argv)
    except Terminated as t:
        print(f"lic: stopped by {signal.Signals(t.signum).name}", file=sys.stderr)
        return 128 + t.signum
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _main(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in SUBCOMMANDS else None).parse_args(argv)
    run = _function(SUBCOMMANDS[args.command][0], "run", args.command)
    try:
        return run(args) or 0
    except LicError as e:
        print(f"lic: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lic: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # disk full, permission denied, ...: the OS's message is the useful part
        print(f"lic: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    except MemoryError:
        print("lic: error: out of memory (the job's estimate was under the limit; --max-memory SIZE lowers "
              "the limit so that such jobs are refused up front)", file=sys.stderr)
        return 1
    except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
        if "alloc" not in str(e).lower():
            raise
        print(f"lic: error: out of memory ({str(e).splitlines()[0][:200]})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
