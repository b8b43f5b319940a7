import numpy as np
import pytest

from edgekit.core import parity
from edgekit.core.specs import Tolerance

rng = np.random.default_rng(1)
REF = rng.standard_normal((40, 10)).astype(np.float32)
OUT = (REF + 0.05 * rng.standard_normal(REF.shape)).astype(np.float32)


def test_max_and_mean_abs_match_numpy():
    d = np.abs(REF.astype(np.float64) - OUT)
    assert parity.max_abs(REF, OUT) == pytest.approx(d.max())
    assert parity.mean_abs(REF, OUT) == pytest.approx(d.mean())


def test_rel_l2_matches_numpy():
    expect = np.sqrt(((REF.astype(np.float64) - OUT) ** 2).sum() / (REF.astype(np.float64) ** 2).sum())
    assert parity.rel_l2(REF, OUT) == pytest.approx(expect)


def test_cosine_per_sample_matches_loop():
    got = parity.cosine_per_sample(REF, OUT)
    for i in range(len(REF)):
        a, b = REF[i].astype(np.float64), OUT[i].astype(np.float64)
        assert got[i] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert parity.cosine_per_sample(REF, -REF) == pytest.approx(-np.ones(len(REF)))
    zeros = np.zeros((2, 3))
    assert parity.cosine_per_sample(zeros, zeros) == pytest.approx([1.0, 1.0])


def test_topk_agreement():
    ref = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])
    out = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    assert parity.topk_agreement(ref, out, 1) == pytest.approx(2 / 3)
    assert parity.topk_agreement(ref, out, 2) == pytest.approx(1.0)


def test_accuracy_and_task_delta():
    labels = np.argmax(REF, axis=1)
    labels[:4] = (labels[:4] + 1) % 10  # source is wrong on 4 of 40
    res = parity.compare({"logits": REF}, {"logits": REF.copy()}, Tolerance(), labels, "classification")
    assert res.task_source == pytest.approx(36 / 40)
    assert res.task_delta_points == pytest.approx(0.0)
    worse = REF.copy()
    worse[10:14] = worse[10:14][:, ::-1]  # flips 4 predictions
    res = parity.compare({"logits": REF}, {"logits": worse}, Tolerance(min_cosine=-1, max_task_drop=5.0), labels,
                         "classification")
    assert res.task_delta_points == pytest.approx(-10.0)
    assert not res.passed and "accuracy fell 10.00 points" in res.failures[0]


def test_compare_names_worst_output_and_checks_tolerance():
    ref = {"a": REF, "b": REF}
    out = {"a": REF.copy(), "b": OUT}
    res = parity.compare(ref, out, Tolerance(min_cosine=0.9999))
    assert res.worst_output == "b"
    assert not res.passed
    assert any(f.startswith("b: cosine") for f in res.failures)
    assert parity.compare(ref, out, Tolerance(min_cosine=0.9)).passed
    assert not parity.compare(ref, out, Tolerance(min_cosine=0.9, max_abs=1e-6)).passed


def test_outputs_matched_by_decorated_name_then_position():
    res = parity.compare({"y": REF}, {"Identity:0": REF}, Tolerance())
    assert res.passed and res.outputs[0].max_abs == 0
    res = parity.compare({"y": REF}, {"y:0": OUT}, Tolerance(min_cosine=0))
    assert res.outputs[0].max_abs > 0
