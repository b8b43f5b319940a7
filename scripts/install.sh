#!/usr/bin/env bash
# Sets up .venv with edgekit and every stack its demo and tests use, on a fresh machine.
# Order matters: torch first from the pinned CPU wheel (never a bare `torch`: that pulls CUDA),
# then the extras under constraints.txt, then onnx2tf + tf-keras WITHOUT their deps (--no-deps).
# pip's own output goes to $VENV/install.log (shown on failure); the user sees one line per stage.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EDGEKIT_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
LOG="$VENV/install.log"
pip() {
  if ! "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >>"$LOG" 2>&1; then
    echo "install failed at: pip install $*" >&2
    echo "last lines of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    exit 1
  fi
}
step() { echo "  - $*"; }
C="-c constraints.txt"
stamp="$VENV/.edgekit-install-$(cat constraints.txt scripts/install.sh pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing edgekit and its stacks into $VENV (a few minutes on a fresh machine; pip's log: $LOG)"
  : >"$LOG"
  step "pip"
  pip install -U "pip>=24" wheel
  step "torch 2.13.0 (CPU build)"
  pip install $C torch==2.13.0
  pip install $C hatchling editables
  # every backend's plain dependencies (pyproject: dev = all + pytest)
  step "edgekit and every backend's dependencies (ONNX, TensorFlow, LiteRT, litert-torch, MLflow, ...)"
  pip install $C --no-build-isolation -e ".[dev]"
  # what pyproject cannot declare (the same step as `edgekit setup tflite`): onnx2tf, and tf-keras (which would
  # pull the full `tensorflow` wheel over tensorflow-cpu), without their dependencies
  # (pip then reports onnx2tf's stale pins as "dependency conflicts": expected, and harmless at run time)
  step "onnx2tf and tf-keras without their stale pins (what 'edgekit setup tflite' does)"
  pip install $C --no-deps onnx2tf==1.29.24 tf-keras==2.21.0
  step "onnx2torch without its torchvision requirement (what 'edgekit setup torch' does)"
  pip install $C --no-deps onnx2torch==1.5.15   # the registry's torchvision does not import beside a CPU torch
  step "ray (sweeps on a Ray cluster)"
  pip install $C ray==2.60.0   # sweeps on a Ray cluster (--workers ray); not an extra
  # the test corpus of third-party ONNX models (tests/corpus): only the .onnx files inside these wheels
  # are used, never their Python code, so none of their dependencies is installed (--no-deps)
  step "the test corpus's model packages (their .onnx files only)"
  pip install $C --no-deps silero-vad==6.2.3 rapidocr-onnxruntime==1.4.4 nudenet==3.4.2 magika==1.0.3
  # Apache TVM beside litert-torch: apache-tvm-ffi needs typing_extensions>=4.13, xdsl (litert-torch) pins <4.13,
  # both run with 4.13.2; so TVM goes in without dependencies after its plain ones (what 'edgekit setup tvm' does)
  step "Apache TVM 0.27 (what 'edgekit setup tvm' does)"
  pip install $C ml_dtypes tornado psutil cloudpickle xgboost-cpu
  pip install $C --no-deps apache-tvm==0.27.0.post1 apache-tvm-ffi==0.1.14.post1 typing_extensions==4.13.2
  # tensorflowjs's own pins (tensorflow_decision_forests) would move TensorFlow and protobuf: --no-deps; the
  # Node.js runner's npm packages (pinned) go into edgekit's cache; Node.js from Debian if missing
  step "tensorflowjs without its pins, Node.js and the TF.js runner's npm packages (what 'edgekit setup tfjs' does)"
  pip install $C --no-deps tensorflowjs==4.22.0
  "$VENV/bin/edgekit" setup tfjs >>"$LOG" 2>&1 \
    || { echo "install failed at: edgekit setup tfjs (see $LOG)" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  # executorch's declared dependencies pull an sdist-only antlr4 (hydra-core), coremltools and test tools with
  # pytest plugins, none of which it imports: its plain ones come with [dev] ([executorch]), itself --no-deps
  step "ExecuTorch 1.5 without its unused dependencies (what 'edgekit setup executorch' does)"
  pip install $C --no-deps executorch==1.5.1
  # coremltools 9 beside torch 2.13: its plain dependencies come with [dev] ([coreml]); itself, cattrs and pyaml
  # --no-deps (cattrs 26 would move typing_extensions, which litert-torch's xdsl and TVM's FFI share at 4.13.2)
  step "coremltools 9 without its dependencies (what 'edgekit setup coreml' does)"
  pip install $C --no-deps coremltools==9.0 cattrs==26.2.1 pyaml==26.7.0
  # (its C library, libc6-dev-arm64-cross, only comes as a recommendation: without it ld finds no crti.o)
  if { ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/crti.o ]; } \
      && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    step "the aarch64 cross compiler (tvm-arm64 links with it)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc-aarch64-linux-gnu \
      libc6-dev-arm64-cross >>"$LOG" 2>&1 \
      || echo "  note: could not install gcc-aarch64-linux-gnu; tvm-arm64 needs it" >&2
  fi
  step "checking every stack imports"
  TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -W ignore -c "import torch, onnxruntime, tensorflow, ai_edge_litert, onnx2tf, tf_keras, litert_torch, mlflow; assert torch.__version__.startswith('2.13.0')" >>"$LOG" 2>&1 \
    || { echo "install check failed: see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  "$VENV/bin/python" -W ignore -c "from edgekit.backends.torch.from_onnx import import_onnx2torch; import_onnx2torch()" >>"$LOG" 2>&1 \
    || { echo "install check failed (onnx2torch): see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  TVM_FFI_DISABLE_TORCH_C_DLPACK=1 "$VENV/bin/python" -W ignore -c "import tvm, tvm.relax, xgboost, tornado, litert_torch" >>"$LOG" 2>&1 \
    || { echo "install check failed (tvm): see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -W ignore -c "from edgekit.backends.tfjs.convert_child import import_converter; import_converter(); from edgekit.backends.tfjs.npm import installed; assert installed()" >>"$LOG" 2>&1 \
    || { echo "install check failed (tfjs): see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  "$VENV/bin/python" -W ignore -c "from edgekit.backends.executorch.stack import import_exir; import_exir(); from executorch.runtime import Runtime" >>"$LOG" 2>&1 \
    || { echo "install check failed (executorch): see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  "$VENV/bin/python" -W ignore -c "from edgekit.backends.coreml.stack import import_coremltools; import_coremltools()" >>"$LOG" 2>&1 \
    || { echo "install check failed (coreml): see $LOG" >&2; tail -n 15 "$LOG" >&2; exit 1; }
  rm -f "$VENV"/.edgekit-install-*
  touch "$stamp"
else
  pip install $C --no-deps --no-build-isolation -e .
fi
echo "edgekit environment ready: $VENV"
