"""Targets and recipes: declarative TOML files loaded into frozen dataclasses.

Recipes that any backend may apply live in ``edgekit/core/recipes``; each backend's folder holds
its ``targets/`` (and may add ``recipes/``); a user can add more with ``$EDGEKIT_SPECS=dir1:dir2``
(each holding ``targets/`` and/or ``recipes/``). Unknown keys, wrong types and unknown values are
errors; a target's ``[options]`` table is validated by the backend of its format.
"""
from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import SpecError, UnknownName, did_you_mean
from .training import TRAIN_KINDS, Training

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPE_KINDS = ("none", "fp16", "int8-dynamic", "int8-static", "optimize", "palettize")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_USES = ("run", "fit")  # commands that take a target when the user names none


@dataclass(frozen=True)
class Calibration:
    method: str = "minmax"
    samples: int = 200
    per_channel: bool = True  # weights: one scale per output channel (else one per tensor)
    percentile: float = 99.99  # method "percentile": the share of |activation| values the range keeps
    symmetric: bool = False  # activations: a range symmetric about 0 (zero point 0) instead of min..max

    def __post_init__(self):
        _one_of("calibration.method", self.method, CALIBRATION_METHODS)
        if self.samples < 1:
            raise SpecError(f"calibration.samples must be >= 1, got {self.samples}.")
        if not 50.0 < self.percentile <= 100.0:
            raise SpecError(f"calibration.percentile must be in (50, 100], got {self.percentile}.")

    def choices(self) -> dict:
        """The fields that differ from the defaults (what an edge must honour)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def label(self) -> str:
        """The choices in words: "minmax, per-channel, asymmetric"."""
        words = [self.method + (f" {self.percentile:g}%" if self.method == "percentile" else ""),
                 "per-channel" if self.per_channel else "per-tensor", "symmetric" if self.symmetric else "asymmetric"]
        return ", ".join(words)


@dataclass(frozen=True)
class Budget:
    """What an accuracy-aware recipe must keep, judged on samples the calibration did not use: the
    quantized model's output cosine to the float one, and/or the task metric's drop in points."""

    min_cosine: float | None = None
    max_task_drop: float | None = None

    def __post_init__(self):
        if self.min_cosine is None and self.max_task_drop is None:
            raise SpecError("a budget needs min_cosine or max_task_drop.", "Example: [budget] min_cosine = 0.99")
        if self.min_cosine is not None and not 0.0 < self.min_cosine <= 1.0:
            raise SpecError(f"budget.min_cosine must be in (0, 1], got {self.min_cosine}.")


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str
    description: str = ""
    calibration: Calibration | None = None
    weights_per_channel: bool = True  # dynamic int8: one weight scale per output channel
    quantize_ops: tuple[str, ...] = ()  # static int8: only these op types (empty: every op the quantizer can)
    # ONNX/TFLite tensors that must stay float (e.g. an additive attention mask).
    keep_float_ops: tuple[str, ...] = ()
    # accuracy-aware: keep the most sensitive layers float (or at int16) until this is met
    budget: Budget | None = None
    training: Training | None = None  # training recipes (core/training.py): how the model is changed

    def __post_init__(self):
        _one_of("recipe kind", self.kind, RECIPE_KINDS + TRAIN_KINDS)
        if self.kind == "int8-static" and self.calibration is None:
            object.__setattr__(self, "calibration", Calibration())
        if self.kind in TRAIN_KINDS and self.training is None:
            object.__setattr__(self, "training", Training())
        if self.budget is not None and self.kind not in ("int8-static",) + TRAIN_KINDS:
            raise SpecError(f"recipe '{self.name}': a budget applies to int8-static and training recipes only.")
        if self.training is not None and self.kind not in TRAIN_KINDS:
            raise SpecError(f"recipe '{self.name}': [training] applies to the kinds {', '.join(TRAIN_KINDS)}.")

    @property
    def needs_calibration(self) -> bool:
        return self.kind == "int8-static"


@dataclass(frozen=True)
class Tolerance:
    """What parity must reach for a target to pass."""

    min_cosine: float = 0.999
    max_abs: float | None = None
    min_top1_agreement: float | None = None
    max_task_drop: float | None = None  # in points (percent) of the task metric
    # the proof at conversion time (a few calibration samples): below this, the artifact is refused.
    # Loose by design (held-out parity judges the rest): twice the error ``min_cosine`` allows,
    # within [0.9, 0.99] (0.98 -> 0.96, 0.9999 -> 0.99)
    smoke_min_cosine: float | None = None

    @property
    def smoke_cosine(self) -> float:
        if self.smoke_min_cosine is not None:
            return self.smoke_min_cosine
        return min(0.99, max(0.9, 1.0 - 2.0 * (1.0 - self.min_cosine)))


@dataclass(frozen=True)
class Target:
    name: str
    format: str
    recipe: str
    runtime: str
    description: str = ""
    io_dtype: str = "float32"  # float32 | int8: the artifact's input/output tensor types
    extension: str = ""
    # the machine (``uname -m``: "aarch64") a cross-built artifact runs on; "" = wherever it was built.
    # It is proven on a device of that machine (this host only if it is one), never loaded elsewhere.
    machine: str = ""
    tolerance: Tolerance = field(default_factory=Tolerance)
    default_for: tuple[str, ...] = ()  # commands (run, fit) that use this target when given none
    options: dict = field(default_factory=dict, hash=False)  # free table, validated by the format's backend
    # changes to the recipe's calibration (a target file's [calibration] table, or --calibration KEY=VALUE)
    calibration: dict = field(default_factory=dict, hash=False)
    prepare: tuple[str, ...] = ()  # training recipes applied to the source first (TARGET@RECIPE, core/training.py)

    def __post_init__(self):
        from ..backends import formats, runtimes

        _one_of("format", self.format, tuple(formats()))
        _one_of("runtime", self.runtime, tuple(runtimes()))
        _one_of("io_dtype", self.io_dtype, ("float32", "int8"))
        for use in self.default_for:
            _one_of("default_for entry", use, DEFAULT_USES)
        if self.runtime not in _runtime_formats(self.format):
            raise SpecError(f"runtime '{self.runtime}' does not run format '{self.format}'.",
                            f"Use one of: {', '.join(_runtime_formats(self.format)) or 'none (no runtime runs it)'}.")
        from ..backends import backend_of_format

        backend_of_format(self.format).validate_options(self.name, self.options)

    def option(self, key: str, default=None):
        return self.options.get(key, default)

    def foreign_to(self, device=None) -> str | None:
        """Why this target's artifacts cannot run on ``device`` (default: this host), or None."""
        if not self.machine:
            return None
        if device is None:
            import platform

            arch, where = platform.machine(), "this host"
        else:
            arch, where = device.describe().arch, f"device '{device.name}'"
        if arch == self.machine:
            return None
        return f"target '{self.name}' is built for {self.machine}; {where} is {arch}"

    @property
    def recipe_spec(self) -> Recipe:
        recipe = get_recipe(self.recipe)
        if not self.calibration:
            return recipe
        if recipe.calibration is None:
            raise SpecError(f"target '{self.name}': recipe '{recipe.name}' takes no calibration, so "
                            f"{', '.join(self.calibration)} cannot be set.", "Use a static int8 target.")
        try:
            cal = dataclasses.replace(recipe.calibration, **self.calibration)
        except TypeError:
            known = [f.name for f in dataclasses.fields(Calibration)]
            bad = sorted(set(self.calibration) - set(known))
            raise SpecError(f"calibration has no setting {', '.join(bad)}.", f"Settings: {', '.join(known)}.") from None
        return dataclasses.replace(recipe, calibration=cal)


def _runtime_formats(fmt: str) -> list[str]:
    from ..backends import runtimes

    return [r.name for r in runtimes().values() if fmt in r.formats]


def _one_of(what: str, value, allowed):
    if value not in allowed:
        raise SpecError(f"Unknown {what} '{value}'.", f"Use one of: {', '.join(allowed)}.")


def from_mapping(cls, data: dict, where: str):
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a table, got {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        hint = did_you_mean(unknown[0], names)
        raise SpecError(f"{where}: unknown key '{unknown[0]}'.", hint or f"Known keys: {', '.join(sorted(names))}.")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SpecError(f"{where}: {e}.") from None
    except SpecError as e:
        raise SpecError(f"{where}: {e.message}", e.hint) from None


def _coerce(tp, value, where):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", ())):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where) if value is not None else None
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list.")
        return tuple(_coerce(args[0], v, where) for v in value)
    if tp is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{where}: expected a table.")
        return dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and not isinstance(value, tp) or (tp in (int, float) and isinstance(value, bool)):
        raise SpecError(f"{where}: expected {tp.__name__}, got {type(value).__name__} ({value!r}).")
    return value


def _spec_dirs(kind: str) -> list[Path]:
    from ..backends import spec_dirs

    own = Path(__file__).parent / kind
    return ([own] if own.is_dir() else []) + spec_dirs(kind)


def _load_dir(kind: str, cls) -> dict:
    out = {}
    for d in _spec_dirs(kind):
        for path in sorted(d.glob("*.toml")):
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as e:
                raise SpecError(f"{path}: not valid TOML ({e}).") from None
            spec = from_mapping(cls, data, path.name)
            if spec.name != path.stem:
                raise SpecError(f"{path}: name '{spec.name}' must match the file name '{path.stem}'.")
            out[spec.name] = spec
    return out


@lru_cache(maxsize=None)
def all_recipes() -> dict[str, Recipe]:
    return _load_dir("recipes", Recipe)


@lru_cache(maxsize=None)
def all_targets() -> dict[str, Target]:
    targets = _load_dir("targets", Target)
    for t in targets.values():
        if t.recipe not in all_recipes():
            raise SpecError(f"target '{t.name}' names unknown recipe '{t.recipe}'.", did_you_mean(t.recipe, all_recipes()))
        if all_recipes()[t.recipe].kind in TRAIN_KINDS:
            raise SpecError(f"target '{t.name}': '{t.recipe}' is a training recipe.", "Name it as TARGET@RECIPE.")
    return targets


def get_target(name: str) -> Target:
    """A target by name; ``TARGET@RECIPE[+RECIPE]`` is the target with training recipes applied first."""
    from .training import split_name, with_prepare

    targets = all_targets()
    base, chain = split_name(name)
    if base not in targets:
        raise UnknownName(f"Unknown target '{base}'.", did_you_mean(base, targets) or "Run 'edgekit targets' to list them.")
    return with_prepare(targets[base], chain)


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise UnknownName(f"Unknown recipe '{name}'.", did_you_mean(name, recipes) or f"Known: {', '.join(recipes)}.")
    return recipes[name]


def default_targets(use: str) -> list[Target]:
    """The targets a command (run, fit) takes when the user names none, by family then name."""
    return sorted((t for t in all_targets().values() if use in t.default_for), key=target_order)


def target_order(t: Target) -> tuple:
    from ..backends import get_format

    return (get_format(t.format).backend, t.name)


def parse_target_list(text: str) -> list[Target]:
    return [get_target(n.strip()) for n in text.split(",") if n.strip()]


def with_options(targets: list[Target], overrides: list[str]) -> list[Target]:
    """The targets with ``NAME=VALUE`` overrides of their ``[options]`` (the command line's
    ``--option``), typed as the backend of each target's format declares them. An option goes to
    the given targets that set it already (a tuning budget to the tuned targets only), else to those
    whose backend declares it; it must go to at least one."""
    from dataclasses import replace

    from ..backends import backend_of_format

    out = list(targets)
    for item in overrides:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SpecError(f"--option '{item}' is not NAME=VALUE.", "Example: --option trials=64")
        known = {}
        for i, t in enumerate(out):
            types = backend_of_format(t.format).options
            if name in types:
                known[i] = types[name]
        if not known:
            names = {n for t in out for n in backend_of_format(t.format).options}
            raise SpecError(f"--option '{name}' is no option of the backends of {', '.join(t.name for t in out)}.",
                            did_you_mean(name, names) or f"Their options: {', '.join(sorted(names)) or 'none'}.")
        already = {i: tname for i, tname in known.items() if name in out[i].options}
        for i, tname in (already or known).items():
            out[i] = replace(out[i], options={**out[i].options, name: _option_value(name, text.strip(), tname)})
    return out


def with_calibration(targets: list[Target], items: list[str]) -> list[Target]:
    """The targets with ``KEY=VALUE`` changes to their recipe's calibration (``--calibration``), on those
    whose recipe calibrates; each changed target is renamed ``target@choices`` (its records and output
    folder must not be taken for the default's)."""
    if not items:
        return list(targets)
    types = {f.name: f.type for f in dataclasses.fields(Calibration)}
    change = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            raise SpecError(f"--calibration '{item}' is not KEY=VALUE with KEY one of {', '.join(types)}.",
                            "Example: --calibration method=entropy")
        change[name] = _option_value(f"calibration.{name}", text.strip(), {"int": "int", "float": "float",
                                                                          "bool": "bool"}.get(types[name], "str"))
    out, hit = [], False
    for t in targets:
        if not t.recipe_spec.needs_calibration:
            out.append(t)
            continue
        hit = True
        merged = {**t.calibration, **change}
        cal = dataclasses.replace(get_recipe(t.recipe).calibration or Calibration(), **merged)  # validates
        tag = "+".join(_choice_tag(k, getattr(cal, k)) for k in change)
        out.append(dataclasses.replace(t, name=f"{t.name}@{tag}", calibration=merged))
    if not hit:
        raise SpecError("--calibration applies to static int8 targets, and none was given.",
                        "Add a target whose recipe is int8-static ('edgekit targets' lists them).")
    return out


def _choice_tag(key: str, value) -> str:
    words = {"per_channel": ("per-channel", "per-tensor"), "symmetric": ("symmetric", "asymmetric")}
    if key in words:
        return words[key][0 if value else 1]
    if key == "method":
        return str(value)
    return f"{key.replace('_', '-')}{value:g}" if isinstance(value, float) else f"{key}{value}"


def _option_value(name: str, text: str, tname: str):
    try:
        if tname == "int":
            return int(text)
        if tname == "float":
            return float(text)
        if tname == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
    except ValueError:
        raise SpecError(f"--option {name}={text}: the value must be {tname}.") from None
    return text
