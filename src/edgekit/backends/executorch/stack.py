"""ExecuTorch imported as edgekit uses it: quietly (torchao logs the CUDA kernels it cannot load, on
every import), and a missing or broken install named by the command that installs it."""
from __future__ import annotations

import sys

from ...core.errors import MissingExtra

EXTRA = "executorch"


def import_exir():
    """``executorch.exir`` with the XNNPACK partitioner and quantizer (what the converter uses)."""
    if "executorch.exir" in sys.modules and "executorch.backends.xnnpack.partition.xnnpack_partitioner" in sys.modules:
        return sys.modules["executorch.exir"]
    from ...core.lazy import native_output_silenced, quiet_frameworks

    try:
        with quiet_frameworks("torchao"), native_output_silenced():
            import executorch.exir as exir
            import executorch.backends.xnnpack.partition.xnnpack_partitioner  # noqa: F401
            import executorch.backends.xnnpack.quantizer.xnnpack_quantizer  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", "") or ""
        if missing.split(".")[0] in ("executorch", "torchao", "ruamel", "flatbuffers", "tabulate", "torch"):
            raise MissingExtra(missing or "executorch", EXTRA, "ExecuTorch") from None
        raise
    return exir
