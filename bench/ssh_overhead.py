"""What an SSH device costs over running on this host, for the same artifact, in one run.

Starts the test SSH host (Debian's sshd in its own network namespace, as the tests do), then
prints the per-run overhead (connect, push of runner + artifact, worker start) and the
per-inference overhead of the persistent worker (bench p50 remote vs local; one infer round
trip with its npz push/pull), with ratios to the local figures. Needs root and openssh-server.

    .venv/bin/python bench/ssh_overhead.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_ms(fn, n=50) -> float:
    import numpy as np

    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> None:
    from edgekit.core.convert import convert
    from edgekit.core.data import load_data
    from edgekit.devices import LocalDevice
    from edgekit.core.pipeline import bench_summary
    from edgekit.core.session import RunnerSession, stage_runner
    from edgekit.core.sources import load_source
    from edgekit.core.specs import get_target
    from tests.sshd_host import sshd_host

    with tempfile.TemporaryDirectory() as tmp:
        src = load_source(str(ROOT / "examples" / "digits_cnn.py") + ":build")
        data = load_data("digits", src.inputs)
        art = convert(src, get_target("onnx-int8"), data, Path(tmp)).artifact
        sample = data.bench_sample()
        params = dict(warmup=20, min_runs=300, min_seconds=1.0)
        rows = {}
        with sshd_host() as host:
            where = f"sshd in a network namespace ({host.host}, veth)" if host.netns else "sshd on loopback"
            for label, make in (("local", LocalDevice), ("ssh", host.device)):
                t = {}
                t0 = time.perf_counter()
                dev = make()
                if label == "ssh":
                    dev._conn()
                t["connect"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                dev.push(stage_runner([]), "edgekit-runner")
                dev.push(art)
                t["push runner folder + artifact"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                s = RunnerSession(dev, runtimes=["onnxruntime"])
                t["worker start"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                s.load(art, "onnxruntime")
                t["load artifact"] = time.perf_counter() - t0
                t["per-run total"] = sum(t.values())
                b = bench_summary(s.bench(sample, **params), 1)
                t["inference p50 (in the worker)"] = b["p50_ms"] / 1000
                t["request round trip (env)"] = median_ms(s.env) / 1000
                t["infer round trip (npz push + run + pull)"] = median_ms(lambda: s.infer(sample), 30) / 1000
                s.close()
                dev.close()
                rows[label] = t
    print(f"\nSSH device overhead, digits CNN onnx-int8, {where}")
    print(f"{'':44s} {'local ms':>10s} {'ssh ms':>10s} {'ssh-local':>10s} {'ssh/local':>10s}")
    for k in rows["local"]:
        a, b = rows["local"][k] * 1000, rows["ssh"][k] * 1000
        print(f"{k:44s} {a:10.3f} {b:10.3f} {b - a:10.3f} {b / a if a else float('nan'):10.2f}")


if __name__ == "__main__":
    main()
