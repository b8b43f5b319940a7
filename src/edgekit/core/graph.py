"""The conversion graph: formats are nodes, converters are registered edges.

A converter is a class named for its edge (``TfliteFromSavedModel``) that declares its
source and destination formats, what it needs (Python packages and the extra that installs
them, operating systems), which recipe kinds it can apply and its cost. The planner lists
every simple route from a source format to a target, ranks the usable ones by cost and says
why the others cannot be used; the executor (``convert.py``) walks them in order and falls
back to the next route when an edge fails.

A recipe is applied by the *last* edge of a route: either a converter that quantizes while
converting (TFLite converter) or a same-format transform edge (ONNX -> quantized ONNX).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .lazy import available
from .specs import Recipe, Target

REGISTRY: dict[str, type["Converter"]] = {}


@dataclass(frozen=True)
class Artifact:
    """A model at one node of the graph: a file/folder, or a live object (torch)."""

    format: str
    digest: str
    path: Path | None = None
    obj: Any = None


@dataclass
class ConvertContext:
    """What an edge may read: the target and recipe (if it is the last edge), the source, the data."""

    target: Target
    recipe: Recipe | None  # None for intermediate edges: they apply no recipe
    source: Any  # sources.Source
    data: Any = None  # data.Dataset (calibration split is used)
    notes: list = field(default_factory=list)  # one-line notes for the manifest
    device: Any = None  # the open device, for edges that run on it (``Converter.on_device``)


class Converter:
    src: ClassVar[str]
    dst: ClassVar[str]
    cost: ClassVar[float] = 1.0
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()  # (python module, extra)
    platforms: ClassVar[tuple[str, ...]] = ()  # sys.platform prefixes; empty = any
    recipes: ClassVar[frozenset[str]] = frozenset({"none"})
    calibration_methods: ClassVar[frozenset[str]] = frozenset({"minmax"})
    # the calibration settings besides the method this edge honours when set away from their defaults
    calibration_settings: ClassVar[frozenset[str]] = frozenset({"samples", "per_channel"})
    # True: applies a recipe's accuracy budget (keeps the most sensitive layers float until it is met)
    meets_budget: ClassVar[bool] = False
    io_dtypes: ClassVar[frozenset[str]] = frozenset({"float32"})
    tools: ClassVar[tuple[str, ...]] = ()  # distributions whose versions are recorded ("a|b": either name)
    revision: ClassVar[int] = 1  # bump to invalidate cached outputs of this edge
    # True: must run on the device that will run the artifact (an engine built for its GPU, tuning
    # by measuring there); it gets ``ctx.device`` and its cached outputs are keyed by that device.
    on_device: ClassVar[bool] = False
    # True: reads ``ctx.data`` even when its recipe needs no calibration (what it keeps at a higher
    # precision is found on the samples), so its cached output is keyed by the calibration data too
    uses_data: ClassVar[bool] = False
    # target options this edge reads (a target triple, a tuning budget): their values key its cached
    # output whatever the recipe, so targets differing only in these options never share a step
    target_options: ClassVar[tuple[str, ...]] = ()
    # True: a same-format step the planner appends to every route ending in its format when the target
    # asks for it (``wanted``): it adds to a finished artifact (metadata an app reads) and applies no recipe
    finishing: ClassVar[bool] = False
    # True: a same-format edge that applies a training recipe (``recipes``: its kinds) to the source
    # before any route is walked (core/prepare.py); the planner never puts it on a route
    prepares: ClassVar[bool] = False

    @classmethod
    def cost_for(cls, source) -> float:
        """This edge's cost for a route from ``source`` (the user's model: its format, size, inputs);
        an edge whose conversion time grows with the model may cost more on a large one, so that the
        planner tries a faster route first. Default: ``cost``."""
        return cls.cost

    @classmethod
    def wanted(cls, target: Target) -> bool:
        """Whether this finishing edge has something to do for ``target`` (default: it sets one of the
        edge's target options)."""
        return any(target.option(k) is not None for k in cls.target_options)

    def diagnose(self, artifact: Artifact, out_dir: Path, ctx: ConvertContext, sensitivity: int):
        """Where this edge's recipe loses accuracy on ``artifact`` (its input): a
        ``core.diagnosis.Diagnosis`` over ``ctx.data``'s calibration samples; ``sensitivity``: how many
        of the worst layers to re-measure with each alone kept float. Edges that cannot say raise."""
        from .errors import ConversionError

        raise ConversionError(self.name(), "cannot diagnose the layers of what it makes.",
                              "Diagnose a target whose route ends in a quantizing edge ('edgekit graph --to TARGET').")

    @classmethod
    def key_material(cls, ctx):
        """What else this edge's output depends on (JSON-able; keys its cached output), e.g. the shapes
        it fixes from the data. None: nothing."""
        return None

    def __init_subclass__(cls, register: bool = True, **kw):
        super().__init_subclass__(**kw)
        if register and "src" in cls.__dict__:
            REGISTRY[cls.__name__] = cls

    @classmethod
    def name(cls) -> str:
        return cls.__name__

    @classmethod
    def is_transform(cls) -> bool:
        return cls.src == cls.dst

    @classmethod
    def missing(cls) -> tuple[str, str] | None:
        """The first (module, extra) this edge needs that is not installed, or None."""
        return next(((m, x) for m, x in cls.requires if not available(m)), None)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this edge cannot run on this host, or None."""
        if cls.platforms and not sys.platform.startswith(cls.platforms):
            return f"runs only on {', '.join(cls.platforms)} (this is {sys.platform})"
        for module, extra in cls.requires:
            if not available(module):
                from .errors import install_hint

                return f"needs '{module}' ({install_hint(module, extra)[len('Install it with: '):]})"
        return None

    @classmethod
    def refuses(cls, recipe: Recipe, target: Target) -> str | None:
        """Why this edge cannot apply ``recipe`` for ``target`` as the last edge, or None."""
        if recipe.kind not in cls.recipes:
            return f"does not apply recipe kind '{recipe.kind}'"
        if recipe.kind == "int8-static" and recipe.calibration.method not in cls.calibration_methods:
            return f"has no '{recipe.calibration.method}' calibration (only {', '.join(sorted(cls.calibration_methods))})"
        if recipe.kind == "int8-static":
            unmet = sorted(set(recipe.calibration.choices()) - cls.calibration_settings - {"method", "percentile"})
            if unmet:
                return f"cannot set calibration {', '.join(unmet)}"
        if recipe.budget is not None and not cls.meets_budget:
            return "cannot keep layers float to meet an accuracy budget"
        if target.io_dtype not in cls.io_dtypes:
            return f"cannot give {target.io_dtype} inputs/outputs"
        return None

    @classmethod
    def refuses_options(cls, target: Target) -> str | None:
        """Why this edge, anywhere on a route, cannot honour ``target``'s options (one it would silently
        ignore, e.g. a shape specialisation only another route makes), or None."""
        return None

    @classmethod
    def versions(cls) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        out = {}
        for tool in cls.tools:  # "a|b": one tool under several distribution names, recorded as "a"
            dist = tool.split("|")[0]
            out[dist] = None
            for name in tool.split("|"):
                try:
                    out[dist] = version(name)
                    break
                except PackageNotFoundError:
                    pass
        return out

    def convert(self, artifact: Artifact, out_dir: Path, ctx: ConvertContext) -> Path:
        """Write the converted model into ``out_dir`` (empty, private) and return its path."""
        raise NotImplementedError

    # -- pre-flight: what this edge will do with each operator of the model (``edgekit inspect``).
    # ``recipe`` is the target's for the route's last edge and the 'none' recipe for the others (as
    # in conversion); ``facts`` is what the source format's operator lister found in the model.
    @classmethod
    def judge(cls, domain: str, op: str, target: Target, recipe: Recipe, facts: dict) -> list[tuple[str, str]]:
        """[(status, why)] for one operator (status: ok | float | fallback | fail); [] = no opinion."""
        return []

    @classmethod
    def preflight_notes(cls, facts: dict, target: Target, recipe: Recipe) -> list[str]:
        """Notes about the whole model, or about what this edge's check could not see."""
        return []


@dataclass
class Route:
    edges: tuple
    cost: float
    blocked: str | None = None

    @property
    def names(self) -> list[str]:
        return [e.name() for e in self.edges]

    @property
    def recipe_index(self) -> int:
        """The edge that applies the recipe: the last one that is not a finishing step."""
        return max((i for i, e in enumerate(self.edges) if not e.finishing), default=len(self.edges) - 1)

    @property
    def on_device(self) -> bool:
        """Some edge must run on the target device: the route is walked once per device."""
        return any(e.on_device for e in self.edges)

    def __str__(self) -> str:
        if not self.edges:
            return "(none)"
        fmt = [self.edges[0].src] + [e.dst for e in self.edges]
        return " -> ".join(fmt) + f"  via {', '.join(self.names)}"


@dataclass
class Plan:
    source_format: str
    target: Target
    routes: list[Route]  # usable ones first, by cost
    rejected_edges: dict[str, str]  # edge -> why it cannot be used at all

    @property
    def usable(self) -> list[Route]:
        return [r for r in self.routes if r.blocked is None]


def load_converters() -> dict[str, type[Converter]]:
    from ..backends import load_converters as import_backend_converters

    import_backend_converters()  # importing registers the edges; heavy imports stay lazy
    return REGISTRY


def plan(source_format: str, target: Target, registry: dict | None = None, source=None) -> Plan:
    """Every route from ``source_format`` to ``target``, usable ones first by cost (each edge's
    ``cost_for(source)`` when the source model is given, else its ``cost``)."""
    registry = registry if registry is not None else load_converters()
    recipe = target.recipe_spec
    finishers = [e for e in registry.values() if e.finishing and e.dst == target.format and e.wanted(target)]
    edges = [e for e in registry.values() if not e.finishing]
    rejected = {e.name(): r for e in edges + finishers if (r := e.unavailable())}
    routes: list[Route] = []

    def walk(fmt: str, path: list, seen: set):
        for edge in edges:
            if edge.src != fmt or edge.prepares:
                continue
            if edge.is_transform():
                if edge.dst == target.format and recipe.kind != "none":
                    routes.append(_route(path + [edge], recipe, target, rejected, source))
                continue
            if edge.dst in seen:
                continue
            if edge.dst == target.format:
                routes.append(_route(path + [edge], recipe, target, rejected, source))
            walk(edge.dst, path + [edge], seen | {edge.dst})

    if source_format == target.format and recipe.kind == "none":
        routes.append(Route((), 0.0))
    walk(source_format, [], {source_format})
    for fin in finishers:  # every route then adds what the target asks of its finished artifact
        routes[:] = [_route(list(r.edges) + [fin], recipe, target, rejected, source) for r in routes]
    routes.sort(key=lambda r: (r.blocked is not None, r.cost, len(r.edges)))
    return Plan(source_format, target, routes, rejected)


def _route(edges: list, recipe: Recipe, target: Target, rejected: dict, source=None) -> Route:
    blocked = None
    for e in edges:
        if e.name() in rejected:
            blocked = f"{e.name()} {rejected[e.name()]}"
            break
    if blocked is None:
        blocked = next((f"{e.name()} {r}" for e in edges if (r := e.refuses_options(target))), None)
    if blocked is None:
        last = next((e for e in reversed(edges) if not e.finishing), edges[-1])
        reason = last.refuses(recipe, target)
        if reason:
            blocked = f"{last.name()} {reason}"
    return Route(tuple(edges), sum(e.cost if source is None else e.cost_for(source) for e in edges), blocked)
