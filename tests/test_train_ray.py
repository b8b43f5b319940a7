"""Training recipes as Ray tasks (issue 16, part 5: ``--workers ray``): the digits CNN's structured
pruning run as a Ray task on a local, loopback-only Ray instance started here gives the same model
as on this host (seeded): same parameters, same accuracy, same artifact bytes."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")


@pytest.fixture
def local_ray():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow  # two trainings of the digits CNN and a Ray start: about 3 minutes on 2 loaded cores
def test_structured_pruning_as_a_ray_task_matches_this_host(digits_source, digits_data, digits_reference, tmp_path,
                                                          monkeypatch, edgekit_cache, local_ray):
    from edgekit.core.convert import convert
    from edgekit.core.pipeline import measure
    from edgekit.core.remote import training_workers
    from edgekit.core.specs import get_target

    target = get_target("onnx@prune-structured-30")
    here = convert(digits_source, target, digits_data, tmp_path / "here")
    # a cache of its own, so the Ray run trains again instead of finding this host's step
    other = tmp_path / "cache"
    other.mkdir()
    if (edgekit_cache / "examples").exists():
        (other / "examples").symlink_to((edgekit_cache / "examples").resolve())
    monkeypatch.setenv("EDGEKIT_CACHE", str(other))
    with training_workers("ray"):
        there = convert(digits_source, target, digits_data, tmp_path / "ray")
    step = there.manifest["route"][0]
    assert step["edge"] == "PruneStructured" and not step["cached"]
    assert any("Ray task" in n for n in step["notes"]), step
    a, b = here.manifest["prepared"][0], there.manifest["prepared"][0]
    assert b["parameters_after"] == a["parameters_after"] < a["parameters_before"]
    assert b["epochs_run"] == a["epochs_run"] and b["validation"] == a["validation"]
    assert there.manifest["artifact_sha256"] == here.manifest["artifact_sha256"]
    acc = [measure(r.artifact, r.target.runtime, digits_data, digits_reference, r.target.tolerance,
                   bench=None)["parity"]["task_value"] for r in (here, there)]
    assert acc[0] == acc[1] > 0.9, acc


def test_head_pruning_of_a_tiny_bert_as_a_ray_task(local_ray, tmp_path, monkeypatch, edgekit_cache):
    """The same as a quick default-suite check: a tiny random BERT (tests/models/tiny_bert.py), its heads
    pruned and fine-tuned in a Ray worker, equals the model trained on this host, parameter for parameter."""
    from pathlib import Path

    pytest.importorskip("transformers")
    from edgekit.core.prepare import prepare
    from edgekit.core.remote import training_workers
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target

    from .test_prune_heads import tiny_dataset

    source = load_source(str(Path(__file__).parent / "models" / "tiny_bert.py") + ":build")
    data, target = tiny_dataset(), get_target("onnx@prune-heads-25")
    here = prepare(source, target, data)
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    with training_workers("ray"):
        there = prepare(source, target, data)
    assert not there[1][0].cached and any("Ray task" in n for n in there[1][0].notes)
    assert there[2][0]["heads_after"] == here[2][0]["heads_after"] == 6
    a, b = here[0].obj.state_dict(), there[0].obj.state_dict()  # each opened from its torch.export file
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
