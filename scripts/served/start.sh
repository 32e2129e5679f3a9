#!/usr/bin/env bash
# Start a vLLM OpenAI-compatible server for the embedded SmolLM2 on 127.0.0.1:PORT, in the background.
#   scripts/served/start.sh PORT [extra vllm args...]
# Served model name: smollm2 (override with SERVED_MODEL_NAME). Default server args:
#   --max-model-len 2048 --dtype $SERVED_DTYPE --max-logprobs 50 --block-size 32   (extra args come later and override
# these). --block-size 32: the CPU build's default of 128 tokens per cache block is longer than SmolLM2's judge and chat
# prompts, so its prefix cache never hit (0% over a whole bench); 32 is the smallest the CPU attention takes.
# SERVED_DTYPE defaults to float32: with bfloat16 the served log-probs differ from the local float32 model by
# up to ~0.14 nats and greedy text diverges within a few tokens (see API-FACTS.md); float32 matches to ~2e-5.
# Env: VLLM_VENV (default <repo>/.venv-vllm), RAIN_VENV (project venv, default <repo>/.venv),
#      SERVED_DIR (pid/log dir, default <repo>/runs/served), SERVED_START_TIMEOUT (seconds, default 900),
#      SERVED_DTYPE (default float32), VLLM_CPU_KVCACHE_SPACE (GiB, default 2), VLLM_CPU_OMP_THREADS_BIND (default nobind), SERVED_MODEL_DIR
#      (skip resolving the converted SmolLM2 folder).
# Writes $SERVED_DIR/vllm-PORT.pid and $SERVED_DIR/vllm-PORT.log. Exits 0 once /health and /v1/models answer;
# non-zero (with the log tail) if the server dies or does not come up in time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PORT="${1:?usage: $0 PORT [extra vllm args...]}"
shift
VLLM_VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
RAIN_VENV="${RAIN_VENV:-$ROOT/.venv}"
SERVED_DIR="${SERVED_DIR:-$ROOT/runs/served}"
TIMEOUT="${SERVED_START_TIMEOUT:-900}"
NAME="${SERVED_MODEL_NAME:-smollm2}"
DTYPE="${SERVED_DTYPE:-float32}"
PIDFILE="$SERVED_DIR/vllm-$PORT.pid"
LOG="$SERVED_DIR/vllm-$PORT.log"
BASE="http://127.0.0.1:$PORT"
say() { echo "[served:start] $*"; }

mkdir -p "$SERVED_DIR"

http_ok() {  # http_ok URL -> 0 when it answers 200
    "$VLLM_VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "a server started by this script already runs on port $PORT (pid $(cat "$PIDFILE")); stop it first: scripts/served/stop.sh $PORT" >&2
    exit 1
fi
if http_ok "$BASE/health"; then
    say "something already answers on $BASE/health; refusing to start a second server on port $PORT" >&2
    exit 1
fi

[ -x "$VLLM_VENV/bin/python" ] || { say "no vLLM venv at $VLLM_VENV; run scripts/served/install-vllm.sh" >&2; exit 1; }
if [ -z "${SERVED_MODEL_DIR:-}" ]; then
    [ -x "$RAIN_VENV/bin/python" ] || { say "no project venv at $RAIN_VENV; run 'make install'" >&2; exit 1; }
    say "resolving the converted SmolLM2 folder with $RAIN_VENV (first time converts the GGUF, ~30 s)"
    SERVED_MODEL_DIR="$("$RAIN_VENV/bin/python" -c "from rain_core.models import resolve_spec; print(resolve_spec('smollm2')[0])" 2>/dev/null | tail -n 1)"
fi
if [ ! -f "$SERVED_MODEL_DIR/config.json" ] || [ ! -f "$SERVED_MODEL_DIR/tokenizer.json" ]; then
    say "model folder '$SERVED_MODEL_DIR' lacks config.json/tokenizer.json" >&2
    exit 1
fi
say "model folder: $SERVED_MODEL_DIR"

export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
CMD=("$VLLM_VENV/bin/python" -m vllm.entrypoints.openai.api_server
     --model "$SERVED_MODEL_DIR" --served-model-name "$NAME"
     --host 127.0.0.1 --port "$PORT"
     --max-model-len 2048 --dtype "$DTYPE" --max-logprobs 50 --block-size 32 "$@")
say "starting: VLLM_CPU_KVCACHE_SPACE=$VLLM_CPU_KVCACHE_SPACE VLLM_CPU_OMP_THREADS_BIND=$VLLM_CPU_OMP_THREADS_BIND ${CMD[*]}"
say "log: $LOG   pid file: $PIDFILE"
: > "$LOG"
# setsid: the server gets its own process group, so stop.sh can kill it with its workers.
setsid nohup "${CMD[@]}" >>"$LOG" 2>&1 </dev/null &
PID=$!
echo "$PID" > "$PIDFILE"
say "pid $PID; waiting up to ${TIMEOUT}s for $BASE/health and $BASE/v1/models (start-up takes minutes on a busy CPU)"

start=$(date +%s)
next_note=$((start + 30))
while :; do
    now=$(date +%s)
    if ! kill -0 "$PID" 2>/dev/null; then
        say "ERROR: the server (pid $PID) exited during start-up after $((now - start))s; log tail:" >&2
        tail -n 40 "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
    fi
    if http_ok "$BASE/health" && http_ok "$BASE/v1/models"; then
        say "ready after $((now - start))s: $BASE/v1 (model '$NAME')"
        exit 0
    fi
    if [ $((now - start)) -ge "$TIMEOUT" ]; then
        say "ERROR: not ready after ${TIMEOUT}s; stopping it. Log tail:" >&2
        tail -n 40 "$LOG" >&2
        "$ROOT/scripts/served/stop.sh" "$PORT" >&2 || true
        exit 1
    fi
    if [ "$now" -ge "$next_note" ]; then
        say "still starting ($((now - start))s): $(tail -n 1 "$LOG" | cut -c1-160)"
        next_note=$((now + 30))
    fi
    sleep 3
done
