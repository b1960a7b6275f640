# hf-fast: every target does its own set-up on a fresh machine; re-running reinstalls nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
NATIVE_SRC := $(shell find native -name '*.c' -o -name '*.h' -o -name '*.py') setup.py setup.cfg pyproject.toml
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench sanitize fuzz clean install

install: $(VENV)/.native-stamp

# torch first, alone: the CPU build on local disk (a bare `torch` would pull a CUDA build)
$(VENV)/.deps-stamp: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	touch $@

# editable install; cffi compiles native/ into hf_fast/_native*.so
$(VENV)/.native-stamp: $(VENV)/.deps-stamp $(NATIVE_SRC)
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

demo: install
	$(PY) -m hf_fast.demo

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/bench_gemm.py

clean:
	rm -rf $(VENV) build dist *.egg-info hf_fast/_native*.so hf_fast/_native.c .pytest_cache demo_out benchmarks/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
