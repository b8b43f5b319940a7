"""Experiment tracking: real records logged to a real MLflow SQLite store, read back."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.tracking

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from edgekit.reports import tracking  # noqa: E402
from edgekit.core.errors import MissingExtra  # noqa: E402
from edgekit.reports.tracking import TrackingWarning, default_tracking_uri, log_records  # noqa: E402

RUN_ID = "20261122T230655-f0c546"
LONG_REASON = "output: cosine 0.85983 < 0.98; " + "x" * 2000


def _manifest(folder: Path, target: str, recipe: str, route: list[tuple[str, dict, float]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({
        "edgekit": "0.1.0", "target": target, "format": target.split("-")[0], "io_dtype": "float32",
        "recipe": {"name": recipe, "kind": recipe,
                   "calibration": {"method": "minmax", "samples": 200, "per_channel": True, "percentile": 99.99}},
        "route": [{"edge": e, "seconds": s, "cached": False, "versions": v, "notes": []} for e, v, s in route],
        "size_bytes": 42749,
    }, indent=2))
    return path


def _records(tmp_path: Path) -> list[dict]:
    """A realistic `edgekit run` result: the source row, one passing int8 ONNX target on the local
    machine, a parity failure with two outputs on an emulated ARM64 device, a conversion failure."""
    out = tmp_path / "out" / "digits_cnn"
    base = {"run_id": RUN_ID, "edgekit": "0.1.0", "model": "digits_cnn", "source": "examples/digits_cnn.py:build",
            "source_sha256": "e76827bf" * 8,
            "data": {"name": "digits", "calibration_samples": 300, "evaluation_samples": 450, "synthetic": False,
                     "notes": ["calibration: 300 samples of the training split"]}}
    probe = {"ok": True, "os": "Linux", "release": "6.18.44", "arch": "x86_64", "cpu": "AMD EPYC", "cpu_count": 2,
             "mem_total_kb": 24683656, "python": "3.11.7", "numpy": "2.4.6",
             "runtimes": {"onnxruntime": "1.32.0", "litert": "2.3.0"}}
    bench = {"n": 2467, "p50_ms": 0.0338, "p90_ms": 0.0468, "p99_ms": 0.0863, "mean_ms": 0.0400, "std_ms": 0.0953,
             "min_ms": 0.0326, "max_ms": 4.1, "noisy": False, "first_ms": 0.3, "warmup": 10, "threads": 1, "batch": 1,
             "peak_rss_mb": 61.5, "load_ms": 6.2}
    source = dict(base, target="source", label="torch eager fp32", status="reference", format="torch",
                  size_bytes=None, device={"name": "local", "kind": "local", "emulated": False},
                  bench=dict(bench, p50_ms=0.1763, p90_ms=0.2169, p99_ms=0.2852, mean_ms=0.1945),
                  task={"metric": "accuracy", "value": 0.9866666666666667})
    onnx_manifest = _manifest(out / "onnx-int8", "onnx-int8", "int8-static",
                              [("OnnxFromTorch", {"torch": "2.13.0+cpu", "onnx": "1.23.2", "onnxscript": "0.7.2"}, 3.297),
                               ("QuantizedOnnxFromOnnx", {"onnx": "1.23.2", "onnxruntime": "1.32.0"}, 0.135)])
    ok = dict(base, target="onnx-int8", format="onnx", recipe="int8-static", runtime="onnxruntime",
              runtime_version="1.32.0", artifact=str(out / "onnx-int8" / "model.onnx"), size_bytes=42749,
              route=["OnnxFromTorch", "QuantizedOnnxFromOnnx"], cached=False, convert_s=3.45,
              manifest=str(onnx_manifest), load_s=0.0062,
              device={"name": "local", "kind": "local", "emulated": False, "labels": {"rack": "ci"}, "probe": probe},
              parity={"outputs": [{"name": "output", "max_abs": 4.53, "mean_abs": 0.91, "rel_l2": 0.104,
                                   "cosine_mean": 0.998, "cosine_min": 0.990, "top1_agreement": 0.9978,
                                   "top5_agreement": 1.0}],
                      "n": 450, "passed": True, "failures": [], "task_metric": "accuracy", "task_value": 0.9844,
                      "task_source": 0.9867, "task_delta_points": -0.2222, "synthetic": False},
              bench=bench, status="ok", speedup_vs_source=5.21)
    tfl_manifest = _manifest(out / "tflite-int8", "tflite-int8", "int8-static",
                             [("OnnxFromTorch", {"torch": "2.13.0+cpu", "onnx": "1.23.2"}, 3.1),
                              ("TfliteFromOnnx", {"onnx2tf": "1.29.24", "tensorflow": "2.21.0"}, 20.5)])
    arm_probe = dict(probe, arch="aarch64", cpu="qemu", runtimes={"litert": "2.3.0"})
    failed = dict(base, target="tflite-int8", format="tflite", recipe="int8-static", runtime="litert",
                  runtime_version="2.3.0", artifact=str(out / "tflite-int8" / "model.tflite"), size_bytes=30112,
                  route=["OnnxFromTorch", "TfliteFromOnnx"], cached=True, convert_s=0.01, manifest=str(tfl_manifest),
                  device={"name": "pi-emu", "kind": "qemu-arm64", "emulated": True, "labels": {"board": "rpi4"},
                          "probe": arm_probe},
                  parity={"outputs": [{"name": "logits", "max_abs": 9.1, "mean_abs": 1.2, "rel_l2": 0.5,
                                       "cosine_mean": 0.86, "cosine_min": 0.41, "top1_agreement": 0.80,
                                       "top5_agreement": 0.97},
                                      {"name": "embedding", "max_abs": 2.0, "mean_abs": 0.3, "rel_l2": 0.2,
                                       "cosine_mean": 0.95, "cosine_min": 0.70, "top1_agreement": 0.90,
                                       "top5_agreement": 0.99}],
                          "n": 450, "passed": False, "failures": [LONG_REASON], "task_metric": "accuracy",
                          "task_value": 0.79, "task_source": 0.9867, "task_delta_points": -19.67, "synthetic": False},
                  bench=dict(bench, p50_ms=1.9, noisy=True), status="parity_failed", reason=LONG_REASON)
    conv_failed = dict(base, target="coreml", format="coreml", recipe="fp16", runtime="coreml",
                       status="conversion_failed", reason="CoreMLFromTorch: coremltools is not installed.",
                       convert_s=0.2, device={"name": "local", "kind": "local", "emulated": False})
    return [source, ok, failed, conv_failed]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """One MLflow SQLite database with its schema created. Creating the schema runs every migration
    and takes several seconds, so each test starts from a copy of this file instead."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri="sqlite:///" + db.as_posix()).search_experiments()
    return db


def _uri(tmp_path: Path, empty_store: Path) -> str:
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, db)
    return "sqlite:///" + db.as_posix()


def _by_target(client: MlflowClient, exp_id: str) -> dict:
    runs = client.search_runs([exp_id], max_results=100)
    return {r.data.tags["target"]: r for r in runs if "target" in r.data.tags}


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= _artifact_paths(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_records_round_trip_through_sqlite(tmp_path, capfd, empty_store):
    records = _records(tmp_path)
    report = tmp_path / "out" / "digits_cnn" / "report.md"
    report.write_text("# digits_cnn\n")
    uri = _uri(tmp_path, empty_store)

    with _no_tracking_warning():
        res = log_records(records, tracking_uri=uri, experiment="digits", artifacts=[report])
    assert capfd.readouterr().out == ""  # MLflow's noise goes to stderr, never stdout
    assert res["warning"] is None and res["parent_run_id"] is None and res["tracking_uri"] == uri
    assert len(res["run_ids"]) == len(records)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("digits")
    # artifacts sit next to the SQLite file, not under the test's working folder
    assert exp.artifact_location == (tmp_path / "mlruns" / "artifacts" / "digits").as_uri()
    runs = _by_target(client, exp.experiment_id)
    assert set(runs) == {"source", "onnx-int8", "tflite-int8", "coreml"}
    assert {r.info.run_id for r in runs.values()} == set(res["run_ids"])
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert all("mlflow.parentRunId" not in r.data.tags for r in runs.values())

    ok = runs["onnx-int8"]
    assert ok.info.run_name == "digits_cnn/onnx-int8@local"
    p, m, t = ok.data.params, ok.data.metrics, ok.data.tags
    assert p["edgekit"] == "0.1.0" and p["recipe"] == "int8-static" and p["target"] == "onnx-int8"
    assert p["runtime"] == "onnxruntime" and p["runtime_version"] == "1.32.0"
    assert p["version.torch"] == "2.13.0+cpu" and p["version.onnx"] == "1.23.2"
    assert p["version.onnxruntime"] == "1.32.0" and p["version.onnxscript"] == "0.7.2"
    assert p["route"] == "OnnxFromTorch -> QuantizedOnnxFromOnnx"
    assert p["device.name"] == "local" and p["device.kind"] == "local" and p["device.emulated"] == "false"
    assert p["device.arch"] == "x86_64" and p["device.cpu"] == "AMD EPYC" and p["device.label.rack"] == "ci"
    assert p["data.name"] == "digits" and p["data.calibration_samples"] == "300"
    assert p["data.evaluation_samples"] == "450" and p["data.synthetic"] == "false"
    assert p["recipe.calibration.samples"] == "200" and p["task_metric"] == "accuracy"
    for k, v in {"p50_ms": 0.0338, "p90_ms": 0.0468, "p99_ms": 0.0863, "mean_ms": 0.04, "std_ms": 0.0953,
                 "size_bytes": 42749, "size_mb": 42749 / 2**20, "peak_rss_mb": 61.5, "load_ms": 6.2,
                 "cosine_mean": 0.998, "cosine_min": 0.990, "max_abs": 4.53, "mean_abs": 0.91, "rel_l2": 0.104,
                 "top1_agreement": 0.9978, "accuracy": 0.9844, "accuracy_source": 0.9867,
                 "task_delta_points": -0.2222, "speedup_vs_source": 5.21, "parity_passed": 1.0,
                 "convert.OnnxFromTorch_s": 3.297}.items():
        assert m[k] == pytest.approx(v), k
    assert t["status"] == "ok" and t["role"] == "target" and t["emulated"] == "false"
    assert t["synthetic_data"] == "false" and t["edgekit.run_id"] == RUN_ID and "reason" not in t
    assert _artifact_paths(client, ok.info.run_id) == {"manifest.json", "record.json", "reports/report.md"}
    got = json.loads(Path(client.download_artifacts(ok.info.run_id, "record.json", str(tmp_path / "dl"))).read_text())
    assert got == records[1]
    man = json.loads(Path(client.download_artifacts(ok.info.run_id, "manifest.json", str(tmp_path / "dl2")))
                     .read_text())
    assert man["route"][0]["versions"]["torch"] == "2.13.0+cpu"
    assert (tmp_path / "mlruns" / "artifacts" / "digits" / ok.info.run_id / "artifacts" / "record.json").is_file()

    bad = runs["tflite-int8"]
    p, m, t = bad.data.params, bad.data.metrics, bad.data.tags
    assert t["status"] == "parity_failed" and t["emulated"] == "true" and t["noisy"] == "true"
    assert t["reason"].startswith("output: cosine 0.85983 < 0.98") and len(t["reason"]) <= tracking.REASON_MAX
    assert p["device.kind"] == "qemu-arm64" and p["device.arch"] == "aarch64" and p["device.label.board"] == "rpi4"
    assert p["version.onnx2tf"] == "1.29.24"
    # worst over the two outputs, and each output on its own
    assert m["cosine_mean"] == pytest.approx(0.86) and m["cosine_min"] == pytest.approx(0.41)
    assert m["max_abs"] == pytest.approx(9.1) and m["top1_agreement"] == pytest.approx(0.80)
    assert m["embedding.cosine_min"] == pytest.approx(0.70) and m["parity_passed"] == 0.0
    assert m["task_delta_points"] == pytest.approx(-19.67)
    assert m["convert.TfliteFromOnnx_s"] == pytest.approx(20.5)  # from the manifest, even when cached now

    src = runs["source"]
    assert src.data.tags["role"] == "source" and src.data.tags["status"] == "reference"
    assert src.data.metrics["accuracy"] == pytest.approx(0.98667, abs=1e-5) and src.data.metrics["p50_ms"] == pytest.approx(0.1763)
    assert "size_bytes" not in src.data.metrics and src.data.params["runtime"] == "torch eager fp32"
    assert _artifact_paths(client, src.info.run_id) == {"record.json", "reports/report.md"}

    conv = runs["coreml"]
    assert conv.data.tags["status"] == "conversion_failed" and "coremltools" in conv.data.tags["reason"]
    assert "p50_ms" not in conv.data.metrics and conv.data.metrics["convert_s"] == pytest.approx(0.2)

    # searchable the way a user would: every failed target in the experiment
    failed = client.search_runs([exp.experiment_id], "tags.status != 'ok' and tags.role = 'target'")
    assert {r.data.tags["target"] for r in failed} == {"tflite-int8", "coreml"}


def test_sweep_nests_runs_under_a_parent(tmp_path, empty_store):
    records = _records(tmp_path)
    report = tmp_path / "report.md"
    report.write_text("# sweep\n")
    uri = _uri(tmp_path, empty_store)
    with _no_tracking_warning():
        first = log_records(records[:2], tracking_uri=uri, experiment="sweeps", parent_name="sweep-a",
                            artifacts=[report])
        second = log_records(records, tracking_uri=uri, experiment="sweeps", parent_name="sweep-b")
    assert first["warning"] is None and second["warning"] is None
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sweeps")
    assert first["experiment_id"] == second["experiment_id"] == exp.experiment_id

    parent = client.get_run(second["parent_run_id"])
    assert parent.info.run_name == "sweep-b" and parent.info.status == "FINISHED"
    assert parent.data.tags["role"] == "sweep" and parent.data.tags["edgekit.run_id"] == RUN_ID
    assert parent.data.metrics == {"records": 3.0, "ok": 1.0, "failed": 2.0}
    assert parent.data.params["targets"] == "coreml, onnx-int8, tflite-int8"
    assert parent.data.params["devices"] == "local, pi-emu"

    kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{second['parent_run_id']}'")
    assert {k.info.run_id for k in kids} == set(second["run_ids"]) and len(kids) == 4
    kids_a = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{first['parent_run_id']}'")
    assert {k.info.run_id for k in kids_a} == set(first["run_ids"]) and len(kids_a) == 2
    # a sweep's report files go to its parent, not to every child
    assert _artifact_paths(client, first["parent_run_id"]) == {"reports/report.md"}
    assert _artifact_paths(client, first["run_ids"][1]) == {"manifest.json", "record.json"}
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == 2 + 2 + 4


def test_default_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGEKIT_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri()
    assert uri == "sqlite:///" + (tmp_path.resolve() / "mlruns" / "mlflow.db").as_posix()
    assert not (tmp_path / "mlruns").exists()  # asking creates nothing
    monkeypatch.setenv("EDGEKIT_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri() == "http://mlflow.example:5000"


def test_default_store_logs_artifacts_under_cwd(tmp_path, monkeypatch, empty_store):
    monkeypatch.delenv("EDGEKIT_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _uri(tmp_path, empty_store) == default_tracking_uri()  # (a fresh database: see empty_store)
    with _no_tracking_warning():
        res = log_records(_records(tmp_path)[1:2])
    assert res["warning"] is None and len(res["run_ids"]) == 1
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    run_dir = tmp_path / "mlruns" / "artifacts" / "edgekit" / res["run_ids"][0] / "artifacts"
    assert {p.name for p in run_dir.iterdir()} == {"manifest.json", "record.json"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mlflow_env", [True, False], ids=["retries-0", "mlflow-defaults"])
def test_server_down_warns_and_returns_quickly(tmp_path, monkeypatch, mlflow_env):
    # with MLflow's defaults (7 retries with backoff) a refused connection would retry for minutes;
    # log_records' own one-shot health check must return at once either way
    if mlflow_env:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    else:
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    uri = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    with pytest.warns(TrackingWarning, match="not reachable"):
        res = log_records(_records(tmp_path), tracking_uri=uri, parent_name="sweep")
    assert time.monotonic() - t0 < 10
    assert res["run_ids"] == [] and res["parent_run_id"] is None and res["tracking_uri"] == uri
    assert "0 of 4 record(s) logged" in res["warning"]


def test_bad_uri_warns(tmp_path):
    with pytest.warns(TrackingWarning, match="failed"):
        res = log_records(_records(tmp_path), tracking_uri="bogus://nowhere")
    assert res["run_ids"] == [] and res["warning"]


def test_missing_mlflow_raises_missing_extra(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtra) as err:
        log_records(_records(tmp_path), tracking_uri="sqlite:///" + (tmp_path / "m.db").as_posix())
    assert err.value.extra == "tracking" and "edgekit[tracking]" in str(err.value)
    with pytest.raises(MissingExtra):
        tracking.check_available()


class _no_tracking_warning:
    """Fail the test on any TrackingWarning (a silent tracking failure would pass otherwise)."""

    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", TrackingWarning)
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


@pytest.mark.timeout(180)
@pytest.mark.slow  # starts a real `mlflow server` on loopback (10-40 s)
def test_live_tracking_server(tmp_path, capfd):
    """Through a real `mlflow server` (HTTP, artifacts proxied): the health check lets a live
    server through and MLflow's "View run" lines stay off stdout."""
    import signal
    import subprocess
    import urllib.request

    port = _closed_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", "sqlite:///" + (tmp_path / "server.db").as_posix(),
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        capfd.readouterr()
        with _no_tracking_warning():
            res = log_records(_records(tmp_path), tracking_uri=uri, parent_name="live")
        out, err = capfd.readouterr()
        assert out == "" and res["warning"] is None and len(res["run_ids"]) == 4
        assert "View experiment" in err
        client = MlflowClient(tracking_uri=uri)
        kids = client.search_runs([res["experiment_id"]], f"tags.mlflow.parentRunId = '{res['parent_run_id']}'")
        assert len(kids) == 4
        assert _artifact_paths(client, res["run_ids"][1]) == {"manifest.json", "record.json"}
        assert client.get_run(res["run_ids"][1]).data.params["version.torch"] == "2.13.0+cpu"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_a_new_store_is_created_without_info_lines(tmp_path):
    """`run --track` / `sweep` on a fresh ./mlruns: MLflow and alembic used to print their INFO lines
    ("Creating initial MLflow database tables...") into the user's terminal. A child process, so
    MLflow's own logging set-up is the one a user gets; ./mlruns is ignored by git."""
    code = ("import json, sys; from edgekit.reports import log_records; "
            "res = log_records(json.load(open(sys.argv[1]))); print(res['warning'], len(res['run_ids']))")
    recs = tmp_path / "recs.json"
    recs.write_text(json.dumps(_records(tmp_path)[1:2]))
    r = subprocess.run([sys.executable, "-c", code, str(recs)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.split() == ["None", "1"], r.stdout + r.stderr
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()  # the schema was created in this very call
    assert " INFO " not in r.stderr and "alembic" not in r.stderr, r.stderr
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().split()
    assert "mlruns/" in ignored
