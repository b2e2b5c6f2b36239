"""The command-line options the training commands share (`lic train-teacher`, `distill`, `qat`,
`tune-encoder`, `distill-hyper`), defined once: each flag's name, type and meaning here, each
command's defaults where it adds them:

    add_training_options(p, data=[DEFAULT_DATA], steps=20_000, batch_size=8, crop=256, lr=1e-3)

adds --data, --steps, --batch-size, --crop and --lr in that order. A command whose option means a
little more (a crop that must be a multiple of 64) passes its own help for it in `helps`; "{default}"
in a help text is that command's default. Torch-free, so a parser is built without loading torch."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bsds500"
REQUIRED = object()  # the value of an option the command requires (no default)


@dataclass(frozen=True)
class Option:
    help: str  # "{default}": the command's default, as _show writes it
    type: type
    nargs: str | None = None
    none: str = "none"  # what a default of None means: "(default: <none>)" in the help


OPTIONS = {
    "data": Option("folders of training images, searched recursively, less the held-out photos (default: {default})",
                   Path, "+"),
    "steps": Option("optimiser steps in total (default {default})", int),
    "batch_size": Option("crops per step per process (default {default})", int),
    "crop": Option("square crop size in pixels (default {default})", int),
    "lr": Option("peak learning rate (default {default})", float),
    "lr_final": Option("learning rate at the last step, cosine decay from --lr (default {default})", float,
                       none="constant --lr"),
    "clip": Option("gradient-norm clip (0 = off; default {default})", float),
    "run_dir": Option("checkpoints and log.jsonl go here; an existing checkpoint in it is resumed", Path),
    "save_every": Option("steps between checkpoints (default {default})", int),
    "log_every": Option("steps between log.jsonl records (default {default})", int),
    "export": Option("at the end, write the result here", Path),
    "seed": Option("random seed (default {default})", int),
    "threads": Option("torch CPU threads per process (default {default})", int, none="torch's choice"),
    "minutes": Option("stop after this many minutes of this invocation's wall time, checkpoint saved, and exit 0 "
                      "without exporting; the same command resumes (default {default})", float,
                      none="run to --steps"),
}


def _show(value) -> str:
    """A default as the help writes it: 1e-4 rather than 0.0001, paths beside the repository as ../..."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, Path):
        return str(Path("..") / value.relative_to(REPO.parent)) if value.is_relative_to(REPO.parent) else str(value)
    if isinstance(value, float) and value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_training_options(p: argparse.ArgumentParser, *, helps: dict[str, str] | None = None, **defaults) -> None:
    """Add the shared options named by `defaults` (batch_size for --batch-size), in that order, each
    with the given default (REQUIRED: no default, the command needs it). helps: this command's own
    text for some of them, instead of the shared one."""
    for name, default in defaults.items():
        option = OPTIONS[name]
        text = (helps or {}).get(name, option.help)
        flag = "--" + name.replace("_", "-")
        kwargs = {"type": option.type} | ({"nargs": option.nargs} if option.nargs else {})
        if default is REQUIRED:
            p.add_argument(flag, required=True, help=text, **kwargs)
        else:
            if default is None:
                text = text.replace("(default {default})", f"(default: {option.none})")
            p.add_argument(flag, default=default, help=text.replace("{default}", _show(default)), **kwargs)


def add_run_arguments(p: argparse.ArgumentParser, *, save_every: int, log_every: int, export_what: str,
                      threads_help: str | None = None) -> None:
    """The flags every resumable training command has: run dir, checkpoint and log cadence, export,
    seed, threads, the time box (--minutes)."""
    add_training_options(p, run_dir=REQUIRED, save_every=save_every, log_every=log_every, export=None, seed=0,
                         threads=None, minutes=None,
                         helps={"export": f"at the end, write {export_what} here (+ .provenance.json)"}
                         | ({"threads": threads_help} if threads_help else {}))


def options_namespace(add_arguments, **options) -> argparse.Namespace:
    """What a command line would give the command whose flags `add_arguments` adds: its defaults,
    overridden by `options` by their dest names (run_dir=..., batch_size=...), so that a command's
    work can be called as a function. An unknown name or a missing required option is a TypeError,
    as a function's arguments are."""
    p = argparse.ArgumentParser()
    add_arguments(p)
    actions = [a for a in p._actions if a.dest != "help"]
    unknown = sorted(set(options) - {a.dest for a in actions})
    missing = [a.dest for a in actions if a.required and a.dest not in options]
    if unknown or missing:
        raise TypeError(f"unknown options {unknown}" if unknown else f"missing required options {missing}")
    # as parse_args does: a string default goes through the option's type
    defaults = {a.dest: a.type(a.default) if isinstance(a.default, str) and callable(a.type) else a.default
                for a in actions}
    return argparse.Namespace(**(defaults | options))
