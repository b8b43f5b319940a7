"""The tensorflowjs converter, run in a child process by the TF.js edges (converters.py).

tensorflowjs 4.22 imports, at module level, two packages it never uses for a SavedModel:
tensorflow_decision_forests (whose wheel pins TensorFlow 2.19 and protobuf 5: installing it breaks
TensorFlow 2.21 and onnx) and tensorflow_hub (which needs pkg_resources, gone from new setuptools).
So tensorflowjs is installed without its dependencies (``edgekit setup tfjs``) and, here only, in
this child process, empty stand-in modules take those names when the real ones do not import.
Nothing of this touches the parent's interpreter.

    python -m edgekit.backends.tfjs.convert_child '{"src": ..., "kind": "savedmodel"|"keras", "out": ...,
                                                    "quantize": ""|"float16"|"uint8", "shard_bytes": N}'
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import types

STAND_INS = ("tensorflow_decision_forests", "tensorflow_hub")


def import_converter():
    """tensorflowjs's SavedModel converter function, with stand-ins for the imports it never uses."""
    for name in STAND_INS:
        try:
            importlib.import_module(name)
        except Exception:  # missing, or broken by its own pins: never used for a SavedModel
            sys.modules[name] = types.ModuleType(name)
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import convert_tf_saved_model

    return convert_tf_saved_model


def _export_keras(path: str, work: str) -> str:
    import keras

    model = keras.models.load_model(path, compile=False, safe_mode=True)
    out = os.path.join(work, "saved_model")
    model.export(out, format="tf_saved_model", verbose=False)
    return out


def main(argv) -> int:
    args = json.loads(argv[0])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    convert = import_converter()
    with tempfile.TemporaryDirectory(prefix="edgekit-tfjs-") as work:
        src = _export_keras(args["src"], work) if args["kind"] == "keras" else args["src"]
        qmap = {args["quantize"]: "*"} if args.get("quantize") else None
        convert(src, args["out"], signature_def="serving_default", saved_model_tags="serve",
                quantization_dtype_map=qmap, weight_shard_size_bytes=int(args["shard_bytes"]),
                use_structured_outputs_names=True)
    import tensorflowjs

    print(json.dumps({"tensorflowjs": tensorflowjs.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
