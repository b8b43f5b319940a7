"""The device side of a TensorRT build (standard library only; TensorRT itself when it builds).
Pushed to the device and run there with its Python:

    python trt_device.py probe                       -> JSON: trtexec, tensorrt, GPU, CUDA, driver
    python trt_device.py build PACKAGE ENGINE_FILE   -> JSON: the build with TensorRT's Python API

``PACKAGE`` is the host's build package (a folder with ``model.onnx`` and ``build.json``). The build
with ``trtexec`` needs no Python at all: the host runs the command over the device's transport.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _tensorrt_module() -> str | None:
    """The tensorrt Python module's version, or None (a JetPack install has no pip metadata)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu11"):
        v = _version(dist)
        if v:
            return v
    try:
        import tensorrt

        return getattr(tensorrt, "__version__", "?")
    except Exception as e:  # noqa: BLE001  a wheel that cannot load (no CUDA driver) is no TensorRT
        return f"unusable ({type(e).__name__}: {str(e)[:120]})"


def _nvidia_smi() -> dict:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {}
    try:
        out = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        head = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    first = (out.stdout.strip().splitlines() or [""])[0]
    name, _, driver = first.partition(",")
    facts = {"gpu": name.strip() or None, "driver": driver.strip() or None}
    for token in head.split("CUDA Version:")[1:2]:
        facts["cuda"] = token.split()[0]
    return facts


def _jetson() -> dict:
    """A Jetson has no nvidia-smi: its board model and L4T release say what it is."""
    facts = {}
    try:
        with open("/proc/device-tree/model") as f:
            model = f.read().strip("\0\n ")
        if "jetson" in model.lower() or "nvidia" in model.lower():
            facts["gpu"] = model
    except OSError:
        pass
    try:
        with open("/etc/nv_tegra_release") as f:
            facts["l4t"] = f.readline().strip()[:80]
    except OSError:
        pass
    return facts


def probe() -> dict:
    trtexec = shutil.which("trtexec")
    for guess in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec"):
        if trtexec is None and os.access(guess, os.X_OK):
            trtexec = guess
    facts = {"trtexec": trtexec, "tensorrt": _tensorrt_module(), "gpu": None, "cuda": None, "driver": None}
    facts.update({k: v for k, v in {**_jetson(), **_nvidia_smi()}.items() if v})
    if facts["cuda"] is None:
        nvcc = shutil.which("nvcc")
        if nvcc:
            try:
                out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=20).stdout
                facts["cuda"] = out.rsplit("release", 1)[-1].split(",")[0].strip() or None
            except (OSError, subprocess.SubprocessError):
                pass
    return facts


def trtexec_args(package: str, engine: str, build: dict) -> list[str]:
    """trtexec's arguments for the build package's settings (the engine only: no timed run)."""
    args = [f"--onnx={os.path.join(package, 'model.onnx')}", f"--saveEngine={engine}", "--skipInference"]
    args += list(build.get("trtexec_flags") or [])
    shapes = ",".join(f"{i['name']}:{'x'.join(str(d) for d in i['shape'])}" for i in build["inputs"] if i.get("dynamic"))
    if shapes:
        args += [f"--shapes={shapes}"]
    return args


def build_with_python(package: str, engine: str) -> dict:
    """Build the engine with TensorRT's Python API (no trtexec there)."""
    import tensorrt as trt

    with open(os.path.join(package, "build.json")) as f:
        build = json.load(f)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if build.get("strongly_typed") and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8; implied from 10 on
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.join(package, "model.onnx")):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError("TensorRT's ONNX parser refused the model: " + "; ".join(errors)[:1500])
    config = builder.create_builder_config()
    precision = build.get("precision", "fp32")
    if not build.get("strongly_typed"):
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    if build.get("workspace_mb"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(build["workspace_mb"]) << 20)
    if build.get("opt_level") is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(build["opt_level"])
    dynamic = [i for i in build["inputs"] if i.get("dynamic")]
    if dynamic:
        profile = builder.create_optimization_profile()
        for i in dynamic:
            profile.set_shape(i["name"], i["shape"], i["shape"], i["shape"])
        config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError("TensorRT's builder returned no engine (see the device's TensorRT log)")
    tmp = engine + ".part"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, engine)
    return {"how": "TensorRT Python API", "build_s": time.perf_counter() - t0, "tensorrt": trt.__version__}


def main(argv: list[str]) -> int:
    if argv[:1] == ["probe"]:
        print(json.dumps(probe()))
        return 0
    if argv[:1] == ["build"] and len(argv) == 3:
        try:
            print(json.dumps({"ok": True, **build_with_python(argv[1], argv[2])}))
        except Exception as e:  # noqa: BLE001  reported to the host as one line
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}))
            return 1
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
