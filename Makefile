# lic-fpga. `make demo` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
LIC := $(VENV)/bin/lic
STAMP := $(VENV)/.installed

BOARD ?= pynq-z2
TARGET_FPS ?=
HW_ARGS = --board $(BOARD) $(if $(TARGET_FPS),--target-fps $(TARGET_FPS)) $(if $(SHARED),--shared-weights)

FUZZ_DIR := build/fuzz
# Debian architecture of BOARD's ARM (board.json "arm": armhf for PYNQ-Z2's A9, arm64 for the A53 boards)
ARM_ARCH = $(shell $(PYTHON) -c "import json; print(json.load(open('fpga_projects/$(BOARD)/board.json'))['arm']['arch'])")

.PHONY: setup native test test-slow demo teachers eval hw preflight bitstream bench packages clean help asan-rans fuzz arm-check board-rate long-run sprint-bundle gpu-sprint

help:
	@echo "make setup      create .venv with every pinned dependency (idempotent)"
	@echo "make test       run the test suite (CI runs this)"
	@echo "make test-slow  run the slow checks too (full Kodak evaluation)"
	@echo "make demo       Kodak: encode (teacher), decode (teacher and quantised student), FPGA estimates -> build/demo/"
	@echo "make eval       teacher RD curve and classical baselines on Kodak -> build/eval/"
	@echo "make hw BOARD=pynq-z2 [TARGET_FPS=25]   FINN build up to HLS code + estimates (no Vivado needed)"
	@echo "make preflight BOARD=pynq-z2            what make bitstream needs (Vivado, Vitis HLS, finn deps, ...): one table"
	@echo "make bitstream BOARD=pynq-z2            preflight, then on to the bitfile (needs Vivado: XILINX_VIVADO)"
	@echo "make bench      FPGA vs GPU vs CPU: fps, J/frame, per-stage time, quality -> build/bench/ (GPU rows: lic bench --device cuda)"
	@echo "make asan-rans  fuzz the C rANS decoder under AddressSanitizer + UBSan (SEED=1 COUNT=20000)"
	@echo "make fuzz SEED=1 COUNT=20000        coverage-guided fuzzing (Atheris) of the .lic parser and the C rANS decoder"
	@echo "make arm-check [BOARD=zcu104]   the board's half of decoding on Debian armhf/arm64 (qemu-user), bit-exact against x86 (installs qemu, cross gcc; needs root once)"
	@echo "make board-rate [BOARD=zcu104]  ARM time per stage, modelled (qemu block profile + llvm-mca + simulated caches; A9 or A53) and by instructions x CPI, beside the fabric's fps"
	@echo "make packages   decoder packages of every shipped rate point -> build/decoders/qN (q3 ships in host/decoders)"
	@echo "make long-run   advance the long background training run (one core, nice 19; resumes; LONG_RUN=--save|--status)"
	@echo "make sprint-bundle                  build/sprint/: what a GPU sprint carries (images within the 64 MiB, wheels)"
	@echo "make gpu-sprint DEVICE=cuda MINUTES=9 OUT=DIR   float student + QAT for the time given, eval -> OUT"
	@echo "make teachers   retrain the shipped default teachers (CPU recipe, ~1.5 h on 2 cores)"

SEED ?= 1
COUNT ?= 20000

setup: $(STAMP) native

# The board's C code (rANS decoder, integer h_s, RGB output) -> build/host/; host/csrc/Makefile says
# how to build it for the board or with another compiler. Without it the host falls back to
# CompressAI's coder and numpy, with the same results.
native:
	$(MAKE) -s -C host/csrc

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(PY) -m pytest -m "not slow" -q

test-slow: setup
	$(PY) -m pytest -m slow -q

demo: setup
	$(LIC) demo --board $(BOARD) -o build/demo

eval: setup
	$(LIC) eval --quality all --baselines jpeg,webp,avif,heif -o build/eval

hw: setup
	$(LIC) hw $(HW_ARGS)

# finn_xsi loads Vivado's simulator kernel inside the lic process, whose library search path is fixed
# when it starts (finn-plus's own CLI re-executes itself to add these; lic does not).
XILINX_LD_PATH = $(XILINX_VIVADO)/lib/lnx64.o$(if $(XILINX_HLS),:$(XILINX_HLS)/lnx64/tools/fpo_v7_1)

preflight: setup
	$(if $(XILINX_VIVADO),LD_LIBRARY_PATH=$(XILINX_LD_PATH)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}) $(LIC) hw --board $(BOARD) --preflight

bitstream: preflight
	$(if $(XILINX_VIVADO),LD_LIBRARY_PATH=$(XILINX_LD_PATH)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}) $(LIC) hw $(HW_ARGS) --bitstream

bench: setup
	$(LIC) bench -o build/bench
asan-rans: setup
	$(PY) tests/fuzz_rans_asan.py --seed $(SEED) --count $(COUNT)

# Coverage-guided fuzzing, COUNT inputs per target (tests/fuzz_atheris.py); findings: crash-* files.
fuzz: setup
	mkdir -p $(FUZZ_DIR)/findings
	$(PY) tests/fuzz_atheris.py --target runtime -seed=$(SEED) -runs=$(COUNT) -artifact_prefix=$(FUZZ_DIR)/findings/ $(FUZZ_DIR)/corpus/runtime
	$(PY) tests/fuzz_atheris.py --target rans -seed=$(SEED) -runs=$(COUNT) -max_len=65536 -len_control=0 -artifact_prefix=$(FUZZ_DIR)/findings/ $(FUZZ_DIR)/corpus/rans

arm-check: setup
	board/armhf/setup_root.sh build/$(ARM_ARCH)-root $(ARM_ARCH)
	$(PY) -m board.arm_check --arch $(ARM_ARCH)

board-rate: setup
	board/armhf/setup_root.sh build/$(ARM_ARCH)-root $(ARM_ARCH)
	$(LIC) board-rate --board $(BOARD)

packages: setup
	for q in 1 2 4; do $(LIC) export training/students/student_q$$q.pt --teacher q$$q-tuned -o build/decoders/q$$q || exit 1; done

long-run: setup
	training/recipes/long_run.sh $(LONG_RUN)

sprint-bundle: setup
	$(PY) training/recipes/gpu_sprint.py bundle

# On the GPU machine there is no venv: the image's python3 with the bundle's wheels (see the script).
DEVICE ?= cuda
MINUTES ?= 9
OUT ?= build/sprint/out
SPRINT_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-sprint:
	$(SPRINT_PY) training/recipes/gpu_sprint.py run --device $(DEVICE) --minutes $(MINUTES) -o $(OUT)

teachers: setup
	training/recipes/default_teachers.sh

clean:
	rm -rf build .pytest_cache fpga_projects/*/build
