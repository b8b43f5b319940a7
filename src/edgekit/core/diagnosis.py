"""Where a quantized model loses accuracy, layer by layer: what ``edgekit diagnose`` reports.

A backend's quantizing edge fills a ``Diagnosis``: the float model and its quantized version run on
the same samples, every intermediate tensor both expose is compared, and for each layer the error of
its inputs and of its output are kept (relative L2 error against the float model's tensor), so that
the error a layer *adds* ranks it. The worst layers are then re-measured with each alone kept float
(``sensitivity``: the output cosine that buys back). Generic: no format or runtime is named here.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LayerError:
    name: str  # the layer (node) as the quantized format names it
    op: str
    order: int  # position in the graph's execution order
    error_in: float  # relative error of its inputs against the float model (what earlier layers lost)
    error_out: float  # of its output
    quantized: bool = True  # the quantizer gave it integer kernels or int8 inputs
    # the final outputs' cosine to the float model when this layer alone stays float (None: not measured)
    cosine_alone_float: float | None = None

    @property
    def added(self) -> float:
        return max(0.0, self.error_out - self.error_in)


@dataclass(frozen=True)
class Diagnosis:
    model: str
    target: str
    edge: str  # the edge that quantized
    recipe: str
    samples: int  # calibration samples both models ran on
    cosine: float  # the quantized model's worst output cosine to the float model on them
    tolerance: float  # the per-tensor relative error that counts as "crossed"
    layers: tuple[LayerError, ...]  # in graph order
    notes: tuple[str, ...] = ()
    calibration: str = ""  # the calibration choices in words
    never_quantize: tuple[str, ...] = field(default_factory=tuple)  # tensors found that must stay float, and why

    def ranked(self) -> list[LayerError]:
        """Layers by the error each adds, worst first."""
        return sorted(self.layers, key=lambda layer: (-layer.added, layer.order))

    def first_crossing(self) -> LayerError | None:
        """The first layer (in graph order) whose output error crosses the tolerance."""
        return next((layer for layer in self.layers if layer.error_out > self.tolerance), None)

    def sensitive(self) -> list[LayerError]:
        """Layers measured alone-float, by the cosine that buys back, best first."""
        got = [layer for layer in self.layers if layer.cosine_alone_float is not None]
        return sorted(got, key=lambda layer: -layer.cosine_alone_float)

    def to_json(self) -> dict:
        out = asdict(self)
        out["layers"] = [dict(asdict(layer), added=layer.added) for layer in self.layers]
        first = self.first_crossing()
        out["first_crossing"] = first.name if first else None
        out["ranked"] = [layer.name for layer in self.ranked()[:20]]
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Diagnosis":
        layers = tuple(LayerError(**{k: v for k, v in layer.items() if k != "added"}) for layer in data["layers"])
        keep = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "layers"}
        for k in ("notes", "never_quantize"):
            keep[k] = tuple(keep.get(k, ()))
        return cls(layers=layers, **keep)

    def save(self, path: Path) -> None:
        from .artifacts import write_json

        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Diagnosis":
        return cls.from_json(json.loads(Path(path).read_text()))


def table_rows(d: Diagnosis, top: int = 12) -> list[tuple]:
    """The worst ``top`` layers: (rank, layer, op, error in, error out, added, cosine alone float)."""
    rows = [("#", "layer", "op", "err in", "err out", "added", "cos if float")]
    for i, layer in enumerate(d.ranked()[:top], 1):
        alone = "" if layer.cosine_alone_float is None else f"{layer.cosine_alone_float:.5f}"
        rows.append((str(i), layer.name, layer.op, f"{layer.error_in:.3f}", f"{layer.error_out:.3f}",
                     f"{layer.added:.3f}", alone))
    return rows


def summary(d: Diagnosis) -> list[str]:
    """The sentences that go above the table."""
    first = d.first_crossing()
    ranked = d.ranked()
    lines = [f"{d.target} ({d.edge}, {d.calibration or d.recipe}): output cosine {d.cosine:.5f} to the float model "
             f"on {d.samples} calibration samples; {len(d.layers)} layers compared"]
    if ranked and ranked[0].added > 0:
        lines.append(f"adds the most error: {ranked[0].name} ({ranked[0].op}, {ranked[0].error_in:.3f} -> "
                     f"{ranked[0].error_out:.3f})")
    lines.append(f"first layer past the tolerance ({d.tolerance:.3f} relative error): "
                 + (f"{first.name} ({first.op}, layer {first.order + 1} of {len(d.layers)})" if first else "none"))
    best = d.sensitive()
    if best:
        lines.append(f"most sensitive (cosine when it alone stays float): {best[0].name} "
                     f"{best[0].cosine_alone_float:.5f} (all int8: {d.cosine:.5f})")
    lines += [f"must stay float: {n}" for n in d.never_quantize]
    return lines + list(d.notes)
