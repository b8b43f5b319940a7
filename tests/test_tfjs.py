"""The tfjs backend with real components: the tensorflowjs converter (child process, TF 2.21 kept),
the Node.js runner (@tensorflow/tfjs on WASM, from npm), and a real headless Chromium (Debian's,
driven by playwright-core) as the browser device: start, load, run, read results, close; a page
error fails the request; nothing leaves the loopback interface."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.backends.tfjs.browser_device import find_chromium
from edgekit.backends.tfjs.npm import installed
from edgekit.core.lazy import available
from .cli import edgekit, records

pytestmark = [pytest.mark.tfjs, pytest.mark.skipif(not (available("tensorflowjs") and installed()),
                                                   reason="needs tensorflowjs and the npm packages (edgekit setup tfjs)")]
ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "src" / "edgekit" / "backends" / "tfjs"
DIGITS = str(ROOT / "examples" / "digits_cnn.py") + ":build"
MINILM = str(ROOT / "examples" / "minilm.py") + ":build"
TARGETS = ("tfjs", "tfjs-fp16", "tfjs-uint8")
FAST = ["--min-runs", "20", "--min-seconds", "0.2", "--warmup", "2"]
browser = pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def digits_tfjs(tmp_path_factory, digits_source, digits_data):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    out = tmp_path_factory.mktemp("tfjs")
    return {t: convert(digits_source, get_target(t), digits_data, out) for t in TARGETS}


def test_npz_files_cross_between_numpy_and_node(tmp_path):
    arrays = {"x": np.random.rand(3, 1, 8, 8).astype(np.float32), "ids": np.arange(12, dtype=np.int64).reshape(3, 4),
              "m": np.array([[1, 0], [0, 1]], dtype=np.int32)}
    for save in (np.savez, np.savez_compressed):
        src, dst = tmp_path / f"{save.__name__}.npz", tmp_path / f"{save.__name__}-back.npz"
        save(src, **arrays)
        code = (f"const n = require({str(HERE / 'tfjs_npz.js')!r}); const a = n.readNpz({str(src)!r});"
                "a.ids = {dtype: 'int32', shape: a.ids.shape, data: Int32Array.from(a.ids.data, Number)};"
                f"n.writeNpz({str(dst)!r}, a);")
        subprocess.run(["node", "-e", code], check=True, timeout=60)
        with np.load(dst) as back:
            np.testing.assert_array_equal(back["x"], arrays["x"])
            np.testing.assert_array_equal(back["ids"], arrays["ids"].astype(np.int32))
            np.testing.assert_array_equal(back["m"], arrays["m"])


def test_setup_keeps_the_stack(tmp_path):
    """tensorflowjs is in without its pins: TensorFlow is still 2.21, onnx imports, and the stand-ins
    for what tensorflowjs never uses live only in the converter's child process."""
    r = edgekit("setup", "tfjs", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u, tensorflow as tf, onnx, onnxruntime; "
                            "print(tf.__version__, u.find_spec('tensorflow_decision_forests') is None)"],
                           capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert probe.returncode == 0, probe.stderr
    version, no_tfdf = probe.stdout.split()
    assert version.startswith("2.21") and no_tfdf == "True"


def test_three_targets_convert_and_match_in_node(digits_tfjs, digits_source, digits_data, digits_reference):
    from edgekit.core.pipeline import BenchOptions, measure
    from edgekit.core.specs import get_target

    sizes = {}
    for name, res in digits_tfjs.items():
        folder = res.artifact
        assert (folder / "model.json").exists()
        files = [p for p in folder.iterdir() if p.is_file()]
        assert res.manifest["size_bytes"] == sum(p.stat().st_size for p in files)  # model.json and every shard
        assert res.manifest["proof"]["proven"], res.manifest["proof"]
        assert "Node.js" in res.manifest["proof"]["runtime_version"]
        sizes[name] = res.manifest["size_bytes"]
        m = measure(folder, "tfjs", digits_data, digits_reference, get_target(name).tolerance,
                    bench=BenchOptions(warmup=2, min_runs=10, min_seconds=0.1))
        assert m["parity"]["passed"], (name, m["parity"]["failures"])
        assert m["bench"]["p50_ms"] > 0 and m["device"]["probe"]["node"]
    assert sizes["tfjs-uint8"] < sizes["tfjs-fp16"] < sizes["tfjs"]  # the weight formats shrink the download


def test_shard_size_is_a_target_option(tmp_path, digits_source, digits_data):
    from edgekit.backends.tfjs.converters import shards
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    target = get_target("tfjs")
    small = dataclasses.replace(target, options={**target.options, "shard_bytes": 16384})
    res = convert(digits_source, small, digits_data, tmp_path)
    parts = shards(res.artifact)
    assert len(parts) >= 5 and all(p.stat().st_size <= 16384 for p in parts)
    assert res.manifest["size_bytes"] == sum(p.stat().st_size for p in parts) + (res.artifact / "model.json").stat().st_size
    assert res.manifest["proof"]["proven"]


def test_a_keras_file_converts(tmp_path):
    """.keras -> (SavedModel export, in the child process) -> TF.js, proven in Node."""
    code = ("import keras; m = keras.Sequential([keras.Input((8,), name='x'), keras.layers.Dense(16, activation='relu'),"
            f" keras.layers.Dense(4)]); m.save({str(tmp_path / 'tiny.keras')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    r = edgekit("convert", str(tmp_path / "tiny.keras"), "--target", "tfjs-uint8", "--data", "random", "-o",
                str(tmp_path / "out"))
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads((tmp_path / "out" / "tiny" / "tfjs-uint8" / "manifest.json").read_text())
    assert [e["edge"] for e in manifest["route"]] == ["TfjsFromKeras"] and manifest["proof"]["proven"]


# ---- the browser device -----------------------------------------------------------------------------

def _descendants(root: int) -> set[int]:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.update(kids)
        todo += kids
    return out


def _inet_sockets() -> dict:
    """socket inode -> remote address (hex, as /proc/net/* writes it)."""
    out = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            out[f[9]] = f[2].split(":")[0]
    return out


def _loopback_or_none(addr: str) -> bool:
    if set(addr) == {"0"}:
        return True  # unconnected / listening
    if len(addr) == 8:
        return addr.endswith("7F")  # 127.x.x.x, little-endian
    return addr == "00000000000000000000000001000000" or (  # ::1, or ::ffff:127.x.x.x
        addr.startswith("0000000000000000FFFF0000") and addr.endswith("7F"))


class SocketWatch:
    """Every internet socket of this process's descendants (the worker, Chromium and its helpers),
    sampled while a run goes on: their remote addresses must all be loopback."""

    def __init__(self):
        self.seen: dict = {}
        self.browsers = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            table = _inet_sockets()
            for pid in _descendants(os.getpid()):
                try:
                    if "chromium" in os.readlink(f"/proc/{pid}/exe"):
                        self.browsers += 1
                    fds = os.listdir(f"/proc/{pid}/fd")
                except OSError:
                    continue
                for fd in fds:
                    try:
                        link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    if link.startswith("socket:[") and link[8:-1] in table:
                        self.seen[link[8:-1]] = table[link[8:-1]]
            self._stop.wait(0.1)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def off_loopback(self) -> list:
        return sorted({a for a in self.seen.values() if not _loopback_or_none(a)})


@pytest.mark.browser
@browser
def test_browser_device_end_to_end(tmp_path, digits_tfjs, digits_data, digits_reference):
    """Start Chromium, load the model, run the eval set, read results, benchmark, close."""
    from edgekit.backends.tfjs.browser_device import BrowserDevice
    from edgekit.core.parity import compare
    from edgekit.core.session import RunnerSession
    from edgekit.core.specs import get_target

    with SocketWatch() as watch:
        with BrowserDevice("chromium", {"backend": "wasm"}) as dev, \
                RunnerSession(dev, runtimes=["tfjs"], timeout=300) as s:
            loaded = s.load(digits_tfjs["tfjs"].artifact, "tfjs")
            worker_pid = s.proc.pid
            out = s.infer(digits_data.eval, digits_data.stacked)
            raw = s.bench(digits_data.bench_sample(), digits_data.stacked, warmup=2, min_runs=10, min_seconds=0.1)
            env = s.request("probing", op="env")
            time.sleep(0.3)  # one more socket sample with everything open
    assert "wasm" in loaded["runtime_version"] and f"Chromium {env['browser'].split()[-1]}" in loaded["runtime_version"]
    assert env["browser"].startswith("Chromium ") and env["tfjs_backend"]["backend"] == "wasm"
    assert env["cross_origin_isolated"] is True  # COOP/COEP: high-resolution timers and WASM threads
    p = compare(digits_reference, out, get_target("tfjs").tolerance, digits_data.labels, digits_data.task)
    assert p.passed, p.failures
    assert len(raw["times_s"]) >= 10 and all(t > 0 for t in raw["times_s"])
    # the page fetched only from edgekit's server, and no socket of the browser went off loopback
    assert env["network"]["requests"] >= 5 and env["network"]["off_loopback"] == []
    assert env["network"]["origin"].startswith("http://127.0.0.1:")
    assert watch.browsers > 0 and watch.seen, "the socket watch saw no browser: it checked nothing"
    assert watch.off_loopback() == []
    # closed: the worker and its browser are gone
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{worker_pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{worker_pid}").exists()
    assert not [p for p in _descendants(os.getpid()) if "chromium" in _exe(p)]


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


@pytest.mark.browser
@browser
def test_a_page_error_fails_the_request(tmp_path, digits_tfjs):
    """A model whose weight file is missing: the page logs the failed fetch, and the load fails."""
    import shutil

    from edgekit.backends.tfjs.browser_device import BrowserDevice
    from edgekit.core.errors import RunnerError
    from edgekit.core.session import RunnerSession

    broken = tmp_path / "broken.tfjs"
    shutil.copytree(digits_tfjs["tfjs"].artifact, broken)
    for shard in broken.glob("*.bin"):
        shard.unlink()
    with BrowserDevice("chromium", {"backend": "wasm"}) as dev, RunnerSession(dev, runtimes=["tfjs"], timeout=300) as s:
        with pytest.raises(RunnerError, match="page logged an error|404|failed"):
            s.load(broken, "tfjs")


@pytest.mark.browser
@browser
def test_cli_run_on_browser_devices(tmp_path):
    """`edgekit run` of the three targets in Node and in Chromium (WASM and WebGL), parity inside
    tolerance everywhere; the record names the browser version and the backend that ran."""
    devices = tmp_path / "devices.toml"
    devices.write_text('[devices.chromium-wasm]\nkind = "browser"\n[devices.chromium-wasm.options]\nbackend = "wasm"\n'
                       '[devices.chromium-webgl]\nkind = "browser"\n[devices.chromium-webgl.options]\n'
                       'backend = "webgl"\n')
    r = edgekit("run", DIGITS, "--targets", ",".join(TARGETS), "--data", "digits", "-o", str(tmp_path / "out"),
                "--device", "local", "--device", "chromium-wasm", "--device", "chromium-webgl", *FAST,
                env={"EDGEKIT_DEVICES": str(devices)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = records(tmp_path / "out", "digits_cnn")
    for t in TARGETS:
        for dev, backend in (("local", "wasm"), ("chromium-wasm", "wasm"), ("chromium-webgl", "webgl")):
            rec = recs[(t, dev)]
            assert rec["status"] == "ok", (t, dev, rec.get("reason"))
            assert f"({backend}" in rec["runtime_version"], rec["runtime_version"]
            assert ("Chromium" in rec["runtime_version"]) == dev.startswith("chromium")


@pytest.mark.browser
@browser
def test_a_model_of_many_large_shards_loads_in_the_browser(tmp_path):
    """TF.js asks for every weight shard at once and reads no body until all responses have begun;
    Chromium keeps 6 connections per host, each taken until its body is read. The page reads each
    body as it comes, or a model of more than 6 shards of megabytes (MiniLM's 22) never loads."""
    code = ("import keras; m = keras.Sequential([keras.Input((1024,), name='x'), keras.layers.Dense(4096, "
            f"use_bias=False)]); m.save({str(tmp_path / 'wide.keras')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    devices = tmp_path / "devices.toml"
    devices.write_text('[devices.chromium-wasm]\nkind = "browser"\n')
    r = edgekit("run", str(tmp_path / "wide.keras"), "--targets", "tfjs", "--option", f"shard_bytes={2 << 20}",
                "--data", "random", "-o", str(tmp_path / "out"), "--device", "chromium-wasm", *FAST,
                env={"EDGEKIT_DEVICES": str(devices)})
    rec = records(tmp_path / "out", "wide")[("tfjs", "chromium-wasm")]
    assert len(list(Path(rec["artifact"]).glob("group1-shard*of*.bin"))) == 8  # 16 MiB of float32 weights
    assert rec["status"] == "ok", (rec.get("reason"), r.stderr[-2000:])
    assert rec["parity"]["passed"] and "Chromium" in rec["runtime_version"]


@pytest.mark.slow
def test_minilm_in_node(tmp_path):
    r = edgekit("run", MINILM, "--targets", ",".join(TARGETS), "--data", "sentences", "-o", str(tmp_path / "out"),
                *FAST, timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = records(tmp_path / "out", "minilm")
    for t in TARGETS:
        assert recs[(t, "local")]["status"] == "ok", (t, recs[(t, "local")].get("reason"))


@pytest.mark.slow
@pytest.mark.browser
@browser
@pytest.mark.parametrize("target", TARGETS)
def test_minilm_in_the_browser(tmp_path, target):
    """MiniLM's 22 shards (tfjs, 85 MB), 11 (tfjs-fp16) and 6 (tfjs-uint8) load and match in Chromium."""
    devices = tmp_path / "devices.toml"
    devices.write_text('[devices.chromium-wasm]\nkind = "browser"\n')
    r = edgekit("run", MINILM, "--targets", target, "--data", "sentences", "-o", str(tmp_path / "out"),
                "--device", "chromium-wasm", *FAST, env={"EDGEKIT_DEVICES": str(devices)}, timeout=3600)
    rec = records(tmp_path / "out", "minilm")[(target, "chromium-wasm")]
    assert rec["status"] == "ok", rec.get("reason")
