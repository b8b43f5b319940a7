"""What the onnx2tf edges pass and say: dynamic dimensions past the first are fixed at the data's
sample shapes (``-ois``; onnx2tf cannot convert some real graphs with dynamic spatial dimensions),
and a failure inside a TF layer is said as its cause and the ONNX node, not TF's wrapper line."""
from types import SimpleNamespace

import numpy as np

from edgekit.backends.tflite.onnx2tf import SavedModelFromOnnx, _last_error, fixed_shapes
from edgekit.core.data import Dataset
from edgekit.core.signature import TensorSpec

# onnx2tf's output on nudenet's 320n.onnx (YOLOv8n) with dynamic H and W, ANSI colours included
ONNX2TF_FAILURE = """\x1b[31mINFO:\x1b[0m onnx_op_type: Add
ValueError: in user code:

    File "onnx2tf/onnx2tf.py", line 2617, in None  *
        lambda *inputs : model(inputs)

    ValueError: Exception encountered when calling layer 'tf.math.add_87' (type TFOpLambda).

    Dimensions must be equal, but are 2 and 4 for '{{node model_8/tf.math.add_87/Add}} = AddV2[T=DT_FLOAT](model_8/tf.reshape_16/Reshape, model_8/tf.strided_slice_19/StridedSlice)' with input shapes: 

    Call arguments received by layer 'tf.math.add_87' (type TFOpLambda):
      \u2022 x=tf.Tensor(shape=(1, 2, None), dtype=float32)
      \u2022 y=tf.Tensor(shape=(None, 4, None), dtype=float32)
      \u2022 name='wa/model.22/Add_10'
"""


def test_a_layer_failure_names_the_onnx_node_and_the_cause():
    assert _last_error(ONNX2TF_FAILURE) == "at ONNX node 'wa/model.22/Add_10': Dimensions must be equal, but are 2 and 4"
    assert _last_error("loading\nValueError: Dimension -1 must be >= 0\n") == "ValueError: Dimension -1 must be >= 0"


def _ctx(specs, calib, stacked=()):
    data = Dataset("d", calib=calib, eval={k: v[:1] for k, v in calib.items()}, stacked=tuple(stacked))
    return SimpleNamespace(source=SimpleNamespace(inputs=specs), data=data)


def test_dynamic_dims_past_the_first_are_fixed_at_a_sample_shape():
    image = TensorSpec("x", (None, 3, "h", "w"))
    ctx = _ctx([image], {"x": np.zeros((4, 3, 48, 192), np.float32)})
    assert fixed_shapes(ctx) == {"x": (1, 3, 48, 192)}
    # every input gets its sample shape once one needs it; a stacked one is one sample without its axis
    state = TensorSpec("state", (2, None, 128))
    ctx = _ctx([image, state], {"x": np.zeros((4, 3, 48, 192), np.float32),
                                "state": np.zeros((4, 2, 1, 128), np.float32)}, stacked=["state"])
    assert fixed_shapes(ctx) == {"x": (1, 3, 48, 192), "state": (2, 1, 128)}
    # a dynamic batch alone converts as it is; without data nothing is fixed
    assert fixed_shapes(_ctx([TensorSpec("x", (None, 3, 8, 8))], {"x": np.zeros((4, 3, 8, 8), np.float32)})) == {}
    assert fixed_shapes(SimpleNamespace(source=SimpleNamespace(inputs=[image]), data=None)) == {}
    # a source already fixed for the route (core/shapes.py): onnx2tf is told the same shapes (its file is dynamic)
    fixed = SimpleNamespace(inputs=[TensorSpec("x", (1, 3, 48, 192))], shapes_from_data={"x": (1, 3, 48, 192)})
    assert fixed_shapes(SimpleNamespace(source=fixed, data=None)) == {"x": (1, 3, 48, 192)}


def test_the_fixed_shapes_key_the_cached_step():
    image = TensorSpec("x", (None, 3, "h", "w"))
    a = SavedModelFromOnnx.key_material(_ctx([image], {"x": np.zeros((2, 3, 48, 192), np.float32)}))
    b = SavedModelFromOnnx.key_material(_ctx([image], {"x": np.zeros((2, 3, 48, 320), np.float32)}))
    assert a == {"x": [1, 3, 48, 192]} and a != b
