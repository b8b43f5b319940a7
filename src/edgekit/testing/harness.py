"""The state of one test session: the devices (each opened and probed once, leased per test, its
runner worker kept between tests), the sources, data sets and reference outputs already computed,
the conversions already done, and the records written. pytest-free: the plugin drives it.
"""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DeviceError, RunnerError
from ..core.pipeline import BenchOptions


@dataclass
class Options:
    devices: list = field(default_factory=lambda: ["local"])
    targets: list = field(default_factory=list)  # empty: the tests' own (markers), else none
    devices_given: bool = False  # --edge-device was passed (it then narrows the markers' devices)
    strict: bool = False  # an unreachable device fails its tests instead of skipping them
    device_wait: float = 300.0
    results: Path | None = None  # the results JSONL (None: no records written)
    out: Path = Path("edgekit-results/artifacts")
    bench: BenchOptions = field(default_factory=BenchOptions)


class DeviceSlot:
    """One device of the session. ``open()`` connects and probes once; a device that cannot be
    reached keeps its error, and every later test of it is told the same reason at once."""

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name
        self.device = None
        self.error: DeviceError | None = None
        self._probe: dict | None = None  # what the runner reported of the machine, once it ran
        self._session = None
        self._loaded: tuple | None = None
        self.load_info: dict | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def emulated(self) -> bool:
        return bool(self.device.emulated) if self.device is not None else self.spec.emulated

    @property
    def labels(self) -> dict:
        return dict(getattr(self.device, "labels", None) or self.spec.labels)

    def __repr__(self) -> str:
        return f"<edge device {self.name} ({self.kind}{', emulated' if self.emulated else ''})>"

    def open(self):
        if self.error is not None:
            raise self.error
        if self.device is None:
            from ..devices.inventory import open_device

            try:
                device = open_device(self.spec)
                device.describe()  # connects: an unreachable device says so now
            except DeviceError as e:
                self.error = e
                raise
            self.device = device
        return self.device

    @property
    def probe(self) -> dict:
        """The machine as the runner sees it: OS, arch, CPU, memory, Python, runtime versions."""
        self.runner()
        return self._probe

    # -- the runner worker, kept between tests (restarted after a crash)
    def runner(self):
        from ..core.session import RunnerSession

        if self._session is None:
            self._session = RunnerSession(self.open())
            self._probe = self._session.env()
        return self._session

    def record(self) -> dict:
        """The device as records name it (its probe when the runner has run there; never starts it)."""
        from ..core.pipeline import device_record

        if self.device is None:
            return {"name": self.name, "kind": self.kind, "emulated": self.emulated, "labels": self.labels}
        return device_record(self.device, self._probe or {})

    def _guard(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except RunnerError:
            self.drop_runner()
            raise

    def load(self, path: Path, runtime: str, threads: int = 1) -> dict:
        key = (str(path), runtime, threads)
        if self._loaded != key:
            self.load_info = self._guard(lambda: self.runner().load(Path(path), runtime, threads=threads))
            self._loaded = key
        return self.load_info

    def infer(self, arrays: dict, stacked=()) -> dict:
        return self._guard(lambda: self.runner().infer(arrays, stacked))

    def bench(self, arrays: dict, stacked=(), **params) -> dict:
        return self._guard(lambda: self.runner().bench(arrays, stacked, **params))

    def drop_runner(self) -> None:
        if self._session is not None:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001  a dead worker: nothing more to close
                pass
        self._session, self._loaded, self.load_info = None, None, None

    def close(self) -> None:
        self.drop_runner()
        if self.device is not None:
            self.device.close()
            self.device = None


class Harness:
    """One test session's devices, caches and records."""

    def __init__(self, options: Options | None = None):
        from .records import RecordLog

        self.options = options or Options()
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.slots: dict[str, DeviceSlot] = {}
        self._held: dict[str, int] = {}
        self._sources: dict = {}
        self._data: dict = {}
        self._refs: dict = {}
        self._converted: dict = {}
        self.log = RecordLog(self.options.results, self.run_id)
        self.current_test: str | None = None

    def slot(self, name: str) -> DeviceSlot:
        if name not in self.slots:
            from ..devices.inventory import get_spec

            self.slots[name] = DeviceSlot(get_spec(name))
        return self.slots[name]

    @contextmanager
    def hold(self, name: str):
        """The device leased (re-entrant within this process) and open; yields its slot."""
        from ..devices.lease import lease

        slot = self.slot(name)
        if self._held.get(name):  # this process holds it already (a fixture, then an assertion)
            self._held[name] += 1
            try:
                yield slot
            finally:
                self._held[name] -= 1
            return
        with lease(name, self.options.device_wait):
            self._held[name] = 1
            try:
                slot.open()
                yield slot
            finally:
                self._held.pop(name, None)

    # -- what tests share: sources, data, reference outputs, conversions
    def source(self, spec):
        from ..core.sources import Source, load_source

        if isinstance(spec, Source):
            return spec
        key = str(spec)
        if key not in self._sources:
            self._sources[key] = load_source(key)
        return self._sources[key]

    def dataset(self, spec, source=None):
        from ..core.data import Dataset, load_data

        inputs = source.inputs if source is not None else None
        if isinstance(spec, Dataset):
            return spec.check_against(inputs) if inputs else spec
        key = (str(spec), source.digest if source is not None else None)
        if key not in self._data:
            ds = load_data(str(spec), inputs)
            self._data[key] = ds.check_against(inputs) if inputs else ds
        return self._data[key]

    def reference(self, source, dataset) -> tuple[dict, str]:
        """The source's outputs on the data's held-out inputs (computed once), and how it ran."""
        from ..core.reference import reference_for
        from ..devices import LocalDevice

        key = (source.digest, dataset.digest())
        if key not in self._refs:
            ref = reference_for(source, LocalDevice)
            try:
                self._refs[key] = (ref.outputs(dataset.eval, dataset.stacked), getattr(ref, "label", "source"))
            finally:
                ref.close()
        return self._refs[key]

    def convert(self, source, target, dataset, slot: DeviceSlot):
        """``target`` from ``source`` through the conversion cache (on ``slot``'s device when a step
        of the route must run there)."""
        from ..core.convert import convert
        from ..core.graph import plan

        usable = plan(source.format, target, source=source).usable
        on_device = bool(usable and usable[0].on_device)
        key = (source.digest, target.name, dataset.calib_digest() if dataset is not None else None,
               slot.name if on_device else None)
        if key not in self._converted:
            t0 = time.perf_counter()
            result = convert(source, target, dataset, self.options.out, device=slot.open() if on_device else None)
            self._converted[key] = (result, time.perf_counter() - t0)
        return self._converted[key]

    def target(self, name: str, recipe: str | None = None):
        """A target by name; ``name@recipe`` or ``recipe=`` for a variant with a recipe of the same kind."""
        from ..core.specs import get_target
        from ..core.sweep import expand_targets

        if "@" in name:
            name, _, recipe = name.partition("@")
        base = get_target(name)
        if recipe is None or recipe == base.recipe:
            return base
        variant = next((t for t in expand_targets([name], [recipe]) if t.name == f"{name}@{recipe}"), None)
        if variant is None:
            from ..core.errors import UserError

            raise UserError(f"recipe '{recipe}' is not a variant of target '{name}' (its recipe '{base.recipe}' is "
                            "of another kind).", "Pass a recipe of the same kind ('edgekit targets' lists them).")
        return variant

    def artifact(self, slot: DeviceSlot, model=None, target: str | None = None, recipe: str | None = None,
                 data=None, entry=None, budgets=None):
        """What ``edge_artifact(...)`` returns: a deployment bundle's artifact (``entry``), an artifact
        file as it is (no target, or its own), or ``model`` converted to ``target`` through the cache."""
        from ..core.errors import EdgekitError, UserError
        from .artifact import EdgeArtifact, runnable_file, wrap_file

        if entry is not None and model is None:
            art = wrap_file(entry.verify(), self, slot, entry.runtime)
            art.role, art.budgets = entry.role, dict(budgets or {})
            art.data = self.dataset(data) if data is not None else None
            return art
        if model is None:
            raise UserError("edge_artifact needs a model: edge_artifact('file.py:build', data='...'), or model= in "
                            "the test's edge marker.")
        path = runnable_file(model)
        if path is not None:
            wrapped = wrap_file(path, self, slot)
            if target is None or (target == wrapped.target_name and recipe is None):
                wrapped.data = self.dataset(data) if data is not None else None
                return wrapped
        if target is None:
            raise UserError(f"edge_artifact('{model}') needs a target: pass target='...', mark the test "
                            "@pytest.mark.edge(targets=[...]), or run pytest with --edge-target.")
        tgt = self.target(target, recipe)
        source = self.source(model)
        dataset = self.dataset(data, source) if data is not None else None
        art = EdgeArtifact(Path(self.options.out) / source.name / tgt.name, tgt.runtime, source.name, slot, self,
                           target=tgt, source=source, source_spec=source.spec, source_sha256=source.digest,
                           data=dataset)
        try:
            result, seconds = self.convert(source, tgt, dataset, slot)
        except EdgekitError as e:
            self.log.add(art, status="conversion_failed", reason=str(e))
            raise
        art.path, art.manifest, art.convert_s = result.artifact, result.manifest, seconds
        return art

    def close(self) -> None:
        for slot in self.slots.values():
            try:
                slot.close()
            except Exception:  # noqa: BLE001  closing must never fail the session
                pass
        self.slots.clear()


_ACTIVE: Harness | None = None
_STACK: list = []


def active() -> Harness:
    """The harness of the running test session (the plugin's), else one for this process (local
    device, no records)."""
    global _ACTIVE
    if _ACTIVE is None:
        import atexit

        _ACTIVE = Harness(Options())
        atexit.register(_ACTIVE.close)
    return _ACTIVE


def push_active(harness: Harness) -> None:
    """Make ``harness`` the active one (a test session inside a test session restores the outer's)."""
    global _ACTIVE
    _STACK.append(_ACTIVE)
    _ACTIVE = harness


def pop_active() -> None:
    global _ACTIVE
    _ACTIVE = _STACK.pop() if _STACK else None
