"""The emulated ARM64 device: a Debian arm64 root under qemu-user, running the ARM builds of
onnxruntime and LiteRT. The first run builds the root (~3 min, needs root, debootstrap and
qemu-user-static); later runs reuse the cached one (then this module is not ``slow``)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgekit.devices import DeviceInfo, LocalDevice
from edgekit.devices.qemu import QemuArm64Device, build_rootfs, default_rootfs, rootfs_info, rootfs_ready
from edgekit.core.errors import EdgekitError

from .device_trees import FILES, leftovers, make_tree, snapshot

# Resolved at import, before conftest points EDGEKIT_CACHE at a private per-session cache: the
# root is meant to be built once per machine, not per test session.
ROOTFS = default_rootfs()
CACHED = rootfs_ready(ROOTFS)

pytestmark = [pytest.mark.qemu] + ([] if CACHED else [pytest.mark.slow])

TARGETS = {"onnx-int8": "onnxruntime", "tflite-int8": "litert"}
N_EVAL = 450  # the full digits held-out split: emulation copes with a model this small


@pytest.fixture(scope="module")
def rootfs():
    """Build the ARM64 root if it is not cached yet, else reuse it."""
    return build_rootfs(ROOTFS, progress=print)


@pytest.fixture(scope="module")
def device(rootfs):
    with QemuArm64Device("arm64-test", root=rootfs) as dev:
        yield dev


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [ln.split()[1] for ln in f if ln.split()[1].startswith(str(path))]


def test_rootfs_stamp(rootfs):
    info = rootfs_info(rootfs)
    assert info["debian"] == "bookworm" and info["machine"] == "aarch64"
    assert info["python"].startswith("3.11.")
    assert info["packages"]["onnxruntime"] == "1.32.0" and info["packages"]["ai-edge-litert"] == "2.3.0"
    assert info["packages"]["numpy"]


def test_machine_is_aarch64(device):
    assert device.kind == "qemu-arm64" and device.emulated and device.mode == "chroot"
    code, out, err = device.run(["{python}", "-c", "import platform; print(platform.machine())"])
    assert code == 0, err
    assert out.strip() == "aarch64"
    code, out, _ = device.run(["python3", "-c", "import os; print(os.getcwd())"])
    assert code == 0 and out.strip() == device.workdir()
    # the device sees no /sys, and no mount leaks onto the host
    code, out, _ = device.run(["ls", "/sys"])
    assert out.strip() == "" or "devices" in out  # only the cpuinfo stub, never the host's sysfs
    assert _mounts_under(device.root) == []


def test_push_pull_roundtrip(device, tmp_path):
    payload = os.urandom(300_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    remote = device.push(src, "blob.bin")
    assert remote == f"{device.workdir()}/blob.bin"
    code, out, err = device.run(["sha256sum", remote])
    assert code == 0, err
    assert out.split()[0] == hashlib.sha256(payload).hexdigest()
    # a file written on the device comes back
    code, _, err = device.run(["{python}", "-c", "open('made.txt', 'w').write('hi from ' + __import__('platform').machine())"])
    assert code == 0, err
    device.pull(f"{device.workdir()}/made.txt", tmp_path / "made.txt")
    assert (tmp_path / "made.txt").read_text() == "hi from aarch64"
    device.pull(remote, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload
    with pytest.raises(EdgekitError):
        device.pull("/etc/../../../../etc/shadow-no-such", tmp_path / "x")


def test_push_run_pull_folder(device, tmp_path):
    tree = make_tree(tmp_path / "model")
    remote = device.push(tree)
    assert remote == f"{device.workdir()}/model"
    code, out, err = device.run(["sh", "-c", "cd model && find . -type f | sort"])
    assert code == 0 and out.split("\n")[:-1] == [f"./{f}" for f in FILES], err
    assert device.run(["./model/bin/run.sh", "arm"])[1] == f"ran arm in {Path(device.workdir()).name}\n"
    code, out, err = device.run(["{python}", "-c", "import hashlib, platform; print(platform.machine(), "
                                 "hashlib.sha256(open('model/weights.bin', 'rb').read()).hexdigest())"])
    assert out.split() == ["aarch64", hashlib.sha256((tree / "weights.bin").read_bytes()).hexdigest()], err
    assert device.run(["sh", "-c", "echo made > model/sub/made.txt"])[0] == 0
    device.pull(remote, tmp_path / "back")
    got = snapshot(tmp_path / "back")
    assert got.pop("sub/made.txt")[0] == b"made\n" and got == snapshot(tree)
    # pushing again replaces the folder; nothing temporary stays in the work folder or here
    assert device.push(make_tree(tmp_path / "v2" / "model", seed=3, weights=10)) == remote
    assert device.run(["cat", "model/config.json"])[1] == '{"layers": 3, "seed": 3}\n'
    host_dir = device.root / device.workdir().lstrip("/")
    assert leftovers(host_dir) == [] and leftovers(tmp_path) == []


def test_folder_push_that_fails_leaves_nothing(device, tmp_path):
    tree = make_tree(tmp_path / "model")
    device.push(tree, "kept")
    before = device.run(["sh", "-c", "find kept | sort"])[1]
    (tree / "sub" / "gone").symlink_to(tmp_path / "nowhere")  # a file that disappeared
    for name in ("kept", "fresh"):
        with pytest.raises(EdgekitError) as e:
            device.push(tree, name)
        assert "device 'arm64-test'" in str(e.value) and "gone" in str(e.value)
    host_dir = device.root / device.workdir().lstrip("/")
    assert not (host_dir / "fresh").exists() and leftovers(host_dir) == []
    assert device.run(["sh", "-c", "find kept | sort"])[1] == before


def test_spawn_env_and_describe(device):
    value = "a b 'q' \"dq\" $HOME `id` \\ ;"
    proc = device.spawn(["{python}", "-c", "import json, os; print(json.dumps([os.environ.get('EDGEKIT_T'), "
                         "os.environ.get('PYTHONUNBUFFERED'), 'TF_CPP_MIN_LOG_LEVEL' in os.environ]))"],
                        env={"EDGEKIT_T": value})
    assert json.loads(proc.stdout.read()) == [value, "1", False]
    assert proc.wait(timeout=120) == 0
    assert device.describe() == DeviceInfo(os="Linux", arch="aarch64", emulated=True, kind="qemu-arm64")


def test_close_removes_workdir(rootfs):
    dev = QemuArm64Device("tmp", root=rootfs)
    host_dir = rootfs / dev.workdir().lstrip("/")
    dev.push(Path(__file__))
    assert host_dir.is_dir()
    dev.close()
    assert not host_dir.exists()


def test_missing_rootfs_says_how_to_build(tmp_path):
    with pytest.raises(EdgekitError) as e:
        QemuArm64Device("pi", root=tmp_path / "none")
    assert "edgekit devices setup pi" in str(e.value)


@pytest.fixture(scope="module")
def artifacts(digits_source, digits_data, tmp_path_factory):
    from edgekit.core.convert import convert
    from edgekit.core.specs import get_target

    out = tmp_path_factory.mktemp("qemu-out")
    return {name: convert(digits_source, get_target(name), digits_data, out).artifact for name in TARGETS}


def _run(device, artifact, runtime, data, bench):
    from edgekit.core.pipeline import bench_summary
    from edgekit.core.session import RunnerSession

    with RunnerSession(device) as session:
        loaded = session.load(artifact, runtime)
        outputs = session.infer(data.eval)
        env = session.env()
        b = bench_summary(session.bench(data.bench_sample(), warmup=1, min_runs=5, min_seconds=0, max_seconds=60), 1) \
            if bench else None
    return loaded, outputs, env, b


@pytest.mark.parametrize("name", list(TARGETS))
def test_runner_parity_on_arm64(name, device, artifacts, digits_data, digits_reference):
    from edgekit.core.parity import compare
    from edgekit.core.specs import get_target

    data = digits_data.limit(n_eval=N_EVAL)
    ref = {k: v[:N_EVAL] for k, v in digits_reference.items()}
    runtime, tol = TARGETS[name], get_target(name).tolerance

    loaded, arm, env, bench = _run(device, artifacts[name], runtime, data, bench=True)
    assert env["arch"] == "aarch64" and runtime in env["runtimes"]
    assert loaded["runtime_version"] in ("1.32.0", "2.3.0")
    p = compare(ref, arm, tol, data.labels, data.task)
    assert p.passed, p.failures
    assert p.n == N_EVAL and p.task_value > 0.9
    assert bench["n"] >= 5 and 0 < bench["p50_ms"] <= bench["max_ms"]

    with LocalDevice() as local:
        _, x86, _, _ = _run(local, artifacts[name], runtime, data, bench=False)
    diff = max(float(np.max(np.abs(arm[k].astype(np.float64) - x86[k].astype(np.float64)))) for k in arm)
    px = compare(ref, x86, tol, data.labels, data.task)
    assert px.passed, px.failures
    agree = float(np.mean(np.argmax(next(iter(arm.values())), -1) == np.argmax(next(iter(x86.values())), -1)))
    print(f"\n{name} on ARM64 ({runtime} {loaded['runtime_version']}, numpy {env['numpy']}): "
          f"accuracy {p.task_value:.4f} (torch {p.task_source:.4f}, x86 {px.task_value:.4f}); "
          f"cosine {p.worst.cosine_mean:.6f} / min {p.worst.cosine_min:.5f} (x86 {px.worst.cosine_mean:.6f} / "
          f"{px.worst.cosine_min:.5f}); max |out - torch| ARM {p.worst.max_abs:.3g}, x86 {px.worst.max_abs:.3g}; "
          f"max |ARM - x86| {diff:.3g}; top-1 ARM/x86 agreement {agree:.4f}; "
          f"emulated bench p50 {bench['p50_ms']:.2f} ms over {bench['n']} runs (not a timing model)")
    assert set(arm) == set(x86)
    # the same int8 model on other kernels: the two builds may differ (x86 ORT's u8s8 int8 kernels can
    # saturate), but both pass parity and agree on the class of nearly every sample
    assert np.isfinite(diff) and agree >= 0.98


def test_qemu_user_fallback_gives_the_same_answers(rootfs, artifacts, digits_data):
    """Without binfmt_misc the device runs ``qemu-aarch64-static -L ROOT``: same binaries, same outputs."""
    data = digits_data.limit(n_eval=50)
    with QemuArm64Device("fallback", root=rootfs, mode="qemu-user") as dev:
        code, out, err = dev.run(["{python}", "-c", "import platform; print(platform.machine())"])
        assert code == 0 and out.strip() == "aarch64", err
        proc = dev.spawn(["{python}", "-c", "import os; print(os.environ['EDGEKIT_T'])"], env={"EDGEKIT_T": "a $b 'c'"})
        assert proc.stdout.read() == "a $b 'c'\n" and proc.wait(timeout=120) == 0
        _, fb, env, _ = _run(dev, artifacts["onnx-int8"], "onnxruntime", data, bench=False)
        assert env["arch"] == "aarch64"
    with QemuArm64Device("chroot", root=rootfs) as dev:
        _, ch, _, _ = _run(dev, artifacts["onnx-int8"], "onnxruntime", data, bench=False)
    for k in ch:
        np.testing.assert_array_equal(fb[k], ch[k])
