"""SshDevice against a real OpenSSH sshd (tests/sshd_host.py): transfers, commands, a remote
runner session equal to the local one, and every fault provoked for real: refused, wrong key,
changed and unknown host key, dropped connection, remote crash, remote hang, remote disk full."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.devices import LocalDevice
from edgekit.core.errors import DeviceError, RunnerError
from edgekit.core.session import RunnerSession

from .sshd_host import sshd_fixture

pytestmark = pytest.mark.ssh
pytest.importorskip("paramiko")

sshd = sshd_fixture("module")


def one_sentence(err) -> str:
    """The error's message: one sentence, one line, naming the device."""
    msg = err.message
    assert "\n" not in msg and msg.endswith("."), msg
    assert not re.search(r"[.;]\s+[A-Z]", msg), f"more than one sentence: {msg}"
    assert "Traceback" not in str(err)
    return msg


@pytest.fixture(autouse=True)
def clean_host(request):
    """After every test: no work folder and no process of the test user is left on the host."""
    yield
    if "sshd" not in request.fixturenames:
        return
    host = request.getfixturevalue("sshd")
    deadline = time.monotonic() + 5
    while host.user_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host.user_pids() == [], "processes left on the test host"
    assert host.leftovers("/tmp") == []
    if host.small_tmp:
        assert host.leftovers(host.small_tmp) == []


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(d / "mm.onnx"))
    # a small digits-style CNN: 1x8x8 image -> conv 3x3x8 -> relu -> flatten -> dense 10
    inits = [numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "kb"),
             numpy_helper.from_array(rng.standard_normal((8 * 6 * 6, 10)).astype(np.float32), "fw"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fb")]
    nodes = [helper.make_node("Conv", ["image", "k", "kb"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"])]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(d / "cnn.onnx"))
    return d


# ---- transport ----------------------------------------------------------------------------------

def test_push_run_pull(sshd, tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "blob.bin").write_bytes(data)
    with sshd.device() as dev:
        remote = dev.push(tmp_path / "blob.bin")
        assert remote.startswith("/tmp/edgekit-") and remote.endswith("/blob.bin")
        code, out, err = dev.run(["sha256sum", "blob.bin"])  # runs in the work folder
        assert code == 0 and out.split()[0] == hashlib.sha256(data).hexdigest()
        # argv is quoted, never a shell string
        code, out, _ = dev.run(["printf", "%s|", "a b", "it's", "$HOME", "; rm -rf /", "*"])
        assert out == "a b|it's|$HOME|; rm -rf /|*|"
        assert dev.run(["sh", "-c", "echo oops >&2; exit 3"]) == (3, "", "oops\n")
        assert dev.run(["{python}", "-c", "import sys; print(sys.executable)"])[1].strip() == sshd.python
        # push replaces atomically under the same name; nothing half-written stays
        (tmp_path / "blob.bin").write_bytes(b"second")
        assert dev.push(tmp_path / "blob.bin", "renamed.bin") == remote.replace("blob.bin", "renamed.bin")
        dev.push(tmp_path / "blob.bin")
        assert sorted(dev.run(["ls", "-A"])[1].split()) == ["blob.bin", "renamed.bin"]
        dev.pull(remote, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == b"second"
        with pytest.raises(DeviceError) as e:
            dev.pull(dev.workdir() + "/missing.npz", tmp_path / "missing.npz")
        assert "testhost" in one_sentence(e.value) and "missing.npz" in str(e.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "blob.bin"]
        workdir = dev.workdir()
        assert sshd.leftovers() == [workdir.rsplit("/", 1)[1]]
    assert sshd.leftovers() == []


def test_spawn_is_a_text_process(sshd):
    script = ("import sys\nprint('hello', flush=True)\nprint('to stderr', file=sys.stderr, flush=True)\n"
              "for line in sys.stdin:\n    print(line.strip().upper(), flush=True)\nsys.exit(4)\n")
    with sshd.device() as dev:
        proc = dev.spawn(["{python}", "-c", script])
        assert proc.pid and proc.poll() is None
        assert proc.stdout.readline() == "hello\n"
        proc.stdin.write("abc\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "ABC\n"
        proc.stdin.close()  # EOF reaches the remote process
        assert proc.wait(timeout=5) == 4 and proc.poll() == 4
        assert list(proc.stderr) == ["to stderr\n"]
        # kill() reaches the remote process, not only the channel
        proc = dev.spawn(["sleep", "30"])
        pid = proc.pid
        proc.kill()
        assert proc.wait(timeout=5) == -9
        deadline = time.monotonic() + 3
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}")  # same pid namespace: visible from here


def test_python_discovery_and_command_timeout(sshd):
    wrapper = sshd.dir / "home" / ".edgekit" / "venv" / "bin" / "python"
    with sshd.device(python=None) as dev:
        assert dev.python() == "/home/edgekit-test/.edgekit/venv/bin/python"
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as e:
            dev.run(["sleep", "30"], timeout=0.5)
        assert time.monotonic() - t0 < 3
        msg = one_sentence(e.value)
        assert "'sleep 30' did not finish within 0.5 s on SSH device 'testhost'" in msg
    wrapper.rename(wrapper.with_name("python.off"))
    try:
        with sshd.device(python=None) as dev:
            assert dev.python() == "python3"
    finally:
        wrapper.with_name("python.off").rename(wrapper)


def test_openssh_config_is_honoured(sshd, tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(f"Host board\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n"
                   f"  IdentityFile {sshd.identity_file}\n  UserKnownHostsFile {sshd.known_hosts}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSH_AUTH_SOCK", "")  # no agent: only the configured key
        from edgekit.devices.ssh import SshDevice

        with SshDevice("board1", "board", ssh_config=str(cfg), python=sshd.python) as dev:
            assert (dev.host, dev.port, dev.user) == (sshd.host, sshd.port, sshd.user)
            assert dev.run(["id", "-un"])[1].strip() == sshd.user
        # explicit arguments win over the config
        with SshDevice("board2", "board", user="nobody", ssh_config=str(cfg)) as dev:
            with pytest.raises(DeviceError) as e:
                dev.run(["true"])
        assert "rejected the login of user 'nobody'" in one_sentence(e.value)


# ---- the runner over SSH ------------------------------------------------------------------------

def test_runner_session_equals_local_and_overheads(sshd, models):
    from edgekit.core.session import stage_runner

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    img = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
    t = {}
    with sshd.device() as dev:
        t0 = time.perf_counter()
        dev._conn()
        t["connect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dev.push(stage_runner([]), "edgekit-runner")
        t["push the runner folder (+mktemp, sftp)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        remote = RunnerSession(dev)
        t["worker start (push + spawn + ready)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with remote, LocalDevice() as ldev, RunnerSession(ldev) as local:
            t["worker start (local, for comparison)"] = time.perf_counter() - t0
            assert remote.proc.pid != local.proc.pid
            for name, feed in (("mm.onnx", {"x": x}), ("cnn.onnx", {"image": img})):
                r_info = remote.load(models / name, "onnxruntime")
                l_info = local.load(models / name, "onnxruntime")
                assert r_info["inputs"] == l_info["inputs"] and r_info["outputs"] == l_info["outputs"]
                r_out, l_out = remote.infer(feed), local.infer(feed)
                assert r_out.keys() == l_out.keys()
                for k in r_out:
                    np.testing.assert_array_equal(r_out[k], l_out[k])
                b = remote.bench({k: v[:1] for k, v in feed.items()}, warmup=1, min_runs=20, min_seconds=0.01)
                assert len(b["times_s"]) >= 20 and b["batch"] == 1 and b["peak_rss_kb"] > 0
            env = remote.env()
            assert "onnxruntime" in env["runtimes"] and env["cpu_count"] >= 1
            n = 30
            t0 = time.perf_counter()
            for _ in range(n):
                remote.env()
            t["request round trip"] = (time.perf_counter() - t0) / n
            t0 = time.perf_counter()
            for _ in range(n):
                local.env()
            t["request round trip (local)"] = (time.perf_counter() - t0) / n
            t0 = time.perf_counter()
            for _ in range(n):
                remote.infer({"image": img[:1]})
            t["infer round trip (push npz + request + pull npz)"] = (time.perf_counter() - t0) / n
    print("\nSSH overheads (sshd in a netns on a veth pair):" if sshd.netns else "\nSSH overheads (loopback):")
    for k, v in t.items():
        print(f"  {k:50s} {v * 1000:8.1f} ms")
    assert t["connect"] + t["push the runner folder (+mktemp, sftp)"] + t["worker start (push + spawn + ready)"] < 1.0


# ---- faults ----------------------------------------------------------------------------------------

def test_connection_refused(sshd):
    port = 2 if sshd.netns else _closed_port()
    with sshd.device(port=port) as dev:
        with pytest.raises(DeviceError) as e:
            dev.workdir()
    msg = one_sentence(e.value)
    assert msg == f"SSH device 'testhost' ({sshd.user}@{sshd.host}:{port}) refused the connection."
    assert e.value.exit_code == 7


def test_wrong_key_is_an_authentication_failure(sshd):
    other = sshd.keygen("other_key")
    with sshd.device(identity_file=str(other)) as dev:
        with pytest.raises(DeviceError) as e:
            dev.run(["true"])
    msg = one_sentence(e.value)
    assert f"rejected the login of user '{sshd.user}' with key {other}" in msg and "'testhost'" in msg
    assert "ssh-copy-id" in e.value.hint


def test_changed_host_key_is_refused(sshd, tmp_path):
    impostor = sshd.keygen("impostor_host_key")
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line(impostor.with_suffix(".pub")))
    with sshd.device(known_hosts=str(kh)) as dev:
        with pytest.raises(DeviceError) as e:
            dev.run(["true"])
    msg = one_sentence(e.value)
    assert "'testhost'" in msg and "differs from the one in" in msg and "SHA256:" in msg
    assert "ssh-keygen -R" in e.value.hint and "ssh-keyscan" in e.value.hint


def test_unknown_host_key_is_refused_unless_checking_is_off(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with sshd.device(known_hosts=str(kh)) as dev:
        with pytest.raises(DeviceError) as e:
            dev.run(["true"])
    msg = one_sentence(e.value)
    assert "'testhost'" in msg and f"is not in {kh}" in msg
    port = "" if sshd.port == 22 else f"-p {sshd.port} "
    assert f"ssh-keyscan {port}{sshd.host} >> {kh}" in e.value.hint
    assert "strict_host_key_checking = false" in e.value.hint
    assert kh.read_text() == ""  # never added silently
    with sshd.device(known_hosts=str(kh), strict_host_key_checking=False) as dev:
        with pytest.warns(UserWarning, match="unknown host key"):
            assert dev.run(["true"])[0] == 0
    assert kh.read_text() == ""


def test_silent_server_times_out(sshd):
    with socket.socket() as srv:  # accepts TCP, never says a word
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with sshd.device(host="127.0.0.1", port=srv.getsockname()[1], connect_timeout=0.5) as dev:
            t0 = time.monotonic()
            with pytest.raises(DeviceError) as e:
                dev.run(["true"])
            assert time.monotonic() - t0 < 3
    assert "did not complete the SSH handshake within 0.5 s" in one_sentence(e.value)


def test_unanswered_connect_times_out(sshd):
    if not sshd.netns:
        pytest.skip("needs the network namespace to drop packets")
    with sshd.blackhole(), sshd.device(connect_timeout=0.5) as dev:
        t0 = time.monotonic()
        with pytest.raises(DeviceError) as e:
            dev.run(["true"])
        assert time.monotonic() - t0 < 2
    assert one_sentence(e.value) == f"SSH device 'testhost' ({sshd.user}@{sshd.host}:22) did not answer within 0.5 s."


def test_unresolvable_host(sshd, monkeypatch):
    def fail(*a, **kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with sshd.device(host="no-such-board.invalid") as dev:
        with pytest.raises(DeviceError) as e:
            dev.workdir()
    assert one_sentence(e.value) == "SSH device 'testhost': the host name 'no-such-board.invalid' does not resolve."


def test_dropped_connection_mid_request(sshd, models):
    with sshd.device() as dev:
        s = RunnerSession(dev, timeout=30)
        s.load(models / "mm.onnx", "onnxruntime")
        workdir = dev.workdir()
        threading.Timer(0.3, sshd.drop_connections).start()
        t0 = time.monotonic()
        with pytest.raises(RunnerError) as e:
            s.bench({"x": np.zeros((1, 4), np.float32)}, warmup=0, min_runs=1, min_seconds=20, max_seconds=20)
        assert time.monotonic() - t0 < 3  # the stream ended: no wait for the 30 s timeout
        msg = str(e.value)
        assert "the runner on testhost crashed (exit code 255) while benchmarking" in msg
        assert "the connection to SSH device 'testhost'" in msg and "was lost" in msg
        s.close()
        # between commands the device reconnects once, transparently, to the same work folder
        assert dev.run(["pwd"])[1].strip() == workdir
    # close() reconnected, stopped the orphaned worker and removed the folder (clean_host checks)


def test_reconnects_between_commands(sshd):
    with sshd.device() as dev:
        workdir = dev.workdir()
        assert sshd.drop_connections() >= 1
        time.sleep(0.1)
        assert dev.run(["pwd"]) == (0, workdir + "\n", "")
        assert dev.push(sshd.dir / "client_key.pub") == workdir + "/client_key.pub"


def test_remote_runner_crash(sshd, models):
    with sshd.device() as dev:
        s = RunnerSession(dev)
        s.load(models / "mm.onnx", "onnxruntime")
        assert dev.run(["kill", "-SEGV", str(s.proc.pid)])[0] == 0
        with pytest.raises(RunnerError) as e:
            s.infer({"x": np.zeros((1, 4), np.float32)})
        assert str(e.value).startswith("the runner on testhost crashed (exit code -11) while running inference.")
        s.close()


def test_remote_runner_hang_times_out(sshd, models):
    with sshd.device() as dev:
        s = RunnerSession(dev, timeout=1)
        pid = s.proc.pid
        assert dev.run(["kill", "-STOP", str(pid)])[0] == 0
        t0 = time.monotonic()
        with pytest.raises(RunnerError) as e:
            s.env()
        assert time.monotonic() - t0 < 3
        assert one_sentence(e.value).startswith("the runner on testhost did not answer within 1 s")
        deadline = time.monotonic() + 3
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{pid}"), "the stopped remote worker was not killed"
        s.close()


def test_remote_disk_full(sshd, tmp_path):
    if not sshd.small_tmp:
        pytest.skip("no private mount namespace for a small tmpfs on this host")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    with sshd.device(remote_tmp=sshd.small_tmp) as dev:
        with pytest.raises(DeviceError) as e:
            dev.push(big)
        msg = one_sentence(e.value)
        assert "pushing big.bin to SSH device 'testhost' failed: remote disk full in /tmp/small" in msg
        assert dev.run(["ls", "-A"])[1] == ""  # no partial file left
        (tmp_path / "small.bin").write_bytes(b"x" * 100_000)
        assert dev.push(tmp_path / "small.bin").endswith("/small.bin")  # the space came back


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_paramiko_is_a_missing_extra(monkeypatch):
    from edgekit.devices.ssh import SshDevice
    from edgekit.core.errors import MissingExtra

    monkeypatch.setitem(sys.modules, "paramiko", None)  # import paramiko -> ImportError
    with pytest.raises(MissingExtra) as e:
        SshDevice("board", "10.0.0.9")
    assert e.value.extra == "ssh" and "pip install 'edgekit[ssh]'" in str(e.value)
