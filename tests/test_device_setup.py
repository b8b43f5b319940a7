"""`edgekit devices setup`: runtimes reach a device that has none, with wheels fetched on this host."""
import json
import os
import subprocess
import sys

import pytest

from .sshd_host import sshd_fixture

pytestmark = pytest.mark.ssh
sshd = sshd_fixture("module")


def test_setup_installs_runtimes_into_an_edgekit_env(sshd, tmp_path):
    inv = tmp_path / "devices.toml"
    # no python given: the device's own python3 (Debian's) is all it has
    inv.write_text(sshd.devices_toml("bare", python=False))
    env = dict(os.environ, EDGEKIT_DEVICES=str(inv))
    home = sshd.remote_path(f"/home/{sshd.user}")
    planted = home / ".edgekit"  # the fixture planted a stand-in env: start from a bare device
    subprocess.run(["rm", "-rf", str(planted)], check=True)
    # a fresh board without numpy: the check says what is missing and the command that fixes it
    r = subprocess.run([sys.executable, "-m", "edgekit", "devices", "check", "bare"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 5 and r.stderr.count("\n") == 1, r.stderr
    assert "the runner cannot start on bare: its Python has no 'numpy'. Run: edgekit devices setup bare" in r.stderr
    r = subprocess.run([sys.executable, "-m", "edgekit", "devices", "setup", "bare", "--runtime", "onnxruntime"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["installed"]["onnxruntime"] == "1.32.0" and result["installed"]["numpy"]
    assert (home / ".edgekit" / "venv" / "bin" / "python").exists()
    assert json.loads((home / ".edgekit" / "versions.json").read_text())["onnxruntime"] == "1.32.0"
    r = subprocess.run([sys.executable, "-m", "edgekit", "devices", "check", "bare", "--json"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["python_path"].endswith(".edgekit/venv/bin/python")
    assert info["runtimes"]["onnxruntime"] == "1.32.0" and "litert" not in info["runtimes"]
    assert not sshd.leftovers()
