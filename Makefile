# One entry point for set-up, the pilot pipeline, the tests and the MLflow UI.
# `make pilot` and `make test` install everything they need on a fresh machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(CURDIR)/$(VENV)/bin
# Every package, CPU torch included, is pinned with its hashes in LOCK (`make lock` regenerates it), so a fresh
# machine installs the versions the tests passed with. A GPU user names a CUDA build of torch; it is installed first
# and every other package from the lock (docs/SCALING.md):
#   make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
LOCK   ?= requirements.lock
TORCH  ?=
TORCH_LINKS ?= https://download.pytorch.org/whl/cpu/torch/
PIP    := pip==26.3
STAMP  := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lock java chromium pilot lint test test-fast test-all bench plan server gpu-check ui clean

setup: $(STAMP) java

# Re-runs only when the lock, pyproject.toml or the requested torch changes. The lock is complete, so its packages
# install with --no-deps (no resolution) and the project itself with --no-deps from the lock's setuptools.
$(STAMP): $(LOCK) pyproject.toml $(VENV)/.torch-spec
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP)
# torch first: the lock's CPU build from TORCH_LINKS (asked only for torch: pip reads a --find-links page again for
# every package), or the build TORCH names; then every other package of the lock.
ifeq ($(strip $(TORCH)),)
	awk '/^[^ #-]/ { keep = ($$1 ~ /^torch==/) } keep' $(LOCK) > $(VENV)/.lock-torch.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes --find-links $(TORCH_LINKS) -r $(VENV)/.lock-torch.txt
else
	$(BIN)/python -m pip install --quiet $(TORCH)
endif
	awk '/^[^ #-]/ { skip = ($$1 ~ /^torch==/) } !skip' $(LOCK) > $(VENV)/.lock-without-torch.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r $(VENV)/.lock-without-torch.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	@touch $@

# Rewritten only when TORCH differs from the last install, so it triggers a reinstall then.
$(VENV)/.torch-spec: FORCE
	@mkdir -p $(VENV)
	@echo "$(TORCH)" | cmp -s - $@ || echo "$(TORCH)" > $@

# Regenerates LOCK from pyproject.toml with uv (installed into .lock-tools/), keeping the pins pyproject still allows:
# `make lock` after editing pyproject.toml, `make lock LOCK_ARGS=--upgrade` (or `--upgrade-package trl`) to move.
# The lock is for CPython 3.11 on Linux x86_64; its torch is the CPU build from TORCH_LINKS (PyPI's is the CUDA
# build). Where that page is out of reach, LOCK_FIND_LINKS names a folder holding the same torch wheel.
UV              := uv==0.13.8
LOCK_FIND_LINKS ?= $(TORCH_LINKS)
LOCK_ARGS       ?=
lock:
	@test -x .lock-tools/bin/uv || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/python -m pip install --quiet $(UV); }
	.lock-tools/bin/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --find-links $(LOCK_FIND_LINKS) --custom-compile-command "make lock" \
	  --no-emit-find-links $(LOCK_ARGS) -o $(LOCK)

# pyserini 0.21 (the shop's BM25 search) needs a Java runtime, 17 or newer (verified with OpenJDK 17).
JAVA_MIN := 17
java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -n "$$v" ] && [ "$$v" -ge $(JAVA_MIN) ]; then exit 0; fi; \
	echo "Java $(JAVA_MIN)+ not found (found: $${v:-none}); installing openjdk-17-jre-headless"; \
	if command -v apt-get >/dev/null 2>&1 && { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }; then exit 0; fi; \
	echo "Could not install Java. The shop environment (env.name: shop) needs a Java $(JAVA_MIN)+ runtime for pyserini:"; \
	echo "  Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless;  conda: conda install -c conda-forge openjdk=17"; \
	echo "then re-run make. (BabyAI runs without Java.)"; exit 1

# The pilot: every stage on the embedded defaults (offline student, oracle teacher, CPU). check-lock first: a dvc.lock
# cut short but still valid YAML would make dvc repro silently run again the stages it lost.
pilot: setup
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "make pilot runs in a git clone (DVC needs git)"; exit 1; }
	@$(BIN)/python -m teachable check-lock
	$(BIN)/dvc repro

# The report page test opens reports/index.html in headless Chromium; without it that test is skipped, not failed.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "Chromium not found: installing Debian's chromium (for tests/test_report_page.py)"; \
	  { apt-get update -qq && apt-get install -y -qq chromium; } || \
	  echo "Could not install chromium (needs root); tests/test_report_page.py will be skipped."; }

# The tests run on TEST_WORKERS processes (pytest-xdist; TEST_WORKERS=0: one process, no xdist), a test file on one
# process so that its module fixtures are built once; the end-to-end test goes first (tests/conftest.py).
# make test:      unit tests + the BabyAI pilot's tiny end-to-end `dvc repro` (marked slow); aimed at 15 min on 2 cores
# make test-fast: the quick unit tests only, no `dvc repro` and none marked heavy (models, stages, simulations)
# make test-all:  make test + the shop's and retail's end-to-end `dvc repro` (marked domains)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# ruff's lint and format check at line length 100 (pyproject.toml); `ruff format` and `ruff check --fix` repair.
LINT_PATHS := teachable stages tests benchmarks scripts
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

test: setup chromium lint
	$(PYTEST) -m "not domains"

test-fast: setup lint
	$(PYTEST) -m "not slow and not heavy"

test-all: setup chromium lint
	$(PYTEST)

bench: setup
	$(BIN)/python benchmarks/rollouts.py

# What the params cost per stage (episodes, calls, tokens, steps, teacher dollars, hours) and whether the gates are
# decidable; nothing runs. E.g. make plan PLAN_ARGS="--preset seeds --device h100 --backend sglang"
PLAN_ARGS ?=
plan: setup
	$(BIN)/python -m teachable plan $(PLAN_ARGS)

# The student behind SGLang or vLLM, from the engine's own venv (.venv-sglang / .venv-vllm: each engine pins its own
# torch and transformers); waits for it and prints the student.* params to use. LoRA rank and target modules from
# params.yaml's train section unless given. DRY_RUN=1 prints the commands only. See scripts/serve.sh.
#   make server ENGINE=sglang MODEL=models/Qwen3-8B [PORT=30000] [LORA_RANK=8] [MEM=0.85] [GPUS=0] [DRY_RUN=1]
ENGINE ?= sglang
MODEL  ?=
server:
	@bash scripts/serve.sh --engine "$(ENGINE)" --model "$(MODEL)" $(if $(PORT),--port $(PORT)) \
	  $(if $(LORA_RANK),--rank $(LORA_RANK)) $(if $(MEM),--mem $(MEM)) $(if $(GPUS),--gpus $(GPUS)) \
	  $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

# One GPU check (under 8 minutes on one H100): benchmarks/gpu.py's scoring and LoRA MFU, the hf backend against a
# running engine (GPU_CHECK_ARGS="--engine sglang --url http://127.0.0.1:30000 --model models/Qwen3-8B"), a bf16
# FSDP2 + LoRA step on the GPUs present; writes benchmarks/gpu_check.json for `teachable plan --calibrate`.
# GPU_CHECK_ARGS=--tiny runs it all on the CPU (a tiny model, float32, gloo).
GPU_CHECK_ARGS ?=
gpu-check: setup
	bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

ui: setup
	$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --port 5000

clean:
	rm -rf $(VENV) .lock-tools mlflow.db mlflow.db.lock mlruns .pytest_cache

FORCE:
