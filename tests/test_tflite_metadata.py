"""ML Kit metadata on TFLite targets: written in the TFLite metadata schema by the finishing step the
planner appends when a metadata option is set, read back, and the artifact still proven in LiteRT."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.core.lazy import available

pytestmark = [pytest.mark.tflite,
              pytest.mark.skipif(not available("ai_edge_litert"), reason="needs the tflite stack")]
ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"


@pytest.fixture(scope="module")
def digits():
    from edgekit.core.data import load_data
    from edgekit.core.sources import load_source

    src = load_source(MODEL)
    return src, load_data("digits", src.inputs)


def _convert(digits, out, options):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target, with_options

    src, data = digits
    target = with_options([get_target("tflite")], [f"{k}={v}" for k, v in options.items()])[0]
    return convert(src, target, data, out)


def test_metadata_read_back_and_the_artifact_still_proven(digits, tmp_path):
    from edgekit.backends.tflite.metadata import read

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"digit {i}\n" for i in range(10)))
    plain = _convert(digits, tmp_path / "plain", {})
    res = _convert(digits, tmp_path / "meta", {"labels": labels, "mean": "0", "std": "16", "author": "edgekit tests",
                                                "version": "1.2.0", "model_name": "digits", "description": "8x8 digits"})
    assert [s["edge"] for s in res.manifest["route"]][-1] == "TfliteWithMetadata"
    assert read(plain.artifact) == {}  # no option, no step, no metadata
    m = read(res.artifact)
    assert (m["model_name"], m["version"], m["author"], m["description"]) == ("digits", "1.2.0", "edgekit tests",
                                                                               "8x8 digits")
    assert m["min_parser_version"] == "1.0.0"
    (inp,), (out,) = m["inputs"], m["outputs"]
    assert inp["mean"] == [0.0] and inp["std"] == [16.0]
    assert out["associated_files"] == [{"name": "labels.txt", "type": 2}]  # TENSOR_AXIS_LABELS
    assert m["files"]["labels.txt"].splitlines() == [f"digit {i}" for i in range(10)]
    # the same model with metadata: still loads in LiteRT and is close to the source (the proof)
    proof = res.manifest["proof"]
    assert proof["proven"] and proof["cosine"][proof["worst_output"]] > 0.999
    before, after = plain.manifest["size_bytes"], res.manifest["size_bytes"]
    assert 0 < after - before < 4096, (before, after)
    assert any("ML Kit metadata" in n for s in res.manifest["route"] for n in s["notes"])


def test_metadata_mistakes_are_one_sentence(digits, tmp_path):
    from edgekit.core.errors import UserError

    labels = tmp_path / "nine.txt"
    labels.write_text("".join(f"{i}\n" for i in range(9)))
    with pytest.raises(UserError, match=r"has 9 labels; the model's output .* has 10 classes"):
        _convert(digits, tmp_path / "a", {"labels": labels})
    with pytest.raises(UserError, match="'mean' and 'std' go together"):
        _convert(digits, tmp_path / "b", {"mean": "0.5"})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_metadata_options_go_to_tflite_targets_only():
    from edgekit.core.graph import plan
    from edgekit.core.specs import get_target, with_options

    onnx, tfl = with_options([get_target("onnx"), get_target("tflite-int8")], ["author=me"])
    assert "author" not in onnx.options and tfl.options["author"] == "me"
    route = plan("torch", tfl).usable[0]
    assert route.names[-1] == "TfliteWithMetadata" and route.recipe_index == len(route.edges) - 2
    assert all(r.names[-1] != "TfliteWithMetadata" for r in plan("torch", get_target("tflite-int8")).routes)
