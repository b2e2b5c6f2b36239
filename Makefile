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

SEED ?= 1
COUNT ?= 20000
FUZZ_DIR := build/fuzz
ASAN_DIR := build/asan
EXT_SUFFIX = $$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

.PHONY: setup test test-slow demo teachers eval hw bitstream clean help fuzz asan

help:
	@echo "make setup      create .venv with every pinned dependency (idempotent)"
	@echo "make test       run the test suite (CI runs this)"
	@echo "make test-slow  run the slow checks too (full Kodak evaluation)"
	@echo "make demo       Kodak: encode (teacher), decode (teacher and quantised student), FPGA estimates -> build/demo/"
	@echo "make eval       teacher RD curve and classical baselines on Kodak -> build/eval/"
	@echo "make hw BOARD=pynq-z2 [TARGET_FPS=25]   FINN build up to HLS code + estimates (no Vivado needed)"
	@echo "make bitstream BOARD=pynq-z2            ... and on to the bitfile (needs Vivado: XILINX_VIVADO)"
	@echo "make fuzz SEED=1 COUNT=20000        coverage-guided fuzzing (Atheris) of the .lic parser and entropy decoding"
	@echo "make asan       CompressAI's rANS coder under ASan/UBSan over the fuzz corpus"
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

# Coverage-guided fuzzing, COUNT inputs per target (tests/fuzz_atheris.py); findings: crash-* files.
fuzz: setup
	mkdir -p $(FUZZ_DIR)/findings
	$(PY) tests/fuzz_atheris.py --target runtime -seed=$(SEED) -runs=$(COUNT) -artifact_prefix=$(FUZZ_DIR)/findings/ $(FUZZ_DIR)/corpus/runtime
	$(PY) tests/fuzz_atheris.py --target rans -seed=$(SEED) -runs=$(COUNT) -max_len=65536 -len_control=0 -artifact_prefix=$(FUZZ_DIR)/findings/ $(FUZZ_DIR)/corpus/rans

# CompressAI's rANS extension rebuilt from its sdist with ASan + UBSan, run over the fuzz corpus plus
# COUNT structure-aware mutations (tests/asan_rans.py); reports are counted per path (raw / checked).
asan: setup
	mkdir -p $(ASAN_DIR)/log $(FUZZ_DIR)/corpus/runtime
	test -f $(ASAN_DIR)/compressai-1.2.8.tar.gz || $(PY) -m pip download -q --no-deps --no-binary :all: \
	  --no-build-isolation compressai==1.2.8 -d $(ASAN_DIR)
	tar xzf $(ASAN_DIR)/compressai-1.2.8.tar.gz -C $(ASAN_DIR)
	g++ -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fsanitize-recover=all -DNDEBUG -shared -fPIC \
	  -I $(ASAN_DIR)/compressai-1.2.8/third_party/ryg_rans -I $$($(PY) -c 'import pybind11; print(pybind11.get_include())') \
	  -I $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
	  $(ASAN_DIR)/compressai-1.2.8/compressai/cpp_exts/rans/rans_interface.cpp -o $(ASAN_DIR)/ans$(EXT_SUFFIX)
	for way in raw checked; do rm -f $(ASAN_DIR)/log/$$way.*; \
	  LIC_ASAN_WAY=$$way LD_PRELOAD=$$(g++ -print-file-name=libasan.so):$$(g++ -print-file-name=libubsan.so) \
	  ASAN_OPTIONS=detect_leaks=0:halt_on_error=0:log_path=$(ASAN_DIR)/log/$$way UBSAN_OPTIONS=log_path=$(ASAN_DIR)/log/$$way \
	  PYTHONPATH=$(CURDIR) $(PY) tests/asan_rans.py $(ASAN_DIR)/ans$(EXT_SUFFIX) $(FUZZ_DIR)/corpus/runtime --mutations $(COUNT) \
	  2> >(tee $(ASAN_DIR)/log/$$way.stderr >&2); \
	  echo "$$way: $$(cat $(ASAN_DIR)/log/$$way.* 2>/dev/null | grep -c 'ERROR: AddressSanitizer') ASan reports," \
	    "$$(cat $(ASAN_DIR)/log/$$way.* 2>/dev/null | grep -c 'runtime error:') UBSan reports," \
	    "ASan reports in $$(grep -l 'ERROR: AddressSanitizer' $(ASAN_DIR)/log/$$way.[0-9]* 2>/dev/null | wc -l) processes"; done

teachers: setup
	training/recipes/default_teachers.sh

clean:
	rm -rf build .pytest_cache fpga_projects/*/build
