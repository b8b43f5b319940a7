"""TensorFlow sources: SavedModel folders (their ``serving_default`` signature) and ``.keras`` files."""
from __future__ import annotations

from pathlib import Path

from ...core.artifacts import size_bytes
from ...core.errors import CorruptModel
from ...core.lazy import require
from ...core.signature import TensorSpec
from ...core.sources import Source, file_digest, override_specs


def load_savedmodel(spec: str, path: Path, input_specs) -> Source:
    return _savedmodel(path, input_specs)


def load_keras(spec: str, path: Path, input_specs) -> Source:
    return _keras(path, input_specs)


def _tf_specs(signature) -> tuple[list[TensorSpec], list[str]]:
    _, kw = signature.structured_input_signature
    ins = [TensorSpec(n, tuple(s.shape.as_list()), s.dtype.name) for n, s in sorted(kw.items())]
    outs = sorted(signature.structured_outputs)
    return ins, outs


def _savedmodel(path: Path, input_specs) -> Source:
    tf = require("tensorflow", "tflite", "A SavedModel source")
    try:
        loaded = tf.saved_model.load(str(path))
        sig = loaded.signatures["serving_default"]
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded as a SavedModel ({str(e).splitlines()[0][:200]}).") from None
    ins, outs = _tf_specs(sig)
    return Source(str(path), "savedmodel", path.name, file_digest(path), override_specs(ins, input_specs or [], path) if
                  input_specs else ins, outs, path, size_bytes=size_bytes(path))


def _keras(path: Path, input_specs) -> Source:
    require("tensorflow", "tflite", "A Keras source")
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:
        raise CorruptModel(f"'{path}' cannot be loaded as a Keras model ({str(e).splitlines()[0][:200]}).") from None
    ins = [TensorSpec(t.name.split(":")[0], tuple(t.shape), t.dtype if isinstance(t.dtype, str) else t.dtype.name)
           for t in model.inputs]
    outs = [f"output_{i}" for i in range(len(model.outputs))]
    return Source(str(path), "keras", path.stem, file_digest(path), input_specs or ins, outs, path, model, size_bytes=size_bytes(path))
