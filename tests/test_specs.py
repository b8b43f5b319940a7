import pytest

from edgekit.core import specs
from edgekit.backends import formats, runtimes
from edgekit.core.errors import SpecError, UnknownName

REQUIRED = ["onnx", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8-dynamic",
            "tflite-int8"]


def test_shipped_targets_load_and_name_their_parts():
    targets = specs.all_targets()
    for name in REQUIRED:
        t = targets[name]
        assert t.format in formats() and t.runtime in runtimes() and t.format in runtimes()[t.runtime].formats
        assert t.recipe_spec.name == t.recipe
        assert 0 < t.tolerance.min_cosine <= 1
    assert targets["tflite-int8"].recipe_spec.kind == "int8-static"
    assert targets["tflite-int8"].recipe_spec.calibration.per_channel is True
    assert targets["onnx-int8-dynamic"].recipe_spec.needs_calibration is False


def test_specs_are_frozen():
    t = specs.get_target("onnx")
    with pytest.raises(Exception):
        t.format = "tflite"


def test_unknown_key_is_rejected_with_suggestion():
    with pytest.raises(SpecError, match="unknown key 'runtim'.*Did you mean 'runtime'"):
        specs.from_mapping(specs.Target, {"name": "x", "format": "onnx", "recipe": "none", "runtim": "onnxruntime"},
                           "x.toml")


def test_nested_unknown_key_and_wrong_type():
    with pytest.raises(SpecError, match="calibration.*unknown key 'sample'"):
        specs.from_mapping(specs.Recipe, {"name": "r", "kind": "int8-static", "calibration": {"sample": 3}}, "r.toml")
    with pytest.raises(SpecError, match="expected int"):
        specs.from_mapping(specs.Recipe, {"name": "r", "kind": "int8-static", "calibration": {"samples": "many"}},
                           "r.toml")
    with pytest.raises(SpecError, match="calibration.method 'magic'"):
        specs.from_mapping(specs.Recipe, {"name": "r", "kind": "int8-static", "calibration": {"method": "magic"}},
                           "r.toml")


def test_bad_values_rejected():
    with pytest.raises(SpecError, match="format 'tflight'"):
        specs.from_mapping(specs.Target, {"name": "x", "format": "tflight", "recipe": "none", "runtime": "litert"},
                           "x.toml")


def test_user_spec_dir(tmp_path, monkeypatch):
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "tflite-int8-pt.toml").write_text(
        'name = "tflite-int8-pt"\nformat = "tflite"\nrecipe = "int8-static"\nruntime = "litert"\n'
        '[tolerance]\nmin_cosine = 0.9\n')
    monkeypatch.setenv("EDGEKIT_SPECS", str(tmp_path))
    specs.all_targets.cache_clear()
    specs.all_recipes.cache_clear()
    try:
        assert specs.get_target("tflite-int8-pt").tolerance.min_cosine == 0.9
        (tmp_path / "targets" / "bad.toml").write_text('name = "bad"\nformat = "onnx"\nrecipe = "nope"\n'
                                                       'runtime = "onnxruntime"\n')
        specs.all_targets.cache_clear()
        with pytest.raises(SpecError, match="unknown recipe 'nope'"):
            specs.all_targets()
    finally:
        monkeypatch.delenv("EDGEKIT_SPECS")
        specs.all_targets.cache_clear()
        specs.all_recipes.cache_clear()


def test_unknown_target_did_you_mean():
    with pytest.raises(UnknownName, match="Did you mean 'tflite-int8'"):
        specs.get_target("tflite-int9")


def test_target_options_are_validated_by_the_backend_of_its_format():
    with pytest.raises(SpecError, match="unknown option 'shard_mb' for backend 'onnx'"):
        specs.from_mapping(specs.Target, {"name": "x", "format": "onnx", "recipe": "none", "runtime": "onnxruntime",
                                          "options": {"shard_mb": 4}}, "x.toml")
    with pytest.raises(SpecError, match="runtime 'litert' does not run format 'onnx'"):
        specs.from_mapping(specs.Target, {"name": "x", "format": "onnx", "recipe": "none", "runtime": "litert"},
                           "x.toml")


def test_default_targets_come_from_the_target_files():
    assert [t.name for t in specs.default_targets("run")] == ["onnx", "onnx-int8", "tflite", "tflite-int8"]
    assert len(specs.default_targets("fit")) == 10
    with pytest.raises(SpecError, match="default_for entry 'demo'"):
        specs.from_mapping(specs.Target, {"name": "x", "format": "onnx", "recipe": "none", "runtime": "onnxruntime",
                                          "default_for": ["demo"]}, "x.toml")
