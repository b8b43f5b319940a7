#!/usr/bin/env bash
# Sets up .venv with edgekit and every stack its demo and tests use, on a fresh machine.
# Order matters: torch first from the pinned CPU wheel (never a bare `torch`: that pulls CUDA),
# then the extras under constraints.txt, then onnx2tf + tf-keras WITHOUT their deps (--no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDGEKIT_VENV:-.venv}
scripts/install-system.sh
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
C="-c constraints.txt"
stamp="$VENV/.edgekit-install-$(cat constraints.txt scripts/install.sh pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing edgekit and its stacks into $VENV (a few minutes on a fresh machine)..."
  pip install -U "pip>=24" wheel
  pip install $C torch==2.13.0
  pip install $C hatchling editables
  # every backend's plain dependencies (pyproject: dev = all + pytest)
  pip install $C --no-build-isolation -e ".[dev]"
  # what pyproject cannot declare (the same step as `edgekit setup tflite`): onnx2tf, and tf-keras (which would
  # pull the full `tensorflow` wheel over tensorflow-cpu), without their dependencies
  pip install $C --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
  pip install $C ray==2.60.0   # sweeps on a Ray cluster (--workers ray); not an extra
  "$VENV/bin/python" -c "import torch, onnxruntime, tensorflow, ai_edge_litert, onnx2tf, tf_keras, litert_torch, mlflow; assert torch.__version__.startswith('2.13.0')" \
    || { echo "install check failed" >&2; exit 1; }
  rm -f "$VENV"/.edgekit-install-*
  touch "$stamp"
else
  pip install $C --no-deps --no-build-isolation -e .
fi
echo "edgekit environment ready: $VENV"
