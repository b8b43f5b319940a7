"""LocalDevice: folders used in place and pulled atomically with their modes, environment
variables for spawned processes, what it says it is; and the kinds' ``emulated`` in devices.toml."""
from __future__ import annotations

import json
import os
import platform

import pytest

from edgekit.core.errors import DeviceError, UserError
from edgekit.devices import DeviceInfo, LocalDevice
from edgekit.devices.inventory import DeviceSpec

from .device_trees import FILES, leftovers, make_tree, snapshot


def test_push_runs_and_pulls_a_folder(tmp_path):
    tree = make_tree(tmp_path / "model")
    with LocalDevice() as dev:
        remote = dev.push(tree)
        assert remote == str(tree.resolve())  # same file system: used in place
        code, out, err = dev.run(["sh", "-c", 'cd "$1" && find . -type f | sort', "sh", remote])
        assert code == 0 and out.split("\n")[:-1] == [f"./{f}" for f in FILES], err
        assert dev.run([f"{remote}/bin/run.sh", "here"])[1].startswith("ran here in ")
        (tmp_path / "back").mkdir()
        (tmp_path / "back" / "stale.txt").write_text("replaced")
        dev.pull(remote, tmp_path / "back")
        assert snapshot(tmp_path / "back") == snapshot(tree)  # bytes and modes; the old folder is gone
        dev.pull(f"{remote}/bin/run.sh", tmp_path / "run.sh")
        assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o755
        assert leftovers(tmp_path) == []
        with pytest.raises(UserError):
            dev.push(tmp_path / "missing")
        with pytest.raises(DeviceError):
            dev.pull(str(tmp_path / "missing"), tmp_path / "x")


def test_a_pull_that_fails_midway_leaves_the_old_copy(tmp_path):
    tree = make_tree(tmp_path / "model")
    with LocalDevice() as dev:
        dev.pull(str(tree), tmp_path / "back")
        before = snapshot(tmp_path / "back")
        (tree / "config.json").write_text("new")
        (tree / "sub" / "gone").symlink_to(tmp_path / "nowhere")  # a file that disappeared
        with pytest.raises(DeviceError) as e:
            dev.pull(str(tree), tmp_path / "back")
        assert "pulling model from device 'local' failed" in str(e.value) and "gone" in str(e.value)
        assert snapshot(tmp_path / "back") == before and leftovers(tmp_path) == []
        with pytest.raises(DeviceError):
            dev.pull(str(tree), tmp_path / "fresh")
        assert not (tmp_path / "fresh").exists() and leftovers(tmp_path) == []


def test_spawn_env_and_describe():
    value = "a b 'q' \"dq\" $HOME `id` \\ ;"
    with LocalDevice() as dev:
        proc = dev.spawn(["{python}", "-c", "import json, os; print(json.dumps([os.environ.get('EDGEKIT_T'), "
                          "os.environ.get('PYTHONUNBUFFERED'), os.environ.get('TF_CPP_MIN_LOG_LEVEL')]))"],
                         env={"EDGEKIT_T": value})
        assert json.loads(proc.stdout.read()) == [value, "1", os.environ.get("TF_CPP_MIN_LOG_LEVEL")]
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ValueError):
            dev.spawn(["true"], env={"NOT A NAME": "x"})
        assert dev.describe() == DeviceInfo(os=platform.system(), arch=platform.machine(), emulated=False,
                                            kind="local")


def test_spec_emulated_comes_from_the_device_class():
    assert not DeviceSpec("here", "local").emulated
    assert not DeviceSpec("board", "ssh", host="10.0.0.9").emulated
    assert DeviceSpec("emu", "qemu-arm64").emulated
