# lic-fpga. `make demo` and `make test` are the two commands a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
LIC := $(VENV)/bin/lic
STAMP := $(VENV)/.installed

BOARD ?= pynq-z2
TARGET_FPS ?=
HW_ARGS = --board $(BOARD) $(if $(TARGET_FPS),--target-fps $(TARGET_FPS))

.PHONY: setup test test-slow demo teachers eval hw bitstream packages clean help

help:
	@echo "make setup      create .venv with every pinned dependency (idempotent)"
	@echo "make test       run the test suite (CI runs this)"
	@echo "make test-slow  run the slow checks too (full Kodak evaluation)"
	@echo "make demo       Kodak: encode (teacher), decode (teacher and quantised student), FPGA estimates -> build/demo/"
	@echo "make eval       teacher RD curve and classical baselines on Kodak -> build/eval/"
	@echo "make hw BOARD=pynq-z2 [TARGET_FPS=25]   FINN build up to HLS code + estimates (no Vivado needed)"
	@echo "make bitstream BOARD=pynq-z2            ... and on to the bitfile (needs Vivado: XILINX_VIVADO)"
	@echo "make packages   decoder packages of every shipped rate point -> build/decoders/qN (q3 ships in host/decoders)"
	@echo "make teachers   retrain the shipped default teachers (CPU recipe, ~1.5 h on 2 cores)"

setup: $(STAMP)

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

bitstream: setup
	$(LIC) hw $(HW_ARGS) --bitstream

packages: setup
	for q in 1 2 4; do $(LIC) export training/students/student_q$$q.pt -o build/decoders/q$$q || exit 1; done

teachers: setup
	training/recipes/default_teachers.sh

clean:
	rm -rf build .pytest_cache fpga_projects/*/build
