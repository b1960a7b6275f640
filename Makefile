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

.PHONY: demo test lint bench bench-embed bench-encoders sanitize fuzz clean install wheel wheel-smoke native-aarch64-compile test-aarch64 aarch64-golden

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

# ruff (pinned in requirements.txt; rules in pyproject.toml) before the tests: lint findings fail `make test`
lint: $(VENV)/.deps-stamp
	$(VENV)/bin/ruff check .

test: install lint test-aarch64
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory wheel-smoke

# ---- aarch64: the library compiles and links with the reference kernels alone (native/src/arch/generic/), with the
# sources build_native.py picks for that machine; compile only, nothing runs (no emulator). The cross-compiler comes
# from apt when missing. -Wl,-z,defs: a symbol that only an x86 file defines fails the link.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_OBJDUMP ?= aarch64-linux-gnu-objdump
AARCH64_DIR := build/aarch64
native-aarch64-compile: $(VENV)/.deps-stamp
	command -v $(AARCH64_CC) >/dev/null || { apt-get update -qq && apt-get install -y -qq gcc-aarch64-linux-gnu >/dev/null; }
	rm -rf $(AARCH64_DIR) && mkdir -p $(AARCH64_DIR)
	for f in $$($(PY) native/build_native.py --sources aarch64); do \
	  $(AARCH64_CC) -c -O2 -std=c11 -Wall -Werror -fPIC -pthread -Inative/include -Inative/src \
	    $$f -o $(AARCH64_DIR)/$$(echo $$f | tr / _ | sed 's/\.c$$/.o/') || exit 1; \
	done
	$(AARCH64_CC) -shared -pthread -Wl,-z,defs -o $(AARCH64_DIR)/libhf_fast.so $(AARCH64_DIR)/*.o -lm
	readelf -h $(AARCH64_DIR)/libhf_fast.so | grep -q 'AArch64' && ! readelf -Ws $(AARCH64_DIR)/libhf_fast.so | grep -qi 'avx'
	@echo "aarch64: $$(ls $(AARCH64_DIR)/*.o | wc -l) objects linked into $(AARCH64_DIR)/libhf_fast.so (reference kernels)"

# ---- aarch64 under emulation: the library (build/aarch64's objects, from native-aarch64-compile) and the C driver
# tests/aarch64/check_kernels.c, linked statically, run under qemu-aarch64 at three feature levels: -cpu max (i8mm,
# SVE2), neoverse-n1 (dot product, no i8mm) and cortex-a72 (neither: the NEON fallback; a dot product instruction
# there dies of SIGILL). Every ARM GEMM kernel is checked bit for bit against the reference, and each level must pick
# its own kernels. objdump shows the library holds the SDOT, USDOT and USMMLA kernels. tiny_engine runs a 2-layer
# engine plan against the x86 build's golden (u8 Linear outputs bit for bit, engine fp32 output within 1e-4). Correctness only: timings
# under qemu mean nothing. qemu-user comes from apt when missing. `make test` runs it: ~2 s past native-aarch64-compile.
AARCH64_CPUS := max:i8mm neoverse-n1:dotprod cortex-a72:neon
test-aarch64: native-aarch64-compile
	command -v qemu-aarch64 >/dev/null || { apt-get update -qq && apt-get install -y -qq qemu-user >/dev/null; }
	$(AARCH64_CC) -O2 -std=c11 -Wall -Werror -pthread -Inative/include -Inative/src tests/aarch64/check_kernels.c \
	  $(AARCH64_DIR)/*.o -static -lm -o $(AARCH64_DIR)/check_kernels
	$(AARCH64_CC) -O2 -std=c11 -Wall -Werror -pthread -Inative/include tests/aarch64/tiny_engine.c \
	  $(AARCH64_DIR)/*.o -static -lm -o $(AARCH64_DIR)/tiny_engine
	for f in sdot usdot usmmla; do \
	  $(AARCH64_OBJDUMP) -d $(AARCH64_DIR)/libhf_fast.so | grep -q "\s$$f\s" || { echo "no $$f in libhf_fast.so"; exit 1; }; \
	done
	for level in $(AARCH64_CPUS); do \
	  echo "== qemu-aarch64 -cpu $${level%%:*}"; \
	  timeout 300 qemu-aarch64 -cpu $${level%%:*} $(AARCH64_DIR)/check_kernels --expect $${level##*:} || exit 1; \
	  timeout 300 qemu-aarch64 -cpu $${level%%:*} $(AARCH64_DIR)/tiny_engine --check tests/aarch64/tiny_engine_golden.txt || exit 1; \
	done

# The golden of the tiny engine plan (tests/aarch64/tiny_engine.c), from the x86 build with the host compiler: rerun
# it only when the plan or the engine's arithmetic changes on purpose.
aarch64-golden:
	rm -rf build/x86-golden && mkdir -p build/x86-golden
	for f in $$($(PY) native/build_native.py --sources x86_64); do \
	  $(CC) -c -O2 -std=c11 -pthread -Inative/include -Inative/src $$f -o build/x86-golden/$$(echo $$f | tr / _ | sed 's/\.c$$/.o/') || exit 1; \
	done
	$(CC) -O2 -std=c11 -pthread -Inative/include tests/aarch64/tiny_engine.c build/x86-golden/*.o -lm -o build/x86-golden/tiny_engine
	build/x86-golden/tiny_engine --write tests/aarch64/tiny_engine_golden.txt

# ---- the package as users install it (README "Install")
# `python -m build`: sdist, then the wheel built from that sdist (isolated, as pip would); check_dist.py checks both
# file lists and retags the wheel to the manylinux policy `auditwheel show` finds (the engine links only glibc).
DIST := dist
PKG_SRC := $(shell find hf_fast -name '*.py' -o -name '*.tsv') $(NATIVE_SRC) MANIFEST.in README.md
$(DIST)/.stamp: $(VENV)/.deps-stamp $(PKG_SRC) tests/wheel_smoke/check_dist.py
	rm -rf $(DIST) && mkdir -p build
	$(PY) -m build -o $(DIST) . >build/wheel.log 2>&1 || (tail -30 build/wheel.log; exit 1)
	$(PY) tests/wheel_smoke/check_dist.py $(DIST)
	touch $@
wheel: $(DIST)/.stamp

# Two clean venvs outside the source tree's import path (made once, deps from pip's cache afterwards): train holds
# the wheel with its [train] extra, serve the wheel with its runtime dependencies only (no torch). Installs take
# binaries only (--only-binary :all:, CC=/bin/false) against the tested pins; the smoke scripts run from a temporary
# folder with PATH reduced to the venv's bin/ (no compiler), first exporting then serving without torch.
SMOKE := build/wheel-smoke
SMOKE_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CC=/bin/false CXX=/bin/false
$(SMOKE)/%/.venv-stamp: requirements.txt
	rm -rf $(SMOKE)/$* && $(PYTHON) -m venv $(SMOKE)/$*
	$(SMOKE)/$*/bin/pip install -q --upgrade pip
	if [ "$*" = train ]; then $(SMOKE)/$*/bin/pip install -q --only-binary :all: torch==2.13.0; fi
	touch $@
$(SMOKE)/%/.wheel-stamp: $(SMOKE)/%/.venv-stamp $(DIST)/.stamp
	whl=$$(ls $(DIST)/*.whl) && extra=$$([ "$*" = train ] && echo "[train]" || true) && \
	  $(SMOKE_ENV) $(SMOKE)/$*/bin/pip install -q --only-binary :all: -c requirements.txt "$$whl$$extra" && \
	  $(SMOKE_ENV) $(SMOKE)/$*/bin/pip install -q --only-binary :all: --no-deps --force-reinstall "$$whl"
	$(SMOKE)/$*/bin/pip check
	touch $@
.SECONDARY: $(SMOKE)/train/.venv-stamp $(SMOKE)/serve/.venv-stamp
wheel-smoke: $(SMOKE)/train/.wheel-stamp $(SMOKE)/serve/.wheel-stamp
	tmp=$$(mktemp -d) && cp tests/wheel_smoke/smoke_*.py $$tmp/ && cd $$tmp && \
	  env $(SMOKE_ENV) HF_FAST_CACHE_DIR=$$tmp/cache PATH=$(abspath $(SMOKE))/train/bin $(abspath $(SMOKE))/train/bin/python smoke_export.py art && \
	  env $(SMOKE_ENV) PATH=$(abspath $(SMOKE))/serve/bin $(abspath $(SMOKE))/serve/bin/python smoke_serve.py art && \
	  cd / && rm -rf $$tmp

# kernels, then the engine end to end vs ONNX Runtime (fp32, int8 dynamic/static), OpenVINO (when installed) and
# PyTorch on the same files, then text in -> output out on real rt-polarity / SQuAD texts (ragged batches)
BENCH_ARGS ?= --sparsity 0 0.5 0.7 0.8 0.9 --shapes 1x128 8x128 1x384 --threads 1 2
bench: install
	$(PY) benchmarks/bench_gemm.py
	$(PY) benchmarks/bench_engine.py $(BENCH_ARGS)
	$(PY) benchmarks/bench_text.py
	$(MAKE) --no-print-directory bench-embed
	$(MAKE) --no-print-directory bench-encoders

# sentence embeddings on real data (../shared/data): SQuAD v1.1 dev retrieval (recall@1/10, MRR), cosine to fp32, and
# sentences/s of the engine vs ONNX Runtime int8 (quantize_dynamic) vs OpenVINO, 1 and 2 threads, all through one
# length-sorted encode. Sparse students: EMBED_ARGS='--student 80=DIR'. OpenVINO comes from requirements.txt.
EMBED_ARGS ?=
bench-embed: install
	$(PY) benchmarks/bench_embed.py $(EMBED_ARGS)

# issue 21's encoders at base size, dense and 80% 4x1, 1 thread: ModernBERT (GeGLU fused in Wi's epilogue) and MPNet
# vs ONNX Runtime int8 (and OpenVINO) on the same weights at 1x128, 1x512, 8x128; ModernBERT at 1x2048 and its local
# layers' window attention vs the engine's global kernel. QUICK=1: 4 / 3 layers at 1x128 (a smoke run of every path).
ENCODERS_ARGS ?= $(if $(QUICK),--quick,)
bench-encoders: install
	$(PY) benchmarks/bench_encoders.py $(ENCODERS_ARGS)

# ASan + UBSan build of the same C sources into build/sanitize/ (hf_fast/_native*.so is left alone);
# hf_fast/native/_loader.py imports it when HF_FAST_NATIVE_DIR is set. libasan (and libstdc++, so its __cxa_throw
# interceptor resolves for torch/onnx C++ exceptions) is preloaded into python.
SAN_DIR := build/sanitize
SAN_ENV := HF_FAST_NATIVE_DIR=$(SAN_DIR)/lib LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libstdc++.so)" \
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
$(SAN_DIR)/.stamp: $(VENV)/.deps-stamp $(NATIVE_SRC)
	HF_FAST_SANITIZE=1 $(PY) setup.py -q build_ext --force --build-lib $(SAN_DIR)/lib --build-temp $(SAN_DIR)/tmp >/dev/null
	touch $@

sanitize: install $(SAN_DIR)/.stamp
	$(SAN_ENV) $(PY) -c "import sys, hf_fast.native; assert '$(SAN_DIR)' in sys.modules['hf_fast._native'].__file__"
	$(SAN_ENV) $(PY) -m pytest -q -p no:cacheprovider --capture=sys tests/test_native_*.py tests/test_runtime_engine.py tests/test_runtime_attention_q8.py \
		tests/test_fuzz_inputs.py tests/test_concurrency.py tests/test_pack_cache.py

# libFuzzer harness of the C ABI (native/fuzz/): clang -fsanitize=fuzzer when present, else gcc + a standalone
# driver; then the Python fuzzers with thousands of cases per property (HF_FAST_FUZZ=long)
FUZZ_SECONDS ?= 120
FUZZ_SRC = native/fuzz/fuzz_engine.c $(shell $(PY) native/build_native.py --sources)  # this machine's, after install
FUZZ_CFLAGS := -O1 -g -std=c11 -pthread -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Inative/include -Inative/src
build/fuzz/fuzz_engine: $(NATIVE_SRC) native/fuzz/fuzz_engine.c native/fuzz/standalone_main.c
	mkdir -p build/fuzz
	if command -v clang >/dev/null; then clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined $(FUZZ_SRC) -lm -o $@; \
	else gcc $(FUZZ_CFLAGS) -fsanitize=address,undefined $(FUZZ_SRC) native/fuzz/standalone_main.c -lm -o $@; fi

fuzz: install build/fuzz/fuzz_engine
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 build/fuzz/fuzz_engine -max_total_time=$(FUZZ_SECONDS) native/fuzz/corpus
	HF_FAST_FUZZ=long $(PY) -m pytest -q -p no:cacheprovider -s tests/test_fuzz_artifact.py tests/test_fuzz_inputs.py

clean:
	rm -rf $(VENV) build dist *.egg-info hf_fast/_native*.so hf_fast/_native.c .pytest_cache .ruff_cache demo_out benchmarks/out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
