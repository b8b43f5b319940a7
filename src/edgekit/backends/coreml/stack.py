"""coremltools imported as edgekit uses it: quickly and quietly. At import it probes every framework
it can convert from (TensorFlow: seconds; a torchvision that does not load beside a CPU torch;
transformers; xgboost) and warns about the versions it has not tested; none of that is needed to
convert a torch program, so those imports are kept away while it loads (scikit-learn stays: its
k-means palettizes weights). A missing install is named by the command that installs it."""
from __future__ import annotations

import sys

from ...core.errors import MissingExtra

EXTRA = "coreml"
# probed by coremltools._deps at import, never used on the torch route
KEPT_AWAY = ("tensorflow", "xgboost", "libsvm", "torchvision", "torchaudio", "transformers")


def import_coremltools():
    """``coremltools`` with its ``optimize.coreml`` module loaded."""
    if "coremltools.optimize.coreml" in sys.modules:
        return sys.modules["coremltools"]
    from ...core.lazy import native_output_silenced, quiet_frameworks

    import torch  # noqa: F401  before coremltools, whose probe would import it inside the silenced block

    blocked = [m for m in KEPT_AWAY if m not in sys.modules]
    for m in blocked:
        sys.modules[m] = None  # an ImportError for coremltools' probe
    try:
        with quiet_frameworks("coremltools"), native_output_silenced():
            import coremltools
            import coremltools.optimize.coreml  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", "") or ""
        if missing.split(".")[0] in ("coremltools", "cattrs", "pyaml", "attrs", "sympy", "torch"):
            raise MissingExtra(missing or "coremltools", EXTRA, "Core ML") from None
        raise
    finally:
        for m in blocked:
            if sys.modules.get(m, 0) is None:
                del sys.modules[m]
    return coremltools


def quiet():
    """coremltools and torch.export log and draw progress bars at length: kept off the terminal."""
    from ...core.lazy import quiet_frameworks

    return quiet_frameworks("coremltools", "torch.export", "torch._dynamo", "torchao")
