"""Shared fixtures: a private conversion cache per test session, the digits CNN source and data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def edgekit_cache(tmp_path_factory):
    """Every session starts with an empty conversion cache (the example weights are kept where
    EDGEKIT_TEST_CACHE says, to save retraining; they are deterministic)."""
    cache = tmp_path_factory.mktemp("edgekit-cache")
    # the emulated ARM64 root is built once per machine, not per test session: keep pointing at it
    from edgekit.devices.qemu import default_rootfs

    os.environ.setdefault("EDGEKIT_QEMU_ROOTFS", str(default_rootfs()))
    old = os.environ.get("EDGEKIT_CACHE")
    keep = os.environ.get("EDGEKIT_TEST_CACHE")
    if keep and (Path(keep) / "examples").exists():
        (cache / "examples").symlink_to(Path(keep) / "examples")
    os.environ["EDGEKIT_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("EDGEKIT_CACHE", None)
    else:
        os.environ["EDGEKIT_CACHE"] = old


@pytest.fixture(scope="session")
def digits_source():
    from edgekit.core.sources import load_source

    return load_source(str(ROOT / "examples" / "digits_cnn.py") + ":build")


@pytest.fixture(scope="session")
def digits_data(digits_source):
    from edgekit.core.data import load_data

    return load_data("digits", digits_source.inputs)


@pytest.fixture(scope="session")
def digits_reference(digits_source, digits_data):
    from edgekit.backends.torch.reference import TorchReference

    return TorchReference(digits_source).outputs(digits_data.eval)
