"""The TF.js Node runner on other devices. On an SSH device (the real sshd test host, whose user has a
fresh home and sees none of this host's npm cache): before `edgekit devices setup --runtime tfjs` the
run fails naming that command; the setup checks Node.js there and pushes the runner's npm packages
into ~/.edgekit/npm; then the run gives parity and benchmark records naming the device. On a device
without Node.js (the emulated ARM64 root has none) the run fails naming the missing command."""
from __future__ import annotations

import json
import subprocess

import pytest

from edgekit.backends.tfjs.npm import node_modules_dir
from edgekit.devices.qemu import rootfs_ready

from .sshd_host import sshd_fixture
from .test_tfjs import DIGITS, FAST, edgekit, pytestmark as tfjs_marks, records

pytestmark = list(tfjs_marks)
sshd = sshd_fixture("module")
QEMU_CACHED = rootfs_ready()  # before conftest points EDGEKIT_CACHE at the session's private cache


@pytest.mark.ssh
def test_node_runner_on_an_ssh_device(sshd, tmp_path):
    inv = tmp_path / "devices.toml"
    inv.write_text(sshd.devices_toml("test-host", python=False))
    env = {"EDGEKIT_DEVICES": str(inv)}
    home = sshd.remote_path(f"/home/{sshd.user}")
    subprocess.run(["rm", "-rf", str(home / ".edgekit" / "npm")], check=True)  # a board without the packages
    run = ["run", DIGITS, "--targets", "tfjs", "--data", "digits", "--device", "test-host", *FAST]

    r = edgekit(*run, "-o", str(tmp_path / "before"), env=env)
    rec = records(tmp_path / "before", "digits_cnn")[("tfjs", "test-host")]
    assert rec["status"] != "ok", rec
    assert "edgekit devices setup test-host --runtime tfjs" in rec["reason"], rec["reason"]

    r = edgekit("devices", "setup", "test-host", "--runtime", "tfjs", env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    installed = json.loads(r.stdout)["installed"]
    assert installed["tfjs"] == "4.22.0" and installed["node"].startswith("v"), installed
    mods = home / ".edgekit" / "npm" / node_modules_dir().parent.name / "node_modules"
    assert (mods / "@tensorflow" / "tfjs-backend-wasm" / "dist" / "tfjs-backend-wasm-simd.wasm").is_file()
    assert not (mods / "playwright-core").exists()  # only what the Node runner loads travels
    assert json.loads((home / ".edgekit" / "versions.json").read_text())["tfjs"] == "4.22.0"

    r = edgekit(*run, "-o", str(tmp_path / "after"), env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rec = records(tmp_path / "after", "digits_cnn")[("tfjs", "test-host")]
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["device"]["name"] == "test-host" and rec["device"]["kind"] == "ssh"
    assert rec["device"]["probe"]["runtimes"] == {"tfjs": "4.22.0"}
    assert rec["parity"]["passed"] and rec["parity"]["outputs"][0]["cosine_min"] > 0.9999, rec["parity"]
    assert rec["bench"]["p50_ms"] > 0 and "(wasm" in rec["runtime_version"] and "Node.js" in rec["runtime_version"]
    assert not sshd.leftovers()


@pytest.mark.qemu
@(pytest.mark.slow if not QEMU_CACHED else pytest.mark.qemu)
def test_a_device_without_node_names_the_missing_command(tmp_path):
    inv = tmp_path / "devices.toml"
    inv.write_text('[devices.arm64-emu]\nkind = "qemu-arm64"\n')
    edgekit("run", DIGITS, "--targets", "tfjs", "--data", "digits", "--device", "arm64-emu", *FAST,
            "-o", str(tmp_path / "out"), env={"EDGEKIT_DEVICES": str(inv)})
    rec = records(tmp_path / "out", "digits_cnn")[("tfjs", "arm64-emu")]
    assert rec["status"] == "run_failed"
    assert rec["reason"].startswith("the runner cannot start on arm64-emu: it has no 'node' on its PATH."), rec["reason"]
