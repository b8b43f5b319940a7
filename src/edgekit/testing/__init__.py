"""edgekit.testing: the user's own tests, run on the exact device (a pytest plugin, loaded with
edgekit's ``pytest11`` entry point).

    import pytest
    from edgekit.testing import assert_latency, assert_parity

    @pytest.mark.edge(targets=["tflite-int8"], devices=["local", "test-host"])
    def test_on_device(edge_artifact, edge_session):
        art = edge_artifact("examples/digits_cnn.py:build", data="digits")
        assert_parity(art, reference="examples/digits_cnn.py:build", data="digits")
        assert_latency(edge_session(art).bench(), p90_ms=5)

Modules: ``plugin`` (options, marker, fixtures), ``assertions`` (assert_parity, assert_latency,
assert_golden), ``golden`` (golden files), ``artifact`` (EdgeArtifact, EdgeSession, LatencyStats),
``harness`` (devices, caches), ``records`` (the results JSONL). Importing this package does not
import pytest.
"""
from ..core.deploy import load_bundle
from .artifact import EdgeArtifact, EdgeSession, LatencyStats
from .assertions import assert_golden, assert_latency, assert_parity
from .golden import load_golden, record_golden

__all__ = ["assert_parity", "assert_latency", "assert_golden", "record_golden", "load_golden", "load_bundle",
           "EdgeArtifact", "EdgeSession", "LatencyStats"]
