"""edgekit's pytest plugin (entry point ``pytest11``: installed with edgekit, ``-p no:edgekit`` to
turn it off): the user's own tests, run on the exact device.

Options: ``--edge-device NAME`` (repeatable; names from devices.toml; ``local`` by default),
``--edge-target T`` (repeatable), ``--edge-strict`` (an unreachable device fails its tests instead
of skipping them), ``--edge-results PATH`` (the results JSONL; default ``results.jsonl`` beside
``--junitxml``, else ``./edgekit-results/results.jsonl``), ``--edge-out DIR`` (converted artifacts),
``--edge-device-wait SECONDS`` (queue behind another run holding a device).

Marker: ``@pytest.mark.edge(targets=[...], devices=[...], bundle=PATH, model=..., data=..., recipe=...)``
parametrises a test over targets (or a deployment bundle's primary and fallback) x devices; the
command line's ``--edge-device``/``--edge-target`` narrow what markers list.

Fixtures: ``edge_device`` (the device, leased for the test), ``edge_target`` (the target's name),
``edge_artifact(model, target=None, recipe=None, data=None)`` (converted through the cache, or a
bundle's artifact, or an artifact file as it is), ``edge_session`` (``edge_session(artifact)`` is
the artifact loaded on the device: ``run(inputs)``, ``bench()``; ``edge_session.run``/``bench``
use the marker's model). Assertions live in ``edgekit.testing`` (assert_parity, assert_latency,
assert_golden). Nothing heavy is imported until a test uses the harness.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

MARKER_KEYS = ("targets", "devices", "bundle", "model", "data", "recipe")
MARKER_DOC = ("edge(targets=None, devices=None, bundle=None, model=None, data=None, recipe=None): run the test on "
              "edgekit devices, once per target (or deployment bundle artifact) x device")
_HARNESS = pytest.StashKey()


@dataclass(frozen=True)
class EdgeCase:
    """One parametrisation: a device, a target (or a bundle's role), or why it cannot run."""

    device: str
    target: str | None = None
    role: str | None = None
    bundle: str | None = None
    skip: str | None = None  # cannot run here (not selected, not in devices.toml): skipped, or failed if strict
    error: str | None = None  # cannot run anywhere (a bundle that is not there): failed

    @property
    def id(self) -> str:
        what = f"{self.role}:" if self.role else ""
        what += f"{self.target}@" if self.target else ""
        return what + self.device


def _split(values) -> list[str]:
    out = []
    for v in values or ():
        out += [x.strip() for x in str(v).split(",") if x.strip()]
    return list(dict.fromkeys(out))


def pytest_addoption(parser):
    g = parser.getgroup("edgekit", "edgekit: tests on the exact device")
    g.addoption("--edge-device", action="append", default=[], metavar="NAME",
                help="device from devices.toml to run edge tests on (repeatable; default: local)")
    g.addoption("--edge-target", action="append", default=[], metavar="TARGET",
                help="target to run edge tests for (repeatable; narrows the targets the tests' markers list)")
    g.addoption("--edge-strict", action="store_true",
                help="fail, instead of skip, the tests of a device that cannot be reached")
    g.addoption("--edge-results", metavar="PATH",
                help="results JSONL the measurements are appended to (default: results.jsonl beside --junitxml, "
                     "else ./edgekit-results/results.jsonl)")
    g.addoption("--edge-out", metavar="DIR", help="folder for converted artifacts (default: artifacts/ beside the "
                                                  "results)")
    g.addoption("--edge-device-wait", type=float, default=300.0, metavar="SECONDS",
                help="wait this long for a device another run holds (default 300)")


def pytest_configure(config):
    config.addinivalue_line("markers", MARKER_DOC)
    devices, targets = _split(config.getoption("edge_device")), _split(config.getoption("edge_target"))
    if devices or targets:  # names on the command line are checked before anything runs
        from ..core.errors import EdgekitError

        try:
            from ..core.specs import get_target
            from ..devices.inventory import get_spec

            for d in devices:
                get_spec(d)
            for t in targets:
                get_target(t.partition("@")[0])
        except EdgekitError as e:
            raise pytest.UsageError(f"edgekit: {e.one_line()}") from None


def harness(config):
    """The session's harness, made on first use."""
    h = config.stash.get(_HARNESS, None)
    if h is None:
        from pathlib import Path

        from .harness import Harness, Options, push_active
        from .records import default_results_path

        results = config.getoption("edge_results")
        results = Path(results).resolve() if results else default_results_path(
            getattr(config.option, "xmlpath", None), config.invocation_params.dir)
        out = config.getoption("edge_out")
        devices = _split(config.getoption("edge_device"))
        h = Harness(Options(devices=devices or ["local"], targets=_split(config.getoption("edge_target")),
                            devices_given=bool(devices), strict=config.getoption("edge_strict"),
                            device_wait=config.getoption("edge_device_wait"), results=results,
                            out=Path(out).resolve() if out else results.parent / "artifacts"))
        config.stash[_HARNESS] = h
        push_active(h)
    return h


def pytest_unconfigure(config):
    h = config.stash.get(_HARNESS, None)
    if h is not None:
        from .harness import pop_active

        h.close()
        pop_active()


def pytest_generate_tests(metafunc):
    if "_edge_case" not in metafunc.fixturenames:
        return
    cases = _cases(harness(metafunc.config), metafunc.definition.get_closest_marker("edge"))
    metafunc.parametrize("_edge_case", cases, indirect=True, ids=[c.id for c in cases])


def _cases(h, marker) -> list[EdgeCase]:
    kw = dict(marker.kwargs) if marker is not None else {}
    unknown = sorted(set(kw) - set(MARKER_KEYS)) + (["positional arguments"] if marker is not None and marker.args
                                                    else [])
    if unknown:
        raise pytest.UsageError(f"edgekit: @pytest.mark.edge takes {', '.join(MARKER_KEYS)} (keywords), not "
                                f"{', '.join(unknown)}.")
    opts = h.options
    devices, skips = _devices(opts, _split(kw.get("devices")))
    if not devices:
        return [EdgeCase(skips[0][0], skip=skips[0][1])]
    cases = [EdgeCase(d, skip=why) for d, why in skips]
    for target, role, bundle, error in _targets(opts, kw):
        cases += [EdgeCase(d, target, role, bundle, error=error) for d in devices]
    return cases or [EdgeCase(devices[0], skip="no target of the test is selected by --edge-target "
                                               f"({', '.join(opts.targets)})")]


def _devices(opts, listed: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The devices to run on, and (device, why not) for listed ones that cannot be used here."""
    from ..core.errors import UnknownName
    from ..devices.inventory import get_spec

    if not listed:
        return list(opts.devices), []
    chosen = [d for d in listed if not opts.devices_given or d in opts.devices]
    if not chosen:
        return [], [(listed[0], f"runs on {', '.join(listed)} only; --edge-device selected "
                                f"{', '.join(opts.devices)}")]
    ok, skips = [], []
    for d in chosen:
        try:
            get_spec(d)
            ok.append(d)
        except UnknownName as e:  # a device another machine's devices.toml names
            skips.append((d, f"device '{d}' is unknown here: {e.one_line()}"))
    return ok, skips


def _targets(opts, kw: dict) -> list[tuple]:
    """(target, role, bundle, error) for each target (or bundle artifact) the test runs for."""
    selected = set(opts.targets)
    if kw.get("bundle"):
        from ..core.errors import EdgekitError
        from ..core.deploy import load_bundle

        try:
            b = load_bundle(kw["bundle"])
        except EdgekitError as e:
            return [(None, None, str(kw["bundle"]), f"edgekit: {e.one_line()}")]
        return [(e.target, e.role, str(b.path), None) for e in b.entries if not selected or e.target in selected]
    listed = _split(kw.get("targets"))
    if listed:
        from ..core.errors import EdgekitError
        from ..core.specs import get_target

        try:
            for t in listed:
                get_target(t.partition("@")[0])
        except EdgekitError as e:
            raise pytest.UsageError(f"edgekit: in @pytest.mark.edge: {e.one_line()}") from None
        return [(t, None, None, None) for t in listed if not selected or t in selected]
    return [(t, None, None, None) for t in opts.targets] or [(None, None, None, None)]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    h = item.config.stash.get(_HARNESS, None)
    if h is not None:
        h.current_test = item.nodeid


def pytest_terminal_summary(terminalreporter, config):
    h = config.stash.get(_HARNESS, None)
    if h is not None and h.log.appended:
        terminalreporter.write_sep("-", "edgekit")
        terminalreporter.write_line(f"{len(h.log.rows)} record(s) of this run appended to {h.log.path}; read them "
                                    f"with: edgekit report {h.log.path}")


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def _edge_case(request) -> EdgeCase:
    h = harness(request.config)
    case = getattr(request, "param", None) or EdgeCase(h.options.devices[0])
    if case.error:
        pytest.fail(case.error, pytrace=False)
    if case.skip:
        (pytest.fail if h.options.strict else pytest.skip)(case.skip)
    return case


@pytest.fixture
def edge_device(request, _edge_case):
    """The test's device (a ``DeviceSlot``: name, kind, emulated, labels, probe), leased for the test."""
    from ..core.errors import DeviceError, EdgekitError

    h = harness(request.config)
    hold = h.hold(_edge_case.device)
    unreachable = failed = None
    try:
        slot = hold.__enter__()
    except DeviceError as e:
        unreachable = f"device '{_edge_case.device}' is not reachable: {e.one_line()}"
    except EdgekitError as e:
        failed = f"edgekit: {e.one_line()}"
    if failed or (unreachable and h.options.strict):  # outside the except: no chained traceback
        pytest.fail(failed or unreachable + " (--edge-strict)", pytrace=False)
    if unreachable:
        pytest.skip(unreachable)
    try:
        yield slot
    finally:
        hold.__exit__(None, None, None)


@pytest.fixture
def edge_target(_edge_case) -> str | None:
    """The target this run of the test is for (None when the test has none)."""
    return _edge_case.target


@pytest.fixture
def edge_artifact(request, edge_device, _edge_case):
    """``edge_artifact(model=None, target=None, recipe=None, data=None)``: the artifact for this test's
    target on its device (defaults from the edge marker; a bundle's artifact for bundle tests)."""
    from .assertions import reported

    h = harness(request.config)
    marker = request.node.get_closest_marker("edge")
    defaults = dict(marker.kwargs) if marker is not None else {}
    entry = budgets = None
    if _edge_case.bundle:
        from ..core.deploy import load_bundle

        with reported():
            bundle = load_bundle(_edge_case.bundle)
            entry, budgets = bundle.entry(_edge_case.role), bundle.budgets

    def make(model=None, target=None, recipe=None, data=None):
        __tracebackhide__ = True
        with reported():
            return h.artifact(edge_device, model if model is not None else defaults.get("model"),
                              target or _edge_case.target, recipe or defaults.get("recipe"),
                              data if data is not None else defaults.get("data"), entry, budgets)

    return make


class _Sessions:
    """``edge_session(artifact=None, threads=1)`` loads an artifact (default: the marker's) on the
    device; ``edge_session.run(...)`` and ``.bench(...)`` use the default one."""

    def __init__(self, make):
        self._make = make
        self._default = None

    def __call__(self, artifact=None, threads: int = 1):
        from .artifact import EdgeArtifact, EdgeSession

        if not isinstance(artifact, EdgeArtifact):
            artifact = self._make(artifact)
        return EdgeSession(artifact, threads)

    def _session(self):
        if self._default is None:
            self._default = self()
        return self._default

    def run(self, inputs):
        return self._session().run(inputs)

    def bench(self, *args, **kw):
        return self._session().bench(*args, **kw)


@pytest.fixture
def edge_session(edge_artifact):
    """The artifact loaded on the test's device: ``edge_session(artifact).run(inputs)`` / ``.bench()``."""
    return _Sessions(edge_artifact)
