"""Shape buckets (target option ``buckets``): litert-torch converts one signature per sequence length into
one .tflite file, the weights shared; LiteRT runs each sample in the smallest bucket that holds it, and the
outputs match the unbucketed model. A small token model built here (an embedding, a linear layer, mean
pooling over the mask): nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.core.lazy import available

pytestmark = [pytest.mark.tflite,
              pytest.mark.skipif(not (available("ai_edge_litert") and available("litert_torch")),
                                 reason="needs LiteRT and litert-torch")]
ROOT = Path(__file__).resolve().parents[1]
SEQ = 16
MODEL_PY = f'''
import torch

class Pool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(500, 32)
        self.lin = torch.nn.Linear(32, 24)

    def forward(self, input_ids, attention_mask):
        h = torch.tanh(self.lin(self.emb(input_ids)))
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)

def build():
    ids = torch.zeros(1, {SEQ}, dtype=torch.long)
    ids[0, :5] = torch.arange(1, 6)
    return Pool().eval(), {{"input_ids": ids, "attention_mask": (ids != 0).long()}}
'''


def _tokens(lengths, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), SEQ), np.int64)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 500, n)
    return ids, (ids != 0).astype(np.int64)


@pytest.fixture(scope="module")
def token_model(tmp_path_factory):
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source

    root = tmp_path_factory.mktemp("tokens")
    (root / "pool.py").write_text(MODEL_PY)
    lengths = [3, 4, 2, 7, 5, 16, 12, 1, 8, 9, 4, 3, 15, 6, 2, 11]
    ids, mask = _tokens(lengths)
    cids, cmask = _tokens([5, 9, 14, 3], seed=1)
    np.savez(root / "tokens.npz", input_ids=ids, attention_mask=mask, calib__input_ids=cids, calib__attention_mask=cmask)
    src = load_source(str(root / "pool.py") + ":build")
    return src, load_data(str(root / "tokens.npz"), src.inputs), lengths


def _convert(token_model, out, options, target="tflite"):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target, with_options

    src, data, _ = token_model
    return convert(src, with_options([get_target(target)], [f"{k}={v}" for k, v in options.items()])[0], data, out)


def test_runtime_base_bucket_helpers():
    from edgekit.runner.runtime_base import bucket_for, trim, used_length

    ids, mask = _tokens([5])
    feed = {"input_ids": ids, "attention_mask": mask, "other": np.ones((1, 3), np.float32)}
    assert used_length(feed, SEQ) == 5 and bucket_for(feed, (4, 8, 16)) == 8
    assert bucket_for({"x": np.zeros((1, SEQ), np.int64)}, (4, 8, 16)) == 4  # all padding: the smallest
    assert bucket_for({"x": np.ones((1, SEQ), np.int64)}, (4, 8, 16)) == 16
    cut = trim(feed, 8, 1, SEQ)
    assert cut["input_ids"].shape == (1, 8) and cut["other"].shape == (1, 3)
    assert (cut["input_ids"] == ids[:, :8]).all()


def _torch_outputs(root, arrays, export_to=None):
    """The unbucketed model: the source module in torch on every sample (and, with ``export_to``, its
    one-shape .tflite file straight from litert-torch, for the size)."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("pool_model", root / "pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module, example = mod.build()
    if export_to is not None:
        import litert_torch

        litert_torch.convert(module, (), example).export(str(export_to))
    with torch.no_grad():
        return np.concatenate([module(**{k: torch.from_numpy(v[i:i + 1]) for k, v in arrays.items()}).numpy()
                               for i in range(len(arrays["input_ids"]))])


def test_three_signatures_smallest_bucket_and_parity(token_model, tmp_path):
    from ai_edge_litert import interpreter as tfl

    from edgekit.backends.tflite.rt_litert import LiteRtModel
    from edgekit.runner.runtime_base import run_all

    src, data, lengths = token_model
    res = _convert(token_model, tmp_path / "bucketed", {"buckets": "4,8,16"})
    assert [s["edge"] for s in res.manifest["route"]] == ["TfliteFromTorch"]
    sigs = tfl.Interpreter(model_path=str(res.artifact)).get_signature_list()
    assert sorted(sigs) == ["seq16", "seq4", "seq8"]
    assert res.manifest["options"]["buckets"] == "4,8,16"
    assert any("signatures seq4, seq8, seq16" in n for s in res.manifest["route"] for n in s["notes"])
    assert res.manifest["proof"]["proven"]
    want = _torch_outputs(Path(src.spec.split(":")[0]).parent, data.eval, tmp_path / "plain.tflite")
    # the weights are shared: three signatures cost little more than one
    plain = (tmp_path / "plain.tflite").stat().st_size
    assert res.manifest["size_bytes"] < 1.2 * plain, (res.manifest["size_bytes"], plain)

    model = LiteRtModel(str(res.artifact), 1)
    assert model.buckets == (4, 8, 16)
    assert [s["shape"] for s in model.input_specs()] == [[1, SEQ], [1, SEQ]]
    ids, mask = _tokens([3])
    feed = model.prepare({"input_ids": ids, "attention_mask": mask})
    assert {a.shape for a in feed.values()} == {(1, 4)}  # a short sample runs in the smallest bucket
    assert model.usage() == {"buckets": {"seq4": 1}} and model.usage() is None

    got = run_all(model, data.eval)
    (name,) = got
    np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)
    expect = {f"seq{b}": sum(1 for n in lengths if next(x for x in (4, 8, 16) if x >= n) == b) for b in (4, 8, 16)}
    assert model.usage() == {"buckets": expect}


def test_dynamic_int8_keeps_the_buckets(token_model, tmp_path):
    from ai_edge_litert import interpreter as tfl

    res = _convert(token_model, tmp_path / "q", {"buckets": "4,8,16"}, "tflite-int8-dynamic")
    assert [s["edge"] for s in res.manifest["route"]] == ["TfliteFromTorch", "QuantizedTfliteFromTflite"]
    assert sorted(tfl.Interpreter(model_path=str(res.artifact)).get_signature_list()) == ["seq16", "seq4", "seq8"]
    assert res.manifest["proof"]["proven"]


def test_bad_buckets_are_one_sentence(token_model, tmp_path):
    from edgekit.core.errors import UserError

    for bad, words in (("8,4,16", "increasing"), ("4,8", "must end at the inputs' fixed length on axis 1 \\(16"),
                       ("4,x,16", "not a comma-separated list")):
        with pytest.raises(UserError, match=words) as e:
            _convert(token_model, tmp_path / "bad", {"buckets": bad})
        assert str(e.value).count(". ") == 0 or str(e.value).endswith(")."), str(e.value)
    assert not (tmp_path / "bad").exists()


def test_only_bucket_making_routes_are_planned():
    from edgekit.core.graph import plan
    from edgekit.core.specs import get_target, with_options

    (tfl,) = with_options([get_target("tflite")], ["buckets=16,32,64"])
    for route in plan("onnx", tfl).routes:  # onnx2tf and the TFLite converter make one shape: blocked
        assert route.blocked or "TfliteFromTorch" in route.names, route.names
    assert all("TfliteFromTorch" in r.names for r in plan("torch", tfl).usable)


@pytest.mark.slow
def test_minilm_buckets_keep_parity_and_run_short_sentences_short(tmp_path):
    """all-MiniLM-L6-v2 at seq 64 with buckets 16,32,64 under dynamic-range int8: the sentences (7-22 tokens)
    run in seq16 or seq32, and the embeddings stay as close to torch as the unbucketed artifact's."""
    from edgekit.backends.torch.reference import TorchReference
    from edgekit.core.data import load_data
    from edgekit.core.pipeline import BenchOptions, measure
    from edgekit.core.sources import load_source

    src = load_source(str(ROOT / "examples" / "minilm.py") + ":build")
    data = load_data("sentences", src.inputs)
    ref = TorchReference(src).outputs(data.eval)
    quick = BenchOptions(threads=1, warmup=2, min_runs=10, min_seconds=0.2)
    res = _convert((src, data, None), tmp_path, {"buckets": "16,32,64"}, "tflite-int8-dynamic")
    rec = measure(res.artifact, "litert", data, ref, res.target.tolerance, bench=quick)
    out = rec["parity"]["outputs"][0]
    assert rec["parity"]["passed"] and out["cosine_min"] > 0.99, out
    used = data.eval["attention_mask"].sum(axis=1)
    assert rec["parity"]["usage"] == {"buckets": {"seq16": int((used <= 16).sum()), "seq32": int((used > 16).sum())}}
    assert rec["bench"]["usage"] == {"buckets": {"seq32" if used[0] > 16 else "seq16": 1}}  # the timed sample's
