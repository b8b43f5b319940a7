"""What the device has for TensorRT (asked of it over its transport, once per open device), the one
sentence when it has none, and the build there: trtexec when it has it, else TensorRT's Python API."""
from __future__ import annotations

import json
import weakref
from pathlib import Path

from ...core.errors import ConversionError, DeviceError, UserError
from .trtexec_log import parse

HERE = Path(__file__).resolve().parent
BUILD_TIMEOUT_S = 3600.0  # a large model's tactic search takes minutes on a small board
INSTALL = "pip install tensorrt cuda-python, or JetPack on a Jetson"
_FACTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def facts_of(device) -> dict:
    """The device's trtexec, tensorrt module, GPU, CUDA and driver (``trt_device.py probe`` run there)."""
    try:
        return _FACTS[device]
    except (KeyError, TypeError):
        pass
    script = device.push(HERE / "trt_device.py", "edgekit-trt_device.py")
    code, out, err = device.run(["{python}", script, "probe"], timeout=120)
    try:
        facts = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (err.strip().splitlines() or [f"exit code {code}"])[-1][:300]
        raise DeviceError(f"asking {where(device)} what it has for TensorRT failed ({last}).") from None
    facts["script"] = script
    try:
        _FACTS[device] = facts
    except TypeError:
        pass
    return facts


def where(device) -> str:
    return "this host (device 'local')" if getattr(device, "kind", "") == "local" else f"device '{device.name}'"


def require_tensorrt(device, edge: str) -> dict:
    """The device's facts, or the one sentence that says it has no TensorRT (a user error: the target
    asks for an NVIDIA device)."""
    facts = facts_of(device)
    module = facts.get("tensorrt")
    usable_module = bool(module) and not str(module).startswith("unusable")
    if facts.get("trtexec") or usable_module:
        return facts
    lacks = "no trtexec on PATH, " + ("no tensorrt Python module" if not module else
                                      f"its tensorrt Python module does not load: {str(module)[10:-1]}")
    gpu = "" if facts.get("gpu") else " and no NVIDIA GPU"
    raise UserError(f"{where(device)} has no TensorRT ({lacks}){gpu}: TensorRT engines are built on the NVIDIA "
                    f"device that runs them; install TensorRT there ({INSTALL}), or pick a target that runs on "
                    f"'{device.name}' (onnx, tflite).")


def build_remote(edge: str, device, facts: dict, package: str, engine: str, build: dict, timeout: float) -> dict:
    """Build ``engine`` (a path on the device) from the pushed ``package`` there: what built it, how long."""
    if facts.get("trtexec"):
        from .trt_device import trtexec_args

        code, out, err = device.run([facts["trtexec"], *trtexec_args(package, engine, build)], timeout=timeout)
        info = parse(out + "\n" + err)
        if code != 0 or info.get("passed") is False:
            raise ConversionError(edge, f"trtexec on {device.name} failed (exit code {code}): {_first_error(out + err)}")
        info.pop("summary", None)
        return {"how": "trtexec", "command": "trtexec " + " ".join(trtexec_args(package, engine, build)), **info}
    code, out, err = device.run(["{python}", facts["script"], "build", package, engine], timeout=timeout)
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"ok": False, "error": (err.strip().splitlines() or [f"exit code {code}"])[-1]}
    if not res.get("ok"):
        raise ConversionError(edge, f"TensorRT's builder on {device.name} failed: {res.get('error', '')[:500]}")
    res.pop("ok", None)
    return res


def _first_error(log: str) -> str:
    """trtexec's first error line ("[E] ..."), else its last line."""
    from .trtexec_log import strip

    lines = [x for x in log.splitlines() if x.strip()]
    errors = [strip(x) for x in lines if "[E]" in x]
    return (errors[0] if errors else (strip(lines[-1]) if lines else "no output"))[:400]
