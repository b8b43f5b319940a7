"""The planner and the executor, on fake converters (no framework needed)."""

import pytest

from edgekit.core.convert import convert
from edgekit.core.errors import ConversionError, NoRoute, UnsupportedOperator
from edgekit.core.graph import Converter, load_converters, plan
from edgekit.core.sources import Source
from edgekit.core.specs import Target, get_recipe, get_target

CALLS = []


class _Writes(Converter, register=False):
    def convert(self, artifact, out_dir, ctx):
        CALLS.append(self.name())
        path = out_dir / f"model.{self.dst}"
        path.write_text(f"{self.name()} from {artifact.digest} recipe={ctx.recipe.name if ctx.recipe else None}")
        return path


class FakeSavedModelFromKeras(_Writes, register=False):
    src, dst, cost = "keras", "savedmodel", 1.0


class FakeTfliteFromSavedModel(_Writes, register=False):
    src, dst, cost = "savedmodel", "tflite", 1.0
    recipes = frozenset({"none", "int8-dynamic"})


class FakeBrokenTfliteFromKeras(Converter, register=False):
    """The cheapest route, and it fails."""

    src, dst, cost = "keras", "tflite", 0.5
    recipes = frozenset({"none", "int8-dynamic"})

    def convert(self, artifact, out_dir, ctx):
        CALLS.append(self.name())
        (out_dir / "half-written.tflite").write_text("garbage")
        raise ConversionError(self.name(), "the converter crashed")


class FakeNeedsMissingPackage(Converter, register=False):
    src, dst, cost = "keras", "tflite", 0.1
    requires = (("edgekit_no_such_module", "nosuch"),)


class FakeLinuxOnly(Converter, register=False):
    src, dst, cost = "keras", "tflite", 0.2
    platforms = ("no-such-os",)


REG = {c.__name__: c for c in (FakeSavedModelFromKeras, FakeTfliteFromSavedModel, FakeBrokenTfliteFromKeras,
                               FakeNeedsMissingPackage, FakeLinuxOnly)}
TARGET = Target("fake-tflite", "tflite", "int8-dynamic", "litert")


def _source(tmp_path):
    p = tmp_path / "m.keras"
    p.write_text("model")
    return Source(str(p), "keras", "fake", "d1g35t", [], ["y"], p)


def test_plan_orders_usable_routes_by_cost_and_explains_rejections():
    p = plan("keras", TARGET, REG)
    usable = [r.names for r in p.usable]
    assert usable == [["FakeBrokenTfliteFromKeras"], ["FakeSavedModelFromKeras", "FakeTfliteFromSavedModel"]]
    assert "edgekit[nosuch]" in p.rejected_edges["FakeNeedsMissingPackage"]
    assert "no-such-os" in p.rejected_edges["FakeLinuxOnly"]
    blocked = {tuple(r.names): r.blocked for r in p.routes if r.blocked}
    assert "does not apply recipe kind 'int8-dynamic'" in blocked[("FakeNeedsMissingPackage",)] or \
        "edgekit[nosuch]" in blocked[("FakeNeedsMissingPackage",)]


def test_last_edge_must_apply_the_recipe():
    fp16 = Target("fake-fp16", "tflite", "fp16", "litert")
    p = plan("keras", fp16, REG)
    assert p.usable == []
    assert all("does not apply recipe kind 'fp16'" in r.blocked or "needs" in r.blocked or "runs only" in r.blocked
               for r in p.routes)


def test_failing_edge_falls_back_to_next_route_and_manifest_says_so(tmp_path):
    CALLS.clear()
    src = _source(tmp_path)
    res = convert(src, TARGET, None, tmp_path / "out", plan("keras", TARGET, REG), prove_artifact=False)
    assert CALLS == ["FakeBrokenTfliteFromKeras", "FakeSavedModelFromKeras", "FakeTfliteFromSavedModel"]
    assert res.artifact.read_text().startswith("FakeTfliteFromSavedModel")
    assert "recipe=int8-dynamic" in res.artifact.read_text()
    m = res.manifest
    assert [s["edge"] for s in m["route"]] == ["FakeSavedModelFromKeras", "FakeTfliteFromSavedModel"]
    assert m["routes_failed"][0]["edge"] == "FakeBrokenTfliteFromKeras"
    assert "crashed" in m["routes_failed"][0]["error"]
    assert any("edgekit[nosuch]" in s["why"] for s in m["routes_skipped"])
    # the failed edge left nothing behind, in the cache or the output
    assert not list(tmp_path.rglob("half-written.tflite"))
    assert not list(tmp_path.rglob("*.part"))
    # a second convert is served from the cache: no converter runs
    CALLS.clear()
    again = convert(src, TARGET, None, tmp_path / "out", plan("keras", TARGET, REG), prove_artifact=False)
    assert CALLS == ["FakeBrokenTfliteFromKeras"]  # the failure is not cached: it is retried
    assert again.cached and again.artifact.read_text() == res.artifact.read_text()


def test_every_route_failing_raises_no_route_with_reasons(tmp_path):
    only_broken = {"FakeBrokenTfliteFromKeras": FakeBrokenTfliteFromKeras}
    with pytest.raises(NoRoute, match="FakeBrokenTfliteFromKeras: the converter crashed"):
        convert(_source(tmp_path), TARGET, None, tmp_path / "out", plan("keras", TARGET, only_broken))
    assert not (tmp_path / "out" / "fake" / "fake-tflite").exists()


def test_unsupported_operator_on_every_route_is_reported_as_such(tmp_path):
    class OpFails(Converter, register=False):
        src, dst = "keras", "tflite"
        recipes = frozenset({"int8-dynamic"})

        def convert(self, artifact, out_dir, ctx):
            raise UnsupportedOperator(self.name(), "FancyOp")

    with pytest.raises(UnsupportedOperator, match="'FancyOp'"):
        convert(_source(tmp_path), TARGET, None, tmp_path / "out", plan("keras", TARGET, {"OpFails": OpFails}))


def test_no_route_at_all(tmp_path):
    with pytest.raises(NoRoute, match="No converter path"):
        convert(_source(tmp_path), get_target("onnx"), None, tmp_path / "out", plan("keras", get_target("onnx"), REG))


def test_static_recipe_needs_calibration_data(tmp_path):
    with pytest.raises(ConversionError, match="needs calibration data"):
        convert(_source(tmp_path), get_target("tflite-int8"), None, tmp_path / "out")


def test_real_graph_has_the_documented_routes():
    reg = load_converters()
    assert {"OnnxFromTorch", "SavedModelFromOnnx", "TfliteFromSavedModel", "QuantizedOnnxFromOnnx"} <= set(reg)
    p = plan("torch", get_target("tflite-int8"), reg)
    assert p.routes[0].names == ["OnnxFromTorch", "SavedModelFromOnnx", "TfliteFromSavedModel"]
    p = plan("onnx", get_target("onnx-int8"), reg)
    assert p.routes[0].names == ["QuantizedOnnxFromOnnx"]
    p = plan("onnx", get_target("onnx"), reg)
    assert p.routes[0].edges == ()  # already there: a copy
    entropy = Target("x", "tflite", "int8-static-entropy", "litert")
    p = plan("torch", entropy, reg)
    assert not p.usable and "no 'entropy' calibration" in p.routes[0].blocked
    assert get_recipe("int8-static-entropy").calibration.method == "entropy"
