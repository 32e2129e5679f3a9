#!/usr/bin/env bash
# Stop the vLLM server that scripts/served/start.sh PORT started (its whole process group). Idempotent.
#   scripts/served/stop.sh PORT
# Env: SERVED_DIR (default <repo>/runs/served), SERVED_STOP_TIMEOUT (seconds before SIGKILL, default 30).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PORT="${1:?usage: $0 PORT}"
SERVED_DIR="${SERVED_DIR:-$ROOT/runs/served}"
PIDFILE="$SERVED_DIR/vllm-$PORT.pid"
WAIT="${SERVED_STOP_TIMEOUT:-30}"
say() { echo "[served:stop] $*"; }

if [ ! -f "$PIDFILE" ]; then
    say "no pid file $PIDFILE; nothing to stop on port $PORT"
    exit 0
fi
PID="$(cat "$PIDFILE")"
if ! kill -0 "$PID" 2>/dev/null; then
    say "pid $PID (port $PORT) is not running; removing the stale pid file"
    rm -f "$PIDFILE"
    exit 0
fi
# start.sh runs the server under setsid, so its pid is its process-group id.
PGID="$(ps -o pgid= -p "$PID" 2>/dev/null | tr -d ' ')"
if [ "$PGID" = "$PID" ]; then TARGET="-$PID"; else TARGET="$PID"; fi
say "stopping the server on port $PORT (pid $PID, signal to ${TARGET#-} $([ "$TARGET" = "-$PID" ] && echo "process group"))"
kill -TERM -- "$TARGET" 2>/dev/null || true
for _ in $(seq 1 "$WAIT"); do
    kill -0 -- "$TARGET" 2>/dev/null || { say "stopped"; rm -f "$PIDFILE"; exit 0; }
    sleep 1
done
say "still alive after ${WAIT}s; sending SIGKILL"
kill -KILL -- "$TARGET" 2>/dev/null || true
sleep 1
rm -f "$PIDFILE"
say "killed"
