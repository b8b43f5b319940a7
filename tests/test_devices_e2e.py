"""The user's commands against a real SSH test host named in devices.toml: run on two devices,
probe, leases across processes. (Transport-level faults are in test_ssh_device.py.)"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .sshd_host import sshd_fixture

pytestmark = pytest.mark.ssh
ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "examples" / "digits_cnn.py") + ":build"
sshd = sshd_fixture("module")


@pytest.fixture(scope="module")
def inventory(sshd, tmp_path_factory):
    path = tmp_path_factory.mktemp("inv") / "devices.toml"
    path.write_text(sshd.devices_toml("test-host", labels={"board": "test-sshd"}) + """
[devices.arm64-emu]
kind = "qemu-arm64"
labels = { board = "qemu-aarch64" }
""")
    return path


def edgekit(inventory, *args, timeout=600):
    env = dict(os.environ, EDGEKIT_DEVICES=str(inventory))
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_devices_list_and_check(inventory, sshd):
    r = edgekit(inventory, "devices", "list")
    assert r.returncode == 0 and "test-host" in r.stdout and "board=test-sshd" in r.stdout
    r = edgekit(inventory, "devices", "check", "test-host", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kind"] == "ssh" and info["arch"] and info["cpu_count"] >= 1 and info["mem_total_kb"] > 0
    assert info["runtimes"].get("onnxruntime") and info["runtimes"].get("litert")
    r = edgekit(inventory, "devices", "check", "test-hots")
    assert r.returncode != 0 and "Did you mean 'test-host'" in r.stderr


@pytest.mark.tflite
def test_run_on_local_and_ssh_host_gives_one_row_per_target_and_device(inventory, sshd, tmp_path):
    out = tmp_path / "out"
    r = edgekit(inventory, "run", MODEL, "--targets", "onnx-int8,tflite-int8", "--data", "digits", "--out", str(out),
                "--device", "local", "--device", "test-host", "--min-runs", "20", "--min-seconds", "0.1")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "digits_cnn" / "results.jsonl").read_text().splitlines()]
    by = {(x["target"], x["device"]["name"]): x for x in rows if x["target"] != "source"}
    assert set(by) == {(t, d) for t in ("onnx-int8", "tflite-int8") for d in ("local", "test-host")}
    for t in ("onnx-int8", "tflite-int8"):
        local, remote = by[(t, "local")], by[(t, "test-host")]
        assert remote["status"] == "ok" and remote["device"]["kind"] == "ssh"
        assert remote["device"]["probe"]["arch"] and remote["device"]["labels"] == {"board": "test-sshd"}
        # the same runtime build on the same CPU: the same outputs
        assert remote["parity"]["outputs"][0]["max_abs"] == pytest.approx(local["parity"]["outputs"][0]["max_abs"])
        assert remote["parity"]["task_value"] == local["parity"]["task_value"]
        assert remote["bench"]["n"] >= 20
    assert "test-host" in r.stdout.split("records:")[0]
    assert not sshd.leftovers()


from edgekit.devices.qemu import rootfs_ready  # noqa: E402

QEMU_CACHED = rootfs_ready()


@pytest.mark.tflite
@pytest.mark.qemu
@(pytest.mark.slow if not QEMU_CACHED else pytest.mark.qemu)
def test_run_on_ssh_host_and_emulated_arm64(inventory, sshd, tmp_path):
    """The issue's command: both devices in one table, their probes, parity for each."""
    out = tmp_path / "out"
    r = edgekit(inventory, "run", MODEL, "--targets", "onnx-int8,tflite-int8", "--data", "digits", "--out", str(out),
                "--device", "test-host", "--device", "arm64-emu", "--min-runs", "5", "--min-seconds", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout.split("records:")[0]
    assert table.count("test-host") >= 3 and table.count("arm64-emu (emu)") == 2
    assert "device arm64-emu (qemu-arm64, EMULATED" in table and "aarch64" in table
    rows = [json.loads(x) for x in (out / "digits_cnn" / "results.jsonl").read_text().splitlines()]
    emu = [x for x in rows if x["device"]["name"] == "arm64-emu"]
    assert len(emu) == 2
    for x in emu:
        assert x["status"] == "ok" and x["device"]["emulated"] is True
        assert x["device"]["probe"]["arch"] == "aarch64"
        assert "speedup_vs_source" not in x  # emulated timings are never compared as speed
        assert x["parity"]["passed"] and abs(x["parity"]["task_delta_points"]) <= 1.0
    md = (out / "digits_cnn" / "report.md").read_text()
    assert "EMULATED latency" in md


def test_a_leased_device_is_refused_then_recovered_when_holder_dies(inventory, sshd, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "from edgekit.devices.lease import lease\n"
                               "import time, sys\nwith lease('test-host'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = edgekit(inventory, "devices", "check", "test-host")
        assert r.returncode == 8 and f"in use by process {holder.pid}" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        holder.kill()
        holder.wait()
        r = edgekit(inventory, "devices", "check", "test-host")
        assert r.returncode == 0, r.stderr
    finally:
        holder.kill()


def test_device_wait_queues_behind_a_holder(inventory, sshd, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    model = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    holder = subprocess.Popen([sys.executable, "-c", "from edgekit.devices.lease import lease\n"
                               "import time\nwith lease('test-host'):\n    print('held', flush=True)\n"
                               "    time.sleep(2)\n"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    r = edgekit(inventory, "bench", str(model), "--device", "test-host", "--device-wait", "30", "--json",
                "--min-runs", "5", "--min-seconds", "0")
    waited = time.monotonic() - t0
    holder.wait()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["device"] == "test-host"
    assert waited >= 1.0  # it queued behind the holder instead of failing
