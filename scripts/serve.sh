#!/usr/bin/env bash
# Serve the student with SGLang or vLLM from the engine's own virtual environment, wait until it answers, and print
# the params that point the pipeline at it (student.backend, student.url, student.base_model).
#
#   scripts/serve.sh --engine sglang|vllm --model PATH [--port P] [--host H] [--rank R] [--mem F] [--max-loras N]
#                    [--gpus 0,1] [--timeout S] [--foreground] [--dry-run]
#   make server ENGINE=sglang MODEL=models/Qwen3-8B [PORT=...] [LORA_RANK=...] [MEM=...] [GPUS=...] [DRY_RUN=1]
#
# Why its own venv (.venv-sglang / .venv-vllm): each engine release pins its own torch and transformers (a vLLM
# release pins transformers<5; this project needs >=5.24), so they cannot share the project's .venv. The engine
# only serves; the pipeline talks to it over HTTP from the project's venv (teachable/policy/server.py).
#
# Flags (names checked against the engines' source: SGLang python/sglang/srt/server_args.py, vLLM
# vllm/engine/arg_utils.py and vllm/config/lora.py):
#   both    --dtype bfloat16, LoRA on (adapters are loaded at run time by name: /load_lora_adapter), the max rank
#           covering train.lora_r (params.yaml, or --rank)
#   sglang  --mem-fraction-static F (weights + KV cache pool), --lora-target-modules = train.target_modules,
#           --max-loras-per-batch N; prefix caching is SGLang's radix cache, on by default (not disabled here)
#   vllm    --gpu-memory-utilization F (all of the instance's memory), --max-loras N, --max-lora-rank rounded up to
#           the ranks vLLM accepts (1 8 16 32 64 128 256 320 512), --enable-prefix-caching (prompt log-probs bypass
#           it, so it helps generate mode only), VLLM_ALLOW_RUNTIME_LORA_UPDATING=True for /v1/load_lora_adapter
# --mem: the GPU memory fraction the engine takes. 0.85 when it has the GPU to itself; when training runs
# in-process on the same GPU (micro-runs, the matrix's training stages), leave it room (docs/SCALING.md).
#
# --dry-run prints the commands (venv, install, launch, wait) and the params, and runs nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE="" MODEL="" PORT="" HOST="127.0.0.1" RANK="" MEM="0.85" MAX_LORAS="4" GPUS="" TIMEOUT="900"
FOREGROUND=0 DRY_RUN="${DRY_RUN:-0}"
PYTHON="${PYTHON:-python3}"                      # creates the engine's venv
SGLANG_SPEC="${SGLANG_SPEC:-sglang}"             # what pip installs into .venv-sglang (pin a version here)
VLLM_SPEC="${VLLM_SPEC:-vllm}"                   # what pip installs into .venv-vllm

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    --rank) RANK="$2"; shift 2 ;;
    --mem) MEM="$2"; shift 2 ;;
    --max-loras) MAX_LORAS="$2"; shift 2 ;;
    --gpus) GPUS="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --foreground) FOREGROUND=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "serve.sh: unknown argument $1" >&2; usage ;;
  esac
done
case "$ENGINE" in sglang|vllm) ;; *) echo "serve.sh: --engine sglang or vllm (got '${ENGINE}')" >&2; exit 2 ;; esac
[ -n "$MODEL" ] || { echo "serve.sh: --model PATH (the local copy the pipeline's student.base_model names)" >&2; exit 2; }
case "$DRY_RUN" in 0|"") DRY_RUN=0 ;; *) DRY_RUN=1 ;; esac

# The LoRA recipe: train.lora_r and train.target_modules from params.yaml, read with the project's own parser.
TARGETS=""
PROJECT_PY="$ROOT/.venv/bin/python"
if [ -x "$PROJECT_PY" ] && [ -f "$ROOT/params.yaml" ]; then
  read -r PARAM_RANK TARGETS < <(cd "$ROOT" && PYTHONPATH="$ROOT" "$PROJECT_PY" -c \
    "from teachable.core.params import load_params; t = load_params('params.yaml').train; \
print(t.lora_r, ' '.join(t.target_modules))") || true
  RANK="${RANK:-${PARAM_RANK:-}}"
fi
[ -n "$RANK" ] || { echo "serve.sh: no LoRA rank: pass --rank (or LORA_RANK=) or keep params.yaml and .venv" >&2; exit 2; }
case "$RANK" in ''|*[!0-9]*) echo "serve.sh: --rank must be a whole number (got $RANK)" >&2; exit 2 ;; esac
TARGETS="${TARGET_MODULES:-${TARGETS:-all}}"

VENV="$ROOT/.venv-$ENGINE"
if [ "$ENGINE" = sglang ]; then
  PORT="${PORT:-30000}" SPEC="$SGLANG_SPEC"
  # shellcheck disable=SC2206
  LAUNCH=("$VENV/bin/python" -m sglang.launch_server --model-path "$MODEL" --host "$HOST" --port "$PORT"
          --dtype bfloat16 --mem-fraction-static "$MEM" --enable-lora --max-lora-rank "$RANK"
          --lora-target-modules $TARGETS --max-loras-per-batch "$MAX_LORAS")
  ENVS=()
else
  PORT="${PORT:-8000}" SPEC="$VLLM_SPEC"
  VLLM_RANK=""
  for r in 1 8 16 32 64 128 256 320 512; do
    if [ "$r" -ge "$RANK" ]; then VLLM_RANK="$r"; break; fi
  done
  [ -n "$VLLM_RANK" ] || { echo "serve.sh: vLLM serves LoRA ranks up to 512 (train.lora_r is $RANK)" >&2; exit 2; }
  LAUNCH=("$VENV/bin/vllm" serve "$MODEL" --host "$HOST" --port "$PORT" --dtype bfloat16
          --gpu-memory-utilization "$MEM" --enable-prefix-caching --enable-lora --max-lora-rank "$VLLM_RANK"
          --max-loras "$MAX_LORAS")
  ENVS=(VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)
fi
[ -z "$GPUS" ] || ENVS+=("CUDA_VISIBLE_DEVICES=$GPUS")
URL="http://$HOST:$PORT"
LOG="$ROOT/.scratch/server-$ENGINE-$PORT.log"
PIDFILE="$ROOT/.scratch/server-$ENGINE-$PORT.pid"

quoted() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }
params() {
  echo "student.backend: $ENGINE"
  echo "student.url: $URL"
  echo "student.base_model: $MODEL"
  echo "  e.g. dvc exp run -S student.backend=$ENGINE -S student.url=$URL -S student.base_model=$MODEL"
}

if [ "$DRY_RUN" = 1 ]; then
  echo "# dry run: nothing is installed or started"
  echo "venv: test -x $VENV/bin/python || $PYTHON -m venv $VENV"
  echo "install: $VENV/bin/python -m pip install $SPEC"
  echo "launch: $(quoted env "${ENVS[@]}" "${LAUNCH[@]}") > $LOG 2>&1 &"
  echo "wait: GET $URL/health until 200 (at most ${TIMEOUT} s)"
  params
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV (the engine's own environment)"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import $ENGINE" 2>/dev/null; then
  echo "installing $SPEC into $VENV (its own torch and transformers; this takes minutes)"
  "$VENV/bin/python" -m pip install --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install "$SPEC"
fi
mkdir -p "$ROOT/.scratch"
echo "starting: $(quoted env "${ENVS[@]}" "${LAUNCH[@]}")"
env "${ENVS[@]}" "${LAUNCH[@]}" >"$LOG" 2>&1 &
PID=$!
echo "$PID" >"$PIDFILE"
echo "log: $LOG; pid $PID (stop it: kill \$(cat $PIDFILE))"
deadline=$(( $(date +%s) + TIMEOUT ))
until curl -sf -o /dev/null "$URL/health"; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "serve.sh: $ENGINE exited before answering; the end of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "serve.sh: $URL/health did not answer within ${TIMEOUT} s (still starting? see $LOG); pid $PID left running" >&2
    exit 1
  fi
  sleep 5
done
echo "$ENGINE answers at $URL. Put in params.yaml (or pass with -S):"
params
if [ "$FOREGROUND" = 1 ]; then
  wait "$PID"
fi
