"""The on-device test harness (edgekit.testing, a pytest plugin), driven as a user drives it: a
user's own test file run by pytest (pytester) on this host, the SSH test host and the emulated
ARM64 device, with a passing parity test, a latency budget that fails with a readable message, an
unreachable device skipped with its reason, and records that `edgekit report` renders."""
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import edgekit.devices.ssh  # noqa: F401  imported before pytester snapshots sys.modules (it drops what a test imports)
from edgekit.devices.qemu import rootfs_ready

from .sshd_host import sshd_fixture

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"
QEMU_CACHED = rootfs_ready()  # before conftest points EDGEKIT_CACHE at the session's private cache
sshd = sshd_fixture("module")

OFFLINE = """
[devices.offline]
kind = "ssh"
host = "127.0.0.1"
port = 9
user = "nobody"
connect_timeout = 3
"""

USER_FILE = '''
import pytest
from edgekit.testing import assert_latency, assert_parity

MODEL = {model!r}
TARGETS = {targets!r}


@pytest.mark.edge(targets=TARGETS)
def test_parity(edge_artifact, edge_device):
    artifact = edge_artifact(MODEL, data="digits")
    result = assert_parity(artifact, reference=MODEL, data="digits")
    assert result.n == 450 and abs(result.task_delta_points) <= 1.0


@pytest.mark.edge(targets=TARGETS[-1:], model=MODEL, data="digits")
def test_latency_budget(edge_session):
    stats = edge_session.bench(min_runs=30, min_seconds=0.2)
    assert_latency(stats, p90_ms=0.001)
'''


def plugin_args() -> list[str]:
    """The plugin by its module, its entry point (if this environment has it) blocked: one
    registration, whichever edgekit the environment has installed (the test of the entry point
    itself is below)."""
    return ["-p", "no:edgekit", "-p", "edgekit.testing.plugin"]


def run(pytester, *args):
    """pytest on the user's files, always in a child process, as a user runs it. (In this process,
    pytester would drop every module the inner run imported when it returns; a C extension imported
    again after that keeps the classes of its first import: SQLAlchemy's cache keys then fail in every
    later MLflow test with "'InternalTraversal' object is not callable".)"""
    args = (*plugin_args(), "-p", "no:cacheprovider", "-ra", *args)
    return pytester.runpytest_subprocess(*args, timeout=900)


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    def write(extra: str = "") -> Path:
        path = tmp_path / "devices.toml"
        path.write_text(OFFLINE + extra)
        monkeypatch.setenv("EDGEKIT_DEVICES", str(path))
        return path

    return write


def latest(path: Path) -> dict:
    """The newest record per (model, target, device), as readers take them."""
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[(r["model"], r["target"], r["device"]["name"])] = r
    return out


def edgekit(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=900)


def report(path: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "edgekit", "report", str(path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (path.parent / "report.html").stat().st_size > 0
    return (path.parent / "report.md").read_text()


# ----------------------------------------------------------------- parametrisation, no model

DEVICE_TESTS = '''
import pytest

@pytest.mark.edge(targets=["onnx", "tflite-int8"], devices=["local", "offline"])
def test_where(edge_device, edge_target):
    assert edge_device.name == "local" and edge_device.kind == "local" and edge_target in ("onnx", "tflite-int8")

def test_default(edge_device, edge_target):
    assert edge_device.name == "local" and edge_target in (None, "onnx")

@pytest.mark.edge(devices=["pi-in-the-lab"])
def test_unknown_device(edge_device):
    pass

def test_plain():
    pass
'''


def test_marker_parametrises_targets_by_devices_and_skips_unreachable_ones(pytester, inventory):
    inventory()
    pytester.makepyfile(test_devices=DEVICE_TESTS)
    r = run(pytester, "-v")
    r.assert_outcomes(passed=4, skipped=3)
    r.stdout.fnmatch_lines(["*test_where[[]onnx@local[]] PASSED*", "*test_where[[]tflite-int8@offline[]] SKIPPED*",
                            "*test_default[[]local[]] PASSED*", "*test_plain PASSED*"])
    r.stdout.fnmatch_lines(["SKIPPED [[]2[]] *device 'offline' is not reachable: SSH device 'offline' "
                            "(nobody@127.0.0.1:9) refused the connection*",
                            "SKIPPED [[]1[]] *device 'pi-in-the-lab' is unknown here: Unknown device 'pi-in-the-lab'*"])
    # --edge-strict: a device that cannot be reached fails its tests, with the same reason
    r = run(pytester, "--edge-strict")
    r.assert_outcomes(passed=4, errors=3)  # they fail in their setup
    assert "During handling" not in r.stdout.str()
    r.stdout.fnmatch_lines(["*device 'offline' is not reachable*(--edge-strict)*"])
    # the command line narrows what the markers list
    r = run(pytester, "-v", "--edge-target", "onnx", "--edge-device", "local")
    r.assert_outcomes(passed=3, skipped=1)
    r.stdout.fnmatch_lines(["*test_where[[]onnx@local[]] PASSED*", "*test_default[[]onnx@local[]] PASSED*",
                            "*runs on pi-in-the-lab only; --edge-device selected local*"])
    assert "tflite-int8@" not in r.stdout.str()
    assert not (pytester.path / "edgekit-results").exists()  # nothing measured, nothing written


def test_wrong_names_are_usage_errors(pytester, inventory):
    inventory()
    pytester.makepyfile(test_devices=DEVICE_TESTS)
    r = run(pytester, "--edge-device", "ofline")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*edgekit: Unknown device 'ofline'*Did you mean 'offline'?*"])
    r = run(pytester, "--edge-target", "tflite-int9")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*Unknown target 'tflite-int9'*Did you mean 'tflite-int8'?*"])
    pytester.makepyfile(test_devices="import pytest\n\n@pytest.mark.edge(target='onnx')\n"
                                     "def test_x(edge_device):\n    pass\n")
    r = run(pytester)
    r.stdout.fnmatch_lines(["*@pytest.mark.edge takes targets, devices, bundle, model, data, recipe (keywords), "
                            "not target*"])
    assert r.ret != 0


# ----------------------------------------------------------------- a user's file, on each device

@pytest.mark.onnx
def test_user_file_on_this_host(pytester, inventory):
    """Parity passes, a too-strict parity check and a latency budget fail with readable messages,
    the unreachable device is skipped, and the records render in `edgekit report`."""
    inventory()
    pytester.makepyfile(test_user=USER_FILE.format(model=MODEL, targets=["onnx-int8"]) + '''

@pytest.mark.edge(targets=["onnx"], model=MODEL, data="digits")
def test_parity_too_strict(edge_artifact):
    assert_parity(edge_artifact(), reference=MODEL, data="digits", tolerance={"max_abs": 1e-9})
''')
    r = run(pytester, "--edge-device", "local", "--edge-device", "offline")
    r.assert_outcomes(passed=1, failed=2, skipped=3)
    out = r.stdout.str()
    r.stdout.fnmatch_lines([
        "E*AssertionError: latency budget missed: onnx-int8 on local, onnxruntime *, 1 thread(s), batch 1",
        "E*  p90 = * ms, 95% CI *-* ms: OVER the budget of 0.0010 ms (*x); the whole CI is above the budget",
        "E*  measured: n = * timed runs after 10 warm-up runs; p50 * ms (95% CI *-* ms), p90 *, p99 *"])
    r.stdout.fnmatch_lines([
        "E*AssertionError: parity FAILED: onnx on local against *digits_cnn.py:build (* fp32) on 'digits', "
        "450 samples",
        "E*  failed:    output: max abs error * > 1e-09",
        "E*  measured:  output cosine *, max abs *, top-1 agreement *; accuracy *% (reference *%, * points)",
        "E*  tolerance: min cosine 0.9999, max abs 1e-09, *"])  # the target's, with max_abs changed
    assert out.count("device 'offline' is not reachable: SSH device 'offline'") == 3  # each test says why
    r.stdout.fnmatch_lines(["*record(s) of this run appended to *edgekit-results/results.jsonl*"])

    results = pytester.path / "edgekit-results" / "results.jsonl"
    rows = latest(results)
    assert set(rows) == {("digits_cnn", "onnx-int8", "local"), ("digits_cnn", "onnx", "local")}
    ok = rows[("digits_cnn", "onnx-int8", "local")]
    assert ok["status"] == "ok" and ok["parity"]["passed"] and ok["parity"]["n"] == 450
    assert ok["bench"]["n"] >= 30 and ok["bench"]["p90_ci95_ms"][0] <= ok["bench"]["p90_ms"]
    assert ok["budgets"]["p90_ms"] == {"limit": 0.001, "measured": ok["bench"]["p90_ms"],
                                       "ci95": ok["bench"]["p90_ci95_ms"], "passed": False}
    assert ok["device"]["probe"]["arch"] and ok["runtime_version"] and ok["artifact_sha256"]
    assert [t.split("::")[1] for t in ok["harness"]["tests"]] == ["test_parity[onnx-int8@local]",
                                                                  "test_latency_budget[onnx-int8@local]"]
    assert Path(ok["artifact"]).is_relative_to(pytester.path / "edgekit-results" / "artifacts")
    bad = rows[("digits_cnn", "onnx", "local")]
    assert bad["status"] == "parity_failed" and "max abs error" in bad["reason"]
    md = report(results)
    # ("converted (noisy)" on a busy machine)
    assert "| onnx-int8 | local | converted" in md and "| onnx | local | PARITY FAILED |" in md
    # the regression gate and tracking read harness runs like any others
    r = edgekit(None, "check", "--baseline", results, results)
    assert r.returncode == 0 and "PASS: 2 (model, target, device) compared" in r.stdout, r.stdout + r.stderr
    if importlib.util.find_spec("mlflow") is None:
        return
    uri = f"sqlite:///{pytester.path / 'mlflow.db'}"
    r = edgekit(None, "report", results, "--track", "--tracking-uri", uri)
    assert r.returncode == 0, r.stderr
    # read the store in a child process: pytester drops the modules a test imports when it ends, and
    # MLflow's SQLAlchemy imported twice into one process fails ("'InternalTraversal' object is not callable")
    read = ("import json, sys; from mlflow.tracking import MlflowClient; c = MlflowClient(sys.argv[1]); "
            "runs = c.search_runs([e.experiment_id for e in c.search_experiments()]); "
            "print(json.dumps({r.data.tags.get('target'): {'metrics': r.data.metrics, 'tags': r.data.tags} "
            "for r in runs}))")
    q = subprocess.run([sys.executable, "-c", read, uri], capture_output=True, text=True, timeout=300)
    assert q.returncode == 0, q.stderr[-2000:]
    by = {k: types.SimpleNamespace(**v) for k, v in json.loads(q.stdout.strip().splitlines()[-1]).items()}
    assert by["onnx-int8"].metrics["p90_ms"] == ok["bench"]["p90_ms"] and by["onnx-int8"].metrics["parity_passed"] == 1
    assert by["onnx"].tags["status"] == "parity_failed"


def _devices_toml(sshd) -> str:
    return "\n" + sshd.devices_toml("test-host") + """
[devices.arm64-emu]
kind = "qemu-arm64"
"""


@pytest.mark.ssh
@pytest.mark.tflite
def test_user_file_on_the_ssh_test_host(pytester, inventory, sshd):
    inventory(_devices_toml(sshd))
    pytester.makepyfile(test_user=USER_FILE.format(model=MODEL, targets=["onnx-int8", "tflite-int8"]))
    r = run(pytester, "--edge-device", "test-host", "--edge-device", "offline", "--junitxml", "reports/junit.xml")
    r.assert_outcomes(passed=2, failed=1, skipped=3)
    r.stdout.fnmatch_lines(["E*latency budget missed: tflite-int8 on test-host (ssh), litert *",
                            "E*  p90 = * OVER the budget of 0.0010 ms*"])
    results = pytester.path / "reports" / "results.jsonl"  # beside the JUnit XML
    assert (pytester.path / "reports" / "junit.xml").exists()
    rows = latest(results)
    assert set(rows) == {("digits_cnn", t, "test-host") for t in ("onnx-int8", "tflite-int8")}
    for row in rows.values():
        assert row["status"] == "ok" and row["device"]["kind"] == "ssh" and row["device"]["probe"]["arch"]
    assert rows[("digits_cnn", "tflite-int8", "test-host")]["bench"]["n"] >= 30
    md = report(results)
    assert "| tflite-int8 | test-host | converted" in md and "| onnx-int8 | test-host | converted" in md
    assert not sshd.leftovers()


@pytest.mark.qemu
@pytest.mark.tflite
@(pytest.mark.slow if not QEMU_CACHED else pytest.mark.qemu)
def test_user_file_on_the_emulated_arm64_device(pytester, inventory, tmp_path):
    inventory('\n[devices.arm64-emu]\nkind = "qemu-arm64"\n')
    pytester.makepyfile(test_user=USER_FILE.format(model=MODEL, targets=["onnx-int8", "tflite-int8"]))
    r = run(pytester, "--edge-device", "arm64-emu", "--edge-device", "offline")
    # parity passes on the ARM64 builds of both runtimes; the latency budget is not checked on an emulator
    r.assert_outcomes(passed=2, skipped=4)
    r.stdout.fnmatch_lines(["SKIPPED * latency budget not checked on arm64-emu: an emulated device's timings are "
                            "no measure of the board's speed (measured * p90 under emulation)*"])
    rows = latest(pytester.path / "edgekit-results" / "results.jsonl")
    assert {k[2] for k in rows} == {"arm64-emu"}
    for row in rows.values():
        assert row["status"] == "ok" and row["device"]["emulated"] is True
        assert row["device"]["probe"]["arch"] == "aarch64"
    assert rows[("digits_cnn", "tflite-int8", "arm64-emu")]["budgets"]["p90_ms"]["passed"] is None  # not checked
    md = report(pytester.path / "edgekit-results" / "results.jsonl")
    assert "arm64-emu (emu)" in md and "EMULATED latency" in md


# ----------------------------------------------------------------- golden files, fallbacks, no torch

NO_TORCH_FILE = '''
import sys
import types

import pytest
from edgekit.testing import assert_golden, assert_latency

GOLDEN = "golden/digits"
TFLITE = "out/digits_cnn/tflite-int8/model.tflite"
BUNDLE = "out/digits_cnn/deployment.json"


def test_torch_cannot_be_imported():
    with pytest.raises(ImportError):
        import torch  # noqa: F401


def test_tflite_int8_matches_the_golden_files(edge_artifact, edge_device):
    artifact = edge_artifact(TFLITE)
    assert artifact.target_name == "tflite-int8" and edge_device.kind == "ssh"
    result = assert_golden(artifact, GOLDEN)
    assert result.n == 450 and abs(result.task_delta_points) <= 1.0


def test_a_stricter_golden_check_fails(edge_artifact):
    assert_golden(edge_artifact(TFLITE), GOLDEN, tolerance=0.99999999)


@pytest.mark.edge(bundle=BUNDLE)
def test_primary_and_fallback(edge_artifact, edge_session):
    artifact = edge_artifact()
    assert_golden(artifact, GOLDEN)
    stats = edge_session(artifact).bench(min_runs=20, min_seconds=0.1)
    assert_latency(stats, p50_ms=artifact.budgets["max_latency_ms"])


def test_no_framework_was_imported_here():
    assert sys.modules.get("torch") is None
    assert not [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "onnx", "onnxruntime")]
'''




@pytest.mark.ssh
@pytest.mark.tflite
def test_golden_files_and_the_fallback_checked_on_the_ssh_host_without_torch(pytester, inventory, sshd):
    env = dict(os.environ, EDGEKIT_DEVICES=str(inventory(_devices_toml(sshd))))
    # where torch is installed: the deployment bundle (fit on the device, with a fallback), golden files
    r = edgekit(env, "fit", MODEL, "--data", "digits", "--targets", "onnx-int8,tflite-int8", "--device", "test-host",
                "--max-accuracy-drop", "1", "--max-latency-ms", "50", "--fallback", "--out", "out",
                "--min-runs", "20", "--min-seconds", "0.1", cwd=pytester.path)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "FALLBACK on test-host: " in r.stdout and "deployment.json" in r.stdout
    bundle = json.loads((pytester.path / "out" / "digits_cnn" / "deployment.json").read_text())
    assert {bundle["primary"]["runtime"], bundle["fallback"]["runtime"]} == {"onnxruntime", "litert"}
    assert bundle["device"]["name"] == "test-host" and bundle["budgets"] == {"max_latency_ms": 50.0,
                                                                             "max_accuracy_drop": 1.0}
    r = edgekit(env, "golden", "record", MODEL, "--data", "digits", "--out", "golden/digits", cwd=pytester.path)
    assert r.returncode == 0, r.stderr
    assert "450 samples of 'digits'" in r.stdout
    golden = json.loads((pytester.path / "golden" / "digits" / "golden.json").read_text())
    assert set(golden["files"]) == {"inputs.npz", "outputs.npz", "labels.npy"}

    # a CI job without torch: a Python where `import torch` fails runs the user's tests on the SSH host
    pytester.makepyfile(test_no_torch=NO_TORCH_FILE)
    blocked = "import sys; sys.modules['torch'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", blocked, *plugin_args(), "-p", "no:cacheprovider", "-ra",
                        "--edge-device", "test-host", "test_no_torch.py"], cwd=pytester.path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert "5 passed, 1 failed" in r.stdout.splitlines()[-1] or \
        "1 failed, 5 passed" in r.stdout.splitlines()[-1], r.stdout[-4000:] + r.stderr[-2000:]
    assert "AssertionError: parity FAILED: tflite-int8 on test-host (ssh) against golden files golden/digits (450 " \
           "samples of 'digits' recorded from " in r.stdout
    assert "  tolerance: min cosine 0.99999999, " in r.stdout

    rows = latest(pytester.path / "edgekit-results" / "results.jsonl")
    assert set(rows) == {("digits_cnn", "onnx-int8", "test-host"), ("digits_cnn", "tflite-int8", "test-host")}
    for row in rows.values():
        assert row["status"] == "ok" and row["golden"]["samples"] == 450 and row["data"]["evaluation_samples"] == 450
        assert row["bench"]["n"] >= 20 and row["budgets"]["p50_ms"]["passed"]
    assert {r["deployment_role"] for r in rows.values()} == {"primary", "fallback"}
    assert not sshd.leftovers()


def test_example_file_runs_on_this_host(pytester, inventory):
    """examples/test_digits_on_device.py, run as its docstring says (from a folder of the user's)."""
    inventory()
    r = run(pytester, str(ROOT / "examples" / "test_digits_on_device.py"), "--edge-device", "local")
    r.assert_outcomes(passed=4, skipped=2)
    r.stdout.fnmatch_lines(["*no golden files: edgekit golden record *digits_cnn.py:build --data digits --out *",
                            "*no deployment bundle: edgekit fit ... --fallback --out out*"])
    rows = latest(pytester.path / "edgekit-results" / "results.jsonl")
    assert {k[1] for k in rows} == {"onnx-int8", "tflite-int8"} and all(r["status"] == "ok" for r in rows.values())


def test_the_plugin_is_an_entry_point_of_the_package(tmp_path):
    """Installed from its wheel, edgekit's plugin is loaded by pytest with no -p."""
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "--target", str(site), str(ROOT)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    eps = next(site.glob("edgekit-*.dist-info")) / "entry_points.txt"
    assert "[pytest11]\nedgekit = edgekit.testing.plugin" in eps.read_text()
    (tmp_path / "test_it.py").write_text("def test_it(edge_device, edge_target):\n"
                                         "    assert edge_device.name == 'local' and edge_target is None\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_it.py"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert "--edge-device=NAME" in r.stdout and "--edge-strict" in r.stdout
