#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): gpu.py's scoring and LoRA MFU, the hf backend against a running engine,
# a bf16 FSDP2 + LoRA step on the GPUs present; one JSON for `python -m teachable plan --calibrate`. Under 8 minutes
# on one H100. Nothing is downloaded: the models are built from configs; the engine comparison needs an engine
# already running and the served model on disk.
#
#   benchmarks/gpu_check.sh [--out benchmarks/gpu_check.json] [--engine sglang --url URL --model PATH]
#   benchmarks/gpu_check.sh --tiny          # the same on the CPU (tiny model, float32, gloo; no engine)
#   then: python -m teachable plan --calibrate benchmarks/gpu_check.json
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
