"""Every kind of source loads into the same Source, and unsafe files are refused."""
import numpy as np
import pytest
import torch

from edgekit.core.errors import CorruptModel, UserError
from edgekit.backends.torch.reference import TorchReference
from edgekit.core.sources import load_source


def test_torchscript_and_pt2_sources_match_the_module(digits_source, digits_data, tmp_path):
    module = digits_source.obj
    x = torch.from_numpy(digits_data.eval["x"][:5])
    expect = module(x).detach().numpy()
    ts = tmp_path / "digits.pt"
    torch.jit.save(torch.jit.trace(module, x[:1]), str(ts))
    from edgekit.core.signature import parse_input_spec

    src = load_source(str(ts), [parse_input_spec("x:1x1x8x8:float32")])
    assert src.format == "torch"
    got = TorchReference(src).outputs({"x": digits_data.eval["x"][:5]})
    np.testing.assert_allclose(next(iter(got.values())), expect, rtol=1e-4, atol=1e-5)
    pt2 = tmp_path / "digits.pt2"
    torch.export.save(torch.export.export(module, (x[:1],)), str(pt2))
    src2 = load_source(str(pt2))
    assert src2.inputs[0].shape == (1, 1, 8, 8) and src2.inputs[0].name == "x"
    got = TorchReference(src2).outputs({"x": digits_data.eval["x"][:5]})
    np.testing.assert_allclose(next(iter(got.values())), expect, rtol=1e-4, atol=1e-5)


def test_torchscript_needs_input_spec(digits_source, tmp_path):
    from edgekit.core.signature import parse_input_spec

    ts = tmp_path / "digits.ts"
    torch.jit.save(torch.jit.trace(digits_source.obj, torch.zeros(1, 1, 8, 8)), str(ts))
    with pytest.raises(UserError, match="--input"):
        load_source(str(ts))
    src = load_source(str(ts), [parse_input_spec("x:1x1x8x8:float32")])
    assert src.inputs[0].shape == (1, 1, 8, 8) and src.outputs == ["output"]


def test_pickled_checkpoint_is_refused_not_unpickled(tmp_path, digits_source):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = tmp_path / "model.pt"
    torch.save({"state": digits_source.obj.state_dict(), "evil": Evil()}, str(ckpt))
    with pytest.raises(CorruptModel, match="never unpickle"):
        load_source(str(ckpt))
    assert not marker.exists()
    plain = tmp_path / "plain.pth"
    plain.write_bytes(b"\x80\x04not a zip")
    with pytest.raises(CorruptModel, match="plain pickle is never loaded"):
        load_source(str(plain))


@pytest.mark.tflite
def test_keras_source_converts_to_tflite(tmp_path):
    import keras

    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.core.pipeline import measure
    from edgekit.backends.tensorflow.reference import TfReference
    from edgekit.core.specs import get_target

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), name="x"), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(3)])
    path = tmp_path / "m.keras"
    model.save(path)
    src = load_source(str(path))
    assert src.format == "keras" and src.inputs[0].shape[1:] == (8,)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32))
    data = load_data(str(tmp_path / "d.npz"), src.inputs)
    ref = TfReference(src).outputs(data.eval)
    for name in ("tflite", "tflite-int8"):
        t = get_target(name)
        res = convert(src, t, data, tmp_path / "out")
        assert [s["edge"] for s in res.manifest["route"]] == ["TfliteFromKeras"]
        rec = measure(res.artifact, "litert", data, ref, t.tolerance, bench=None)
        assert rec["parity"]["passed"], rec["parity"]["failures"]
