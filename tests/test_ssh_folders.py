"""SshDevice against a real OpenSSH sshd (tests/sshd_host.py), part 2: folders pushed and pulled
over SFTP (atomic, mode bits kept, nothing left behind on failure), environment variables for
spawned processes, and what the device says it is."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

from edgekit.core.errors import DeviceError, UserError
from edgekit.devices import DeviceInfo

from .device_trees import FILES, leftovers, make_tree, snapshot
from .sshd_host import sshd_fixture
from .test_ssh_device import one_sentence

pytestmark = pytest.mark.ssh
pytest.importorskip("paramiko")

sshd = sshd_fixture("module")


@pytest.fixture(autouse=True)
def clean_host(sshd):
    """After every test: no work folder and no process of the test user is left on the host."""
    yield
    deadline = time.monotonic() + 5
    while sshd.user_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sshd.user_pids() == [], "processes left on the test host"
    assert sshd.leftovers("/tmp") == []
    if sshd.small_tmp:
        assert sshd.leftovers(sshd.small_tmp) == []


def _ls(dev) -> list[str]:
    return sorted(dev.run(["ls", "-A"])[1].split("\n"))[1:]


def test_push_run_pull_folder(sshd, tmp_path):
    tree = make_tree(tmp_path / "model")
    with sshd.device() as dev:
        remote = dev.push(tree)
        assert remote == dev.workdir() + "/model"
        code, out, err = dev.run(["sh", "-c", "cd model && find . -type f | sort"])
        assert code == 0, err
        assert out.split("\n")[:-1] == [f"./{f}" for f in FILES]
        assert dev.run(["find", "model/empty", "-type", "d"])[1] == "model/empty\n"
        # the executable stays executable; modes are kept
        assert dev.run(["./model/bin/run.sh", "there"]) == (0, f"ran there in {Path(dev.workdir()).name}\n", "")
        assert dev.run(["stat", "-c", "%a", "model/bin/run.sh", "model/sub/deeper/leaf.txt"])[1].split() == [
            "755", "640"]
        read = "import sys; print(open(sys.argv[1], 'rb').read() == open(sys.argv[2], 'rb').read())"
        pushed_copy = dev.push(tree / "weights.bin", "w.bin")
        assert dev.run(["{python}", "-c", read, "model/weights.bin", pushed_copy])[1] == "True\n"
        # the device writes into the folder; it all comes back byte for byte, modes included
        assert dev.run(["sh", "-c", "echo made there > model/sub/made.txt"])[0] == 0
        dev.pull(remote, tmp_path / "back")
        expected = snapshot(tree)
        expected["sub/made.txt"] = (b"made there\n", oct(0o666 & ~0o022))
        got = snapshot(tmp_path / "back")
        assert got.keys() == expected.keys()
        assert {k: v for k, v in got.items() if k != "sub/made.txt"} == {
            k: v for k, v in expected.items() if k != "sub/made.txt"}
        assert got["sub/made.txt"][0] == b"made there\n"
        # pulling again replaces the local folder; pushing again replaces the remote one
        dev.pull(remote, tmp_path / "back")
        assert leftovers(tmp_path) == []
        tree2 = make_tree(tmp_path / "v2" / "model", seed=5, weights=1000)
        assert dev.push(tree2) == remote
        assert dev.run(["cat", "model/config.json"])[1] == '{"layers": 3, "seed": 5}\n'
        assert dev.run(["test", "-e", "model/sub/made.txt"])[0] == 1  # the old tree is gone
        assert dev.push(tree2, "renamed") == dev.workdir() + "/renamed"
        assert _ls(dev) == ["model", "renamed", "w.bin"]
        with pytest.raises(DeviceError) as e:
            dev.pull(dev.workdir() + "/no-such-folder", tmp_path / "x")
        assert "testhost" in one_sentence(e.value) and "no-such-folder" in str(e.value)
        assert not (tmp_path / "x").exists() and leftovers(tmp_path) == []


def test_pushed_file_keeps_its_mode(sshd, tmp_path):
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool\n")
    os.chmod(tool, 0o750)
    with sshd.device() as dev:
        assert dev.run([dev.push(tool)]) == (0, "tool\n", "")
        assert dev.run(["stat", "-c", "%a", "tool.sh"])[1] == "750\n"
        dev.pull(dev.workdir() + "/tool.sh", tmp_path / "back.sh")
        assert oct((tmp_path / "back.sh").stat().st_mode & 0o777) == oct(0o750)


def test_folder_push_that_fails_midway_leaves_nothing(sshd, tmp_path, monkeypatch):
    from edgekit.devices import ssh_files

    tree = make_tree(tmp_path / "model")
    v2 = make_tree(tmp_path / "v2" / "model", seed=9)
    with sshd.device() as dev:
        dev.push(tree)
        before = dev.run(["sh", "-c", "find model | sort; cat model/config.json"])[1]
        # a file disappears while the folder is being uploaded: after the first files went
        real_open, opened = open, []

        def vanishing_open(path, *a, **kw):
            opened.append(path)
            if len(opened) == 2:
                os.unlink(v2 / "weights.bin")
            return real_open(path, *a, **kw)

        monkeypatch.setattr(ssh_files, "open", vanishing_open, raising=False)
        with pytest.raises(UserError) as e:
            dev.push(v2)
        monkeypatch.undo()
        msg = one_sentence(e.value)
        assert f"cannot push '{v2 / 'weights.bin'}' to device 'testhost'" in msg and "No such file" in msg
        assert len(opened) >= 2
        # the earlier folder is intact at the final name, and no .part is left
        assert _ls(dev) == ["model"]
        assert dev.run(["sh", "-c", "find model | sort; cat model/config.json"])[1] == before
        # a dangling link is found before anything is sent
        (tree / "sub" / "gone").symlink_to(tmp_path / "nowhere")
        with pytest.raises(UserError) as e:
            dev.push(tree, "other")
        assert "No such file" in one_sentence(e.value) and _ls(dev) == ["model"]


def test_folder_push_to_a_full_disk_leaves_nothing(sshd, tmp_path):
    if not sshd.small_tmp:
        pytest.skip("no private mount namespace for a small tmpfs on this host")
    tree = make_tree(tmp_path / "big", weights=400_000)
    for i in range(3):
        (tree / "sub" / f"shard{i}.bin").write_bytes(os.urandom(400_000))
    with sshd.device(remote_tmp=sshd.small_tmp) as dev:
        with pytest.raises(DeviceError) as e:
            dev.push(tree)
        msg = one_sentence(e.value)
        assert "pushing big to SSH device 'testhost' failed: remote disk full in /tmp/small" in msg
        assert dev.run(["ls", "-A"])[1] == ""  # no partial folder left
        small = make_tree(tmp_path / "small", weights=1000)
        assert dev.push(small).endswith("/small")  # the space came back
        assert dev.run(["ls", "-A"])[1] == "small\n"


def test_spawn_passes_environment_variables_unchanged(sshd):
    tricky = {"EDGEKIT_T1": "a b  'single' \"double\" $HOME ${PATH} `id` $(echo no) ; | & \\ * ~ \t end",
              "EDGEKIT_T2": "", "EDGEKIT_T3": "line1\nline2", "EDGEKIT_T4": "-- --", "LANG": "C.UTF-8"}
    show = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
            "['EDGEKIT_T1', 'EDGEKIT_T2', 'EDGEKIT_T3', 'EDGEKIT_T4', 'LANG', 'PYTHONUNBUFFERED']}))")
    with sshd.device() as dev:
        proc = dev.spawn(["{python}", "-c", show, "--", "x"], env=tricky)
        got = json.loads(proc.stdout.read())
        assert proc.wait(timeout=10) == 0
        assert got == {**tricky, "PYTHONUNBUFFERED": "1"}
        # no variables: only the device's default
        proc = dev.spawn(["{python}", "-c", show])
        assert json.loads(proc.stdout.read())["EDGEKIT_T1"] is None
        assert proc.wait(timeout=10) == 0
        for bad in ({"A B": "x"}, {"A=B": "x"}, {"$(id)": "x"}, {"A": 1}):
            with pytest.raises(ValueError):
                dev.spawn(["true"], env=bad)


def test_describe_asks_the_device_once_per_connection(sshd, monkeypatch):
    with sshd.device() as dev:
        calls = []
        real = dev._run
        monkeypatch.setattr(dev, "_run", lambda argv, *a, **kw: calls.append(argv) or real(argv, *a, **kw))
        info = dev.describe()
        assert info == DeviceInfo(os="Linux", arch=platform.machine(), emulated=False, kind="ssh")
        assert dev.describe() is info and calls == [["uname", "-s", "-m"]]
        sshd.drop_connections()  # a new connection may be another machine behind the same address
        time.sleep(0.1)
        assert dev.run(["true"])[0] == 0
        assert dev.describe() == info and calls.count(["uname", "-s", "-m"]) == 2
