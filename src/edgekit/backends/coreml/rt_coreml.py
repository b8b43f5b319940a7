"""The Core ML side of the runner (shipped to devices; numpy + coremltools, on macOS only).

Loads a ``.mlpackage`` with coremltools (Core ML compiles it for the machine) on the compute units the
package names in its ``edgekit.compute_units`` metadata (set by the target option ``compute_units``;
the environment variable ``EDGEKIT_COREML_COMPUTE_UNITS`` overrides it): ``all`` (CPU, GPU and Neural
Engine), ``cpu_only``, ``cpu_and_gpu``, ``cpu_and_ne``. Core ML sizes its own threads: ``threads`` is
not a setting it has. Anywhere but macOS the load ends in one sentence, before coremltools is imported.
"""
from __future__ import annotations

import json
import os
import platform

import numpy as np

try:
    from runtime_base import Model, WrongPlatform, fixed_input
except ImportError:  # imported inside edgekit rather than from the shipped runner folder
    from edgekit.runner.runtime_base import Model, WrongPlatform, fixed_input

UNITS = {"all": "ALL", "cpu_only": "CPU_ONLY", "cpu_and_gpu": "CPU_AND_GPU", "cpu_and_ne": "CPU_AND_NE"}
UNITS_ENV = "EDGEKIT_COREML_COMPUTE_UNITS"
# Core ML's multi-array data types (FeatureTypes.proto ArrayDataType) -> numpy
ARRAY_TYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32", 131080: "int8"}


def check_platform(system: str = "", machine: str = "") -> None:
    """Raise the one sentence on a machine that is not a Mac."""
    system, machine = system or platform.system(), machine or platform.machine()
    if system != "Darwin":
        raise WrongPlatform(f"Core ML runs only on macOS (this device is {system} {machine})")


def runtime_version() -> str:
    check_platform()
    import coremltools

    return f"coremltools {coremltools.__version__} (macOS {platform.mac_ver()[0]}, {platform.machine()})"


def signature(spec) -> dict:
    """{"inputs": [{"name", "shape", "dtype"}], "outputs": [names], "compute_units"} of a package's spec."""
    desc = spec.description
    inputs = [{"name": f.name, "shape": [int(d) for d in f.type.multiArrayType.shape],
               "dtype": ARRAY_TYPES.get(int(f.type.multiArrayType.dataType), "float32")} for f in desc.input]
    meta = dict(desc.metadata.userDefined)
    return {"inputs": inputs, "outputs": [f.name for f in desc.output],
            "compute_units": meta.get("edgekit.compute_units", "all"),
            "source": json.loads(meta["edgekit.signature"]) if "edgekit.signature" in meta else None}


class CoreMLModel(Model):
    runtime = "coreml"

    def __init__(self, path: str, threads: int):
        check_platform()
        import coremltools as ct

        spec = ct.utils.load_spec(path)
        sig = signature(spec)
        units = os.environ.get(UNITS_ENV) or sig["compute_units"]
        if units not in UNITS:
            raise ValueError(f"compute units '{units}' are not one of {', '.join(UNITS)}")
        self.compute_units = units
        self.model = ct.models.MLModel(path, compute_units=getattr(ct.ComputeUnit, UNITS[units]))
        self.version = f"{runtime_version()}, compute units {units}"
        self.declare(sig["inputs"], sig["outputs"])

    def prepare(self, feed):
        return {s["name"]: fixed_input(feed, s, "the package is converted") for s in self.inputs}

    def run(self, feed):
        out = self.model.predict(feed)
        return {name: np.asarray(out[name]) for name in self.outputs}


MODEL = CoreMLModel
