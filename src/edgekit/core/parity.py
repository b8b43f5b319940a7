"""Parity: a target's outputs against the source model's outputs on the same held-out inputs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .specs import Tolerance


def max_abs(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.max(np.abs(ref.astype(np.float64) - out.astype(np.float64)))) if ref.size else 0.0


def mean_abs(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.mean(np.abs(ref.astype(np.float64) - out.astype(np.float64)))) if ref.size else 0.0


def rel_l2(ref: np.ndarray, out: np.ndarray) -> float:
    r, o = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    denom = np.linalg.norm(r)
    return float(np.linalg.norm(r - o) / denom) if denom > 0 else float(np.linalg.norm(o))


def cosine_per_sample(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened output (samples on axis 0)."""
    r = ref.astype(np.float64).reshape(len(ref), -1)
    o = out.astype(np.float64).reshape(len(out), -1)
    num = (r * o).sum(1)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(o, axis=1)
    both_zero = (np.linalg.norm(r, axis=1) == 0) & (np.linalg.norm(o, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    return np.where(both_zero, 1.0, cos)


def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose reference top-1 class is among the target's top-k."""
    ref_top = np.argmax(ref, axis=-1)
    if k == 1:
        return float(np.mean(ref_top == np.argmax(out, axis=-1)))
    top = np.argsort(-out, axis=-1)[..., :k]
    return float(np.mean(np.any(top == ref_top[..., None], axis=-1)))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


@dataclass
class OutputParity:
    name: str
    max_abs: float
    mean_abs: float
    rel_l2: float
    cosine_mean: float
    cosine_min: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    ref_max_abs: float | None = None  # the source output's largest |value|: the scale max_abs is read against


@dataclass
class ParityResult:
    outputs: list[OutputParity]
    n: int
    passed: bool
    failures: list[str] = field(default_factory=list)
    worst_output: str = ""
    task_metric: str | None = None
    task_value: float | None = None
    task_source: float | None = None
    task_delta_points: float | None = None
    synthetic: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def worst(self) -> OutputParity:
        return next(o for o in self.outputs if o.name == self.worst_output)


def _is_classifier(a: np.ndarray, task: str) -> bool:
    return task == "classification" and a.ndim == 2 and a.shape[1] > 1


def compare(reference: dict, outputs: dict, tolerance: Tolerance, labels=None, task: str = "generic",
            synthetic: bool = False) -> ParityResult:
    """Metrics per output (matched by name, else by position), pass/fail against ``tolerance``."""
    pairs = _match(reference, outputs)
    results = []
    for name, ref, out in pairs:
        if ref.shape != out.shape and ref.size == out.size:
            out = out.reshape(ref.shape)
        if ref.shape != out.shape:
            raise ValueError(f"output '{name}' has shape {out.shape}, the source gives {ref.shape}")
        cos = cosine_per_sample(ref, out)
        scale = float(np.max(np.abs(ref.astype(np.float64)))) if ref.size else 0.0
        op = OutputParity(name, max_abs(ref, out), mean_abs(ref, out), rel_l2(ref, out), float(cos.mean()),
                          float(cos.min()), ref_max_abs=scale)
        if _is_classifier(ref, task):
            op.top1_agreement = topk_agreement(ref, out, 1)
            op.top5_agreement = topk_agreement(ref, out, min(5, ref.shape[1]))
        results.append(op)
    worst = min(results, key=lambda o: o.cosine_mean)
    res = ParityResult(results, len(pairs[0][1]), True, worst_output=worst.name, synthetic=synthetic)
    first_name, first_ref, first_out = pairs[0]
    if labels is not None and _is_classifier(first_ref, task):
        res.task_metric = "accuracy"
        res.task_source = accuracy(first_ref, labels)
        res.task_value = accuracy(_match_one(outputs, first_name, 0), labels)
        res.task_delta_points = 100.0 * (res.task_value - res.task_source)
    res.failures = _check(res, tolerance)
    res.passed = not res.failures
    return res


def _match(reference: dict, outputs: dict):
    pairs = []
    for i, (name, ref) in enumerate(reference.items()):
        pairs.append((name, ref, _match_one(outputs, name, i)))
    return pairs


def _match_one(outputs: dict, name: str, index: int):
    if name in outputs:
        return outputs[name]
    for k, v in outputs.items():  # converters decorate names (``Identity:0``, ``output_0``)
        if k.split(":")[0] == name:
            return v
    return list(outputs.values())[index]


def _check(res: ParityResult, tol: Tolerance) -> list[str]:
    fails = []
    for o in res.outputs:
        if o.cosine_mean < tol.min_cosine:
            fails.append(f"{o.name}: cosine {o.cosine_mean:.5f} < {tol.min_cosine}")
        if tol.max_abs is not None and o.max_abs > tol.max_abs:
            fails.append(f"{o.name}: max abs error {o.max_abs:.3g} > {tol.max_abs:g}")
        if tol.min_top1_agreement is not None and o.top1_agreement is not None \
                and o.top1_agreement < tol.min_top1_agreement:
            fails.append(f"{o.name}: top-1 agreement {o.top1_agreement:.4f} < {tol.min_top1_agreement}")
    if tol.max_task_drop is not None and res.task_delta_points is not None \
            and -res.task_delta_points > tol.max_task_drop:
        fails.append(f"{res.task_metric} fell {-res.task_delta_points:.2f} points (budget {tol.max_task_drop})")
    return fails
