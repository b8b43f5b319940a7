"""Bad inputs end in one line on stderr, a typed exit code, no traceback and nothing half-written.

Every case runs the real CLI in a child process (``python -m edgekit ...``) in a private folder,
with its own conversion cache. Each message must name the thing that is wrong (file, target,
extra, operator, input) and say the fix.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = f"{ROOT / 'examples' / 'digits_cnn.py'}:build"

# exit codes of the exception tree (errors.py)
USER, MISSING_EXTRA, CONVERSION, RUNNER = 2, 3, 4, 5


# ------------------------------------------------------------------ helpers and fixtures

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The child processes' environment: a private conversion cache (example weights are reused
    from $EDGEKIT_TEST_CACHE or the session's cache when there, to save retraining)."""
    cache = tmp_path_factory.mktemp("errors-cache")
    for keep in (os.environ.get("EDGEKIT_TEST_CACHE"), os.environ.get("EDGEKIT_CACHE")):
        if keep and (Path(keep) / "examples").is_dir():  # the digits weights are deterministic: share them
            (cache / "examples").symlink_to(Path(keep) / "examples")
            break
    e = dict(os.environ, EDGEKIT_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    e.pop("EDGEKIT_DEBUG", None)
    return e


@pytest.fixture
def work(tmp_path):
    """The child's working directory; file names in messages are the relative names passed."""
    return tmp_path


def edgekit(args, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def edgekit_without(modules, args, cwd, env) -> subprocess.CompletedProcess:
    """The CLI in a Python where ``modules`` cannot be imported (as if their extra were not installed)."""
    code = ("import sys\n"
            f"for m in {list(modules)!r}:\n"
            "    sys.modules[m] = None\n"
            "from edgekit.cli.app import main\n"
            f"sys.exit(main({[str(a) for a in args]!r}))\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def one_error(proc, code: int, *needles: str) -> str:
    """Assert a clean failure and return its one line."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("edgekit: error: "), line
    assert proc.returncode == code, f"exit code {proc.returncode} (expected {code}): {line}"
    for n in needles:
        assert n in line, f"{n!r} not in: {line}"
    return line


def nothing_written(out: Path, target: str) -> None:
    """No folder for ``target`` and no ``*.part`` leftovers under ``--out``."""
    if not out.exists():
        return
    leftovers = [p for p in out.rglob("*") if ".part" in p.name or p.name == target
                 or p.name.startswith(f".{target}.")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory, env):
    """The digits CNN exported to ONNX by edgekit itself (one export for the whole module)."""
    folder = tmp_path_factory.mktemp("digits-onnx")
    proc = edgekit(["convert", DIGITS, "--target", "onnx", "--out", folder / "out"], folder, env)
    assert proc.returncode == 0, proc.stderr
    path = folder / "digits.onnx"
    shutil.copyfile(folder / "out" / "digits_cnn" / "onnx" / "model.onnx", path)
    return path


@pytest.fixture
def onnx_here(work, digits_onnx):
    """The digits ONNX copied into the working folder as ``digits.onnx``."""
    shutil.copyfile(digits_onnx, work / "digits.onnx")
    return "digits.onnx"


def _save(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return path.name


def _digits_like(n=16, shape=(1, 8, 8), dtype=np.float32):
    return np.random.default_rng(0).random((n, *shape)).astype(dtype)


# ------------------------------------------------------------------ 1. missing files

@pytest.mark.parametrize("model, name", [("nosuch.onnx", "'nosuch.onnx'"), ("nosuch.py:build", "'nosuch.py'")])
def test_missing_model_file(work, env, model, name):
    out = work / "out"
    proc = edgekit(["convert", model, "--target", "onnx", "--out", out], work, env)
    one_error(proc, USER, name, "does not exist", "Check the path")
    nothing_written(out, "onnx")


def test_missing_model_file_in_run(work, env):
    out = work / "out"
    proc = edgekit(["run", "nosuch.onnx", "--targets", "onnx", "--data", "random", "--out", out], work, env)
    one_error(proc, USER, "'nosuch.onnx'", "does not exist", "Check the path")
    assert not out.exists()


@pytest.mark.parametrize("cmd", ["bench", "parity"])
def test_missing_artifact(work, env, cmd):
    args = [cmd, "nosuch.tflite"] + (["--reference", "nosuch.onnx", "--data", "random"] if cmd == "parity" else [])
    proc = edgekit(args, work, env)
    one_error(proc, USER, "'nosuch.tflite'", "does not exist", "Check the path")


@pytest.mark.onnx
@pytest.mark.parametrize("cmd", ["convert", "run"])
def test_missing_data_file(work, env, onnx_here, cmd):
    out = work / "out"
    target = ["--target", "onnx-int8"] if cmd == "convert" else ["--targets", "onnx-int8"]
    proc = edgekit([cmd, onnx_here, *target, "--data", "nosuch.npz", "--out", out], work, env)
    one_error(proc, USER, "Data file 'nosuch.npz' does not exist", "Check the path")
    nothing_written(out, "onnx-int8")


@pytest.mark.onnx
def test_misspelt_builtin_data_set(work, env, onnx_here):
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", "digts", "--out", out], work, env)
    one_error(proc, USER, "'digts'", "Did you mean 'digits'")
    nothing_written(out, "onnx-int8")


# ------------------------------------------------------------------ 2. corrupt models

@pytest.mark.onnx
def test_truncated_onnx(work, env, digits_onnx):
    blob = digits_onnx.read_bytes()
    (work / "half.onnx").write_bytes(blob[:len(blob) // 2])
    out = work / "out"
    proc = edgekit(["convert", "half.onnx", "--target", "onnx-int8-dynamic", "--out", out], work, env)
    one_error(proc, USER, "'half.onnx'", "not a valid ONNX model", "truncated", "Re-export")
    nothing_written(out, "onnx-int8-dynamic")


@pytest.mark.onnx
def test_truncated_onnx_artifact_in_bench(work, env, digits_onnx):
    blob = digits_onnx.read_bytes()
    (work / "half.onnx").write_bytes(blob[:len(blob) // 2])
    proc = edgekit(["bench", "half.onnx"], work, env)
    one_error(proc, RUNNER, "loading half.onnx", "'half.onnx' may be truncated", "edgekit convert")


def _tflite_model(path: Path) -> None:
    """A real (tiny) TFLite model, y = x + w, written with the LiteRT flatbuffer schema."""
    flatbuffers = pytest.importorskip("flatbuffers")
    s = pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = s.ModelT()
    model.version = 3
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 1
    model.operatorCodes = [code]
    empty, weights = s.BufferT(), s.BufferT()
    weights.data = np.arange(64, dtype=np.float32).tobytes()
    model.buffers = [empty, weights]

    def tensor(name, buffer):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, [1, 64], s.TensorType.FLOAT32, buffer
        return t

    graph = s.SubGraphT()
    graph.name = "main"
    graph.tensors = [tensor("x", 0), tensor("w", 1), tensor("y", 0)]
    graph.inputs, graph.outputs = [0], [2]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph.operators = [op]
    model.subgraphs = [graph]
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))


@pytest.fixture(scope="module")
def tflite_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    full = folder / "full.tflite"
    _tflite_model(full)
    blob = full.read_bytes()
    half = folder / "half.tflite"
    half.write_bytes(blob[:len(blob) // 2])
    return full, half


@pytest.mark.tflite
def test_intact_tflite_benches(work, env, tflite_pair):
    """The control: the same file, whole, loads and runs (so the truncation is what fails below)."""
    shutil.copyfile(tflite_pair[0], work / "full.tflite")
    proc = edgekit(["bench", "full.tflite", "--warmup", "0", "--min-runs", "1", "--min-seconds", "0", "--json"],
                   work, env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runtime"] == "litert"


@pytest.mark.tflite
def test_truncated_tflite_in_bench(work, env, tflite_pair):
    shutil.copyfile(tflite_pair[1], work / "half.tflite")
    proc = edgekit(["bench", "half.tflite"], work, env)
    one_error(proc, RUNNER, "loading half.tflite", "'half.tflite' may be truncated", "edgekit convert")


@pytest.mark.tflite
@pytest.mark.onnx
def test_truncated_tflite_in_parity(work, env, tflite_pair, onnx_here):
    shutil.copyfile(tflite_pair[1], work / "half.tflite")
    data = _save(work / "good.npz", x=_digits_like())
    proc = edgekit(["parity", "half.tflite", "--reference", onnx_here, "--data", data], work, env)
    one_error(proc, RUNNER, "loading half.tflite", "'half.tflite' may be truncated", "edgekit convert")


# ------------------------------------------------------------------ 3. unknown target

@pytest.mark.onnx
@pytest.mark.parametrize("cmd", ["convert", "run"])
def test_unknown_target(work, env, onnx_here, cmd):
    out = work / "out"
    target = ["--target", "tflite-int9"] if cmd == "convert" else ["--targets", "onnx,tflite-int9"]
    proc = edgekit([cmd, onnx_here, *target, "--data", "random", "--out", out], work, env)
    one_error(proc, USER, "'tflite-int9'", "Did you mean 'tflite-int8'")
    assert not out.exists()


# ------------------------------------------------------------------ 4. an extra not installed

@pytest.mark.onnx
@pytest.mark.parametrize("missing", [["onnxruntime"], ["onnx"], ["onnx", "onnxruntime"]])
def test_missing_extra(work, env, onnx_here, missing):
    out = work / "out"
    proc = edgekit_without(missing, ["convert", onnx_here, "--target", "onnx-int8-dynamic", "--out", out], work, env)
    code = MISSING_EXTRA  # the source loader or the planner names the extra
    line = one_error(proc, code, "pip install 'edgekit[onnx]'")
    assert missing[0] in line
    nothing_written(out, "onnx-int8-dynamic")


# ------------------------------------------------------------------ 5. shapes and dtypes that do not fit

@pytest.mark.onnx
@pytest.mark.parametrize("cmd", ["convert", "run"])
def test_data_of_the_wrong_shape(work, env, onnx_here, cmd):
    data = _save(work / "bad.npz", x=_digits_like(shape=(1, 9, 9)))
    out = work / "out"
    target = ["--target", "onnx-int8"] if cmd == "convert" else ["--targets", "onnx-int8"]
    proc = edgekit([cmd, onnx_here, *target, "--data", data, "--out", out], work, env)
    one_error(proc, USER, "input 'x'", "expects 1x1x8x8", "9 != 8", "Pass [N, 1, 8, 8] (samples along the model's axis 0)")
    nothing_written(out, "onnx-int8")


def test_data_of_the_wrong_shape_for_the_torch_model(work, env):
    data = _save(work / "bad.npz", x=_digits_like(shape=(1, 9, 9)))
    out = work / "out"
    proc = edgekit(["run", DIGITS, "--targets", "onnx", "--data", data, "--out", out], work, env)
    one_error(proc, USER, "input 'x'", "expects 1x1x8x8", "Pass [N, 1, 8, 8] (samples along the model's axis 0)")
    assert not out.exists()


@pytest.mark.onnx
def test_data_of_the_wrong_rank(work, env, onnx_here):
    data = _save(work / "flat.npz", x=_digits_like(shape=(64,)))
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", data, "--out", out], work, env)
    one_error(proc, USER, "input 'x'", "rank 4", "1x1x8x8")
    nothing_written(out, "onnx-int8")


@pytest.mark.onnx
@pytest.mark.parametrize("dtype", [np.int64, np.bool_])
def test_data_of_the_wrong_dtype(work, env, onnx_here, dtype):
    data = _save(work / "ints.npz", x=_digits_like(dtype=dtype))
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", data, "--out", out], work, env)
    one_error(proc, USER, "input 'x'", f"dtype {np.dtype(dtype).name}", "expects float32", "Convert the data")
    nothing_written(out, "onnx-int8")


@pytest.mark.onnx
def test_calibration_data_of_the_wrong_shape(work, env, onnx_here):
    good = _save(work / "good.npz", x=_digits_like())
    bad = _save(work / "bad.npz", x=_digits_like(shape=(1, 9, 9)))
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", good, "--calib-data", bad,
                    "--out", out], work, env)
    one_error(proc, USER, "input 'x'", "expects 1x1x8x8")
    nothing_written(out, "onnx-int8")


@pytest.mark.onnx
def test_data_without_the_models_input(work, env, onnx_here):
    data = _save(work / "named.npz", image=_digits_like(), extra=_digits_like())
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", data, "--out", out], work, env)
    one_error(proc, USER, "no input 'x'", "'image'", "Name the arrays")
    nothing_written(out, "onnx-int8")


@pytest.mark.onnx
@pytest.mark.parametrize("kind", ["truncated", "objects", "not-numpy", "mismatched-counts"])
def test_unreadable_data_file(work, env, onnx_here, kind):
    path = work / "data.npz"
    if kind == "truncated":
        np.savez(path, x=_digits_like())
        blob = path.read_bytes()
        path.write_bytes(blob[:len(blob) // 2])
        needles = ["'data.npz'", "truncated"]
    elif kind == "objects":
        np.savez(path, x=np.array([{"a": 1}] * 16, dtype=object))
        needles = ["'data.npz'", "'x'", "Python objects"]
    elif kind == "not-numpy":
        path.write_text("x,y\n1,2\n")
        needles = ["'data.npz'", "not a numpy"]
    else:
        np.savez(path, x=_digits_like(16), labels=np.arange(5))
        needles = ["different sample counts", "labels"]
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx-int8", "--data", "data.npz", "--out", out], work, env)
    one_error(proc, USER, *needles)
    nothing_written(out, "onnx-int8")


# ------------------------------------------------------------------ 6. an operator a converter cannot handle

@pytest.fixture
def fancy_onnx(work):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("FancyOp", ["h"], ["y"], domain="com.example")]
    model = helper.make_model(helper.make_graph(nodes, "fancy", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    onnx.save(model, str(work / "fancy.onnx"))
    return "fancy.onnx"


@pytest.mark.parametrize("target, edge", [
    pytest.param("onnx-int8-dynamic", "QuantizedOnnxFromOnnx", marks=pytest.mark.onnx),
    pytest.param("onnx-fp16", "Fp16OnnxFromOnnx", marks=pytest.mark.onnx),
    pytest.param("tflite", "SavedModelFromOnnx", marks=pytest.mark.tflite),
])
def test_unsupported_operator(work, env, fancy_onnx, target, edge):
    out = work / "out"
    proc = edgekit(["convert", fancy_onnx, "--target", target, "--out", out], work, env)
    one_error(proc, CONVERSION, f"{edge}:", "'com.example::FancyOp'", "not supported", "Try another target")
    nothing_written(out, target)


# ------------------------------------------------------------------ 7. NaN in data

@pytest.mark.onnx
@pytest.mark.parametrize("cmd, value", [("convert", np.nan), ("run", np.nan), ("convert", np.inf)])
def test_nan_in_data(work, env, onnx_here, cmd, value):
    x = _digits_like()
    x[3, 0, 2, 2] = value
    data = _save(work / "nan.npz", x=x)
    out = work / "out"
    target = ["--target", "onnx-int8"] if cmd == "convert" else ["--targets", "onnx-int8"]
    proc = edgekit([cmd, onnx_here, *target, "--data", data, "--out", out], work, env)
    one_error(proc, USER, "NaN", "input 'x'", "Clean or impute")
    nothing_written(out, "onnx-int8")


# ------------------------------------------------------------------ 8. bad --input

@pytest.mark.onnx
@pytest.mark.parametrize("spec, needles", [
    ("x", ["'x'", "is not NAME:SHAPE[:DTYPE]", "Example: --input"]),
    (":1x1x8x8", ["':1x1x8x8'", "is not NAME:SHAPE[:DTYPE]", "Example: --input"]),
    ("x:1x1x8x8:float32:more", ["'x:1x1x8x8:float32:more'", "is not NAME:SHAPE[:DTYPE]"]),
    ("x:1x1x8x8:float33", ["unknown dtype 'float33'", "Use one of: float32"]),
    ("x:1x-2x8x8", ["bad dimension '-2'", "Use integers"]),
    ("x:1x1.5x8x8", ["bad dimension '1.5'", "Use integers"]),
    ("y:1x1x8x8", ["['y']", "are not inputs", "['x']", "Use the model's input names"]),
    ("x:1x8", ["'x'", "rank 2", "rank 4 (1x1x8x8)", "Pass --input x:1x1x8x8:float32"]),
    ("x:1x1x9x9", ["'x'", "declares 1x1x8x8", "Pass --input x:1x1x8x8:float32"]),
])
def test_bad_input_spec(work, env, onnx_here, spec, needles):
    out = work / "out"
    proc = edgekit(["convert", onnx_here, "--target", "onnx", f"--input={spec}", "--out", out], work, env)
    one_error(proc, USER, *needles)
    nothing_written(out, "onnx")


def test_input_spec_the_torch_model_cannot_take(work, env):
    out = work / "out"
    proc = edgekit(["convert", DIGITS, "--target", "onnx", "--input", "x:1x8", "--out", out], work, env)
    one_error(proc, USER, "x:1x8:float32", "Give --input the shape and dtype the model's forward takes")
    nothing_written(out, "onnx")


# ------------------------------------------------------------------ 9. files as users have them

@pytest.mark.onnx
def test_symlinked_model_file(work, env, digits_onnx):
    """Every file of a Hugging Face cache is a symlink into a blobs/ folder, without a suffix."""
    (work / "blobs").mkdir()
    shutil.copyfile(digits_onnx, work / "blobs" / "5f1c0e")
    (work / "model.onnx").symlink_to(Path("blobs") / "5f1c0e")
    proc = edgekit(["convert", "model.onnx", "--target", "onnx", "--out", work / "out"], work, env)
    assert proc.returncode == 0, proc.stderr
    art = work / "out" / "model" / "onnx" / "model.onnx"
    assert art.is_file() and not art.is_symlink() and art.stat().st_size == digits_onnx.stat().st_size


def test_pt2_that_is_not_a_zip(work, env):
    (work / "model.pt2").write_text("not a torch.export archive")
    proc = edgekit(["convert", "model.pt2", "--target", "onnx", "--out", work / "out"], work, env)
    one_error(proc, USER, "'model.pt2'", "torch.export")
