#!/usr/bin/env python3
"""A GPU sprint for one rate point, sized to one call on a lent GPU machine (at most ~9 minutes).

The students underfit: the gap to the teachers is training budget, and a GPU is the cheapest budget
there is, when one is at hand. It comes rarely and briefly (one machine, ~15 minutes of device time,
10 minutes a command, no network, nothing of ../shared), so this is prepared before it comes:

  make sprint-bundle          here: build/sprint/ = training images (a subset of BSDS500 that fits,
                              with the repository, in the 64 MiB that travels), a few Kodak images for
                              a first look, and the wheels the GPU image lacks (brevitas, compressai's
                              sdist, ...); prints the byte budget it worked to
  make gpu-sprint DEVICE=cuda MINUTES=9 OUT=$OUT      there (the device tool, carrying build/sprint):
      1. installs the bundle's wheels into build/sprint/site (compressai is built from its sdist);
      2. `lic cache-targets --device DEVICE` over the bundle's images (the teacher's targets);
      3. `lic distill`: the shipped float student continued at a cosine, as many steps as fit in
         its share of the time (the step time measured first on a short run);
      4. `lic qat`: fresh QAT of that float student to the shipped quantisers, likewise;
      5. `lic eval-students` of the shipped and the sprint's students on the bundle's Kodak images;
      6. OUT/: both students with their provenance, sprint.json (commands, steps, seconds, hardware,
         the eval), sprint.log.
Then, here: the full Kodak and held-out evaluation, the encoder re-tune and the pass on refined
latents (training/recipes/default_students.sh steps 5-9), and ship only if it beats the shipped files.

The same code runs on the CPU (`--device cpu`), which is how it is tested (tests/test_gpu_sprint.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
BUNDLE = REPO / "build" / "sprint"
TRAVEL_LIMIT = 64 * 2**20  # the device tool's working-tree limit, carried paths included
ROOM = 58 * 2**20  # what tracked files may take of it: ~4 MiB stay for the sprint's photos beside the wheels
# Packages the GPU image lacks (KINDS.md lists what it has): pure-Python wheels, plus compressai's
# sdist (no cp312 wheel exists; its C++ extensions build with the image's g++ and pybind11).
# setuptools<81 because brevitas imports pkg_resources.
SPRINT_WHEELS = ["setuptools==80.10.2", "brevitas==0.13.4", "dependencies==2.0.1", "unfoldNd==0.2.3", "pytorch-msssim==1.0.0",
                 "bjontegaard==1.3.0"]
SPRINT_SDISTS = ["compressai==1.2.8"]
QUANTISERS = ["--weight-bits", "8,4,4,8,8", "--act-bits", "8,8,8,8", "--weight-scale", "mse"]


def log(msg: str) -> None:
    print(f"[sprint {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# The bundle (made here)


def tracked_bytes() -> int:
    """What travels without being carried: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return sum((REPO / p).stat().st_size for p in out.decode().split("\0") if p and (REPO / p).is_file())


def make_bundle(out: Path, eval_images: int, margin: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    wheels = out / "wheels"
    wheels.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels)]
    subprocess.run(pip + ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                          "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                          *SPRINT_WHEELS], check=True)
    subprocess.run(pip + ["--no-binary", ":all:", *SPRINT_SDISTS], check=True)
    wheel_bytes = sum(p.stat().st_size for p in wheels.iterdir())
    budget = TRAVEL_LIMIT - tracked_bytes() - wheel_bytes - margin
    if budget <= 0:
        raise SystemExit(f"sprint-bundle: the repository alone leaves no room in the {TRAVEL_LIMIT >> 20} MiB "
                         f"that travels (budget {budget} bytes)")
    # Kodak's smallest files for the first look (the full evaluation runs back here).
    kodak = sorted((SHARED_DATA / "kodak").glob("*.png"), key=lambda p: p.stat().st_size)[:eval_images]
    (out / "eval").mkdir()
    for p in kodak:
        shutil.copy2(p, out / "eval" / p.name)
    budget -= sum(p.stat().st_size for p in kodak)
    # Training photos in a fixed order (BSDS500 less the 50 held-out test photos, as the students had),
    # as many as fit.
    held = set(sorted((SHARED_DATA / "bsds500" / "test").glob("*.jpg"))[:50])
    pool = [p for split in ("train", "val", "test") for p in sorted((SHARED_DATA / "bsds500" / split).glob("*.jpg"))
            if p not in held]
    (out / "data").mkdir()
    taken, used = 0, 0
    for p in pool:
        size = p.stat().st_size
        if used + size > budget:
            break
        shutil.copy2(p, out / "data" / f"{p.parent.name}_{p.name}")
        taken, used = taken + 1, used + size
    info = {"training_images": taken, "of": len(pool), "training_bytes": used, "eval_images": [p.name for p in kodak],
            "wheels": sorted(p.name for p in wheels.iterdir()), "wheel_bytes": wheel_bytes,
            "repository_bytes": tracked_bytes(), "travel_limit": TRAVEL_LIMIT, "margin": margin}
    (out / "bundle.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# ---------------------------------------------------------------------------------------------
# The sprint (run there)


def install_bundle(bundle: Path) -> Path:
    """The bundle's packages into bundle/site, once; the stages see them first on their PYTHONPATH."""
    site = bundle / "site"
    if not (site / ".installed").is_file():
        log(f"installing {bundle / 'wheels'} into {site}")
        files = sorted(str(p) for p in (bundle / "wheels").iterdir())
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *files], check=True)
        (site / ".installed").touch()
    return site


def child_env(site: Path | None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(REPO)] + ([str(site)] if site and site.is_dir() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


class Sprint:
    def __init__(self, args, site: Path | None):
        self.args, self.env = args, child_env(site)
        self.work = args.work
        self.t0 = time.monotonic()
        self.deadline = self.t0 + 60 * args.minutes
        self.record: dict = {"quality": args.quality, "device": args.device, "minutes": args.minutes, "stages": []}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def lic(self, *argv: str, what: str) -> float:
        cmd = [sys.executable, "-m", "lic.cli", *argv]
        log(f"{what}: lic {' '.join(argv)}")
        t = time.monotonic()
        with open(self.args.out / "sprint.log", "a") as f:
            rc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT).returncode
        seconds = time.monotonic() - t
        self.record["stages"].append({"what": what, "command": "lic " + " ".join(argv), "seconds": round(seconds, 1),
                                      "rc": rc})
        if rc:
            raise SystemExit(f"sprint: {what} failed (exit {rc}); see {self.args.out / 'sprint.log'}")
        return seconds

    def step_time(self, command: str, run_args: list[str], what: str) -> tuple[float, float]:
        """(seconds per step, seconds of start-up) from a short run of the same command."""
        n = self.args.calib_steps
        run = self.work / f"calib-{command}"
        shutil.rmtree(run, ignore_errors=True)
        wall = self.lic(command, *run_args, "--steps", str(n), "--save-every", str(n), "--run-dir", str(run),
                        what=f"{what}: step time over {n} steps")
        import torch  # only here: the bundle step above must run without torch's import cost

        loop = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["elapsed_s"]
        return loop / n, max(wall - loop, 0.0)

    def train(self, command: str, run_args: list[str], export: Path, seconds: float, what: str) -> int:
        per_step, startup = self.step_time(command, run_args, what)
        steps = max(self.args.min_steps, int((seconds - per_step * self.args.calib_steps - 2 * startup) / per_step))
        log(f"{what}: {per_step * 1000:.0f} ms/step, start-up {startup:.0f} s -> {steps} steps")
        run = self.work / command
        shutil.rmtree(run, ignore_errors=True)
        # --minutes caps a run whose steps slowed down; the same command with --steps at its
        # checkpoint's step then exports what it reached.
        common = [command, *run_args, "--run-dir", str(run), "--export", str(export), "--save-every", "50"]
        self.lic(*common, "--steps", str(steps), "--minutes", f"{max(seconds * 1.15, 30) / 60:.2f}", what=what)
        if not export.is_file():
            import torch

            reached = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["step"]
            self.lic(*common, "--steps", str(reached), what=f"{what}: export at step {reached}")
            steps = reached
        self.record[f"{command}_steps"] = steps
        return steps

    def run(self) -> dict:
        a, q = self.args, self.args.quality
        a.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        cache = self.work / f"cache-q{q}"
        shutil.rmtree(cache, ignore_errors=True)
        self.lic("cache-targets", "--quality", str(q), "--data", str(a.data), "--device", a.device,
                 "--threads", str(a.threads), "-o", str(cache), *(["--size", a.size] if a.size else []),
                 what="teacher targets")
        shipped = REPO / "training" / "students"
        float_out, quant_out = a.out / f"student_q{q}.float.pt", a.out / f"student_q{q}.pt"
        common = ["--quality", str(q), "--cache", str(cache), "--crop", str(a.crop), "--batch-size", str(a.batch_size),
                  "--threads", str(a.threads), "--lr-final", "1e-6"]
        train_s = self.left() - a.eval_seconds
        self.train("distill", [*common, "--init", str(shipped / f"student_q{q}.float.pt"), "--lr", "2e-4"],
                   float_out, a.float_share * train_s, "float student")
        self.train("qat", [*common, "--student", str(float_out), *QUANTISERS, "--lr", "1e-4", "--ema", "0.999"],
                   quant_out, self.left() - a.eval_seconds, "quantised student")
        # The shipped manifest with this rate point's files replaced by the sprint's.
        manifest = json.loads((shipped / "students.json").read_text())
        entry = next(s for s in manifest["students"] if s["quality"] == q)
        manifest["students"] = [{**entry, "float": str(float_out.resolve()), "quant": str(quant_out.resolve())}]
        (self.work / "students.json").write_text(json.dumps(manifest, indent=2))
        self.record["eval"] = {}
        for name, students in (("shipped", shipped / "students.json"), ("sprint", self.work / "students.json")):
            out = self.work / f"eval-{name}"
            self.lic("eval-students", "--data", str(a.eval_data), "--quality", str(q), "--students", str(students),
                     "--baselines", "none", "-o", str(out), what=f"eval {name} students")
            self.record["eval"][name] = eval_summary(out)
        self.record["seconds"] = round(time.monotonic() - self.t0, 1)
        self.record["hardware"] = hardware(a.device, self.env)
        (a.out / "sprint.json").write_text(json.dumps(self.record, indent=2) + "\n")
        return self.record


def eval_summary(out: Path) -> dict:
    """Each decoder's mean bpp / PSNR / MS-SSIM on the eval images, from `lic eval-students`' results."""
    results = json.loads((out / "results.json").read_text())
    point = results["points"][0]
    return {"images": results["images"], **{k: point["mean"][k] for k in ("teacher", "float_student", "quant_student")
                                            if k in point["mean"]}}


def hardware(device: str, env: dict) -> str:
    code = ("import torch, platform; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() "
            "else (platform.processor() or platform.machine()) + ' CPU', 'torch', torch.__version__)")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return got.stdout.strip() or device


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bundle", help="make build/sprint/ here: training and eval images, wheels")
    b.add_argument("-o", "--out", type=Path, default=BUNDLE)
    b.add_argument("--eval-images", type=int, default=4, help="Kodak images for the first look (default 4)")
    b.add_argument("--margin", type=int, default=2 * 2**20, help="bytes left free under the limit (default 2 MiB)")
    sub.add_parser("room", help=f"do the tracked files fit the {ROOM >> 20} MiB that leave the sprint room for "
                                f"its photos? (exit 1 if not)")
    s = sub.add_parser("run", help="run the sprint (on the GPU machine, or --device cpu to test it)")
    s.add_argument("-o", "--out", type=Path, required=True, help="students, provenance, sprint.json, sprint.log")
    s.add_argument("--quality", type=int, default=3)
    s.add_argument("--minutes", type=float, default=9.0, help="wall-time budget of the whole sprint (default 9)")
    s.add_argument("--device", default="cuda")
    s.add_argument("--bundle", type=Path, default=BUNDLE, help=f"from `make sprint-bundle` (default {BUNDLE})")
    s.add_argument("--data", type=Path, default=None, help="training images (default BUNDLE/data)")
    s.add_argument("--eval-data", type=Path, default=None, help="eval images (default BUNDLE/eval)")
    s.add_argument("--work", type=Path, default=None, help="caches and runs (default BUNDLE/work)")
    s.add_argument("--batch-size", type=int, default=16, help="crops per step (default 16; 4 on the CPU recipes)")
    s.add_argument("--crop", type=int, default=512, help="crop (default 512 = whole cached images)")
    s.add_argument("--size", default=None, help="cache entry size HxW (default: lic cache-targets')")
    s.add_argument("--threads", type=int, default=4, help="torch CPU threads of each stage (default 4)")
    s.add_argument("--float-share", type=float, default=0.6, help="share of the training time for the float student")
    s.add_argument("--eval-seconds", type=float, default=90,
                   help="time kept back for the two evaluations (default 90)")
    s.add_argument("--calib-steps", type=int, default=20, help="steps of the short run that times a step (default 20)")
    s.add_argument("--min-steps", type=int, default=10)
    args = p.parse_args(argv)
    if args.what == "room":
        used = tracked_bytes()
        print(f"tracked files: {used / 2**20:.1f} MiB of the {ROOM >> 20} MiB room", file=sys.stderr)
        return 0 if used <= ROOM else 1
    if args.what == "bundle":
        info = make_bundle(args.out, args.eval_images, args.margin)
        print(json.dumps(info, indent=2))
        return 0
    args.data = args.data or args.bundle / "data"
    args.eval_data = args.eval_data or args.bundle / "eval"
    args.work = args.work or args.bundle / "work"
    for d, what in ((args.data, "training images"), (args.eval_data, "eval images")):
        if not d.is_dir() or not any(d.iterdir()):
            raise SystemExit(f"sprint: no {what} in {d}: run `make sprint-bundle` here and carry build/sprint")
    site = install_bundle(args.bundle) if (args.bundle / "wheels").is_dir() else None
    record = Sprint(args, site).run()
    log(f"done in {record['seconds']:.0f} s: {record['distill_steps']} float steps, {record['qat_steps']} QAT steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
