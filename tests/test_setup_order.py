"""`edgekit setup`: a backend's steps run after those of the backends it builds on (``needs``)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edgekit.backends import backends, get_backend, load_backend
from edgekit.cli.setup import _with_needs
from edgekit.core.errors import SpecError


def test_needed_backends_come_first_and_are_added_when_not_chosen():
    # tfjs's converter imports tf_keras, which the tflite backend's setup step installs
    order = [b.name for b in _with_needs([get_backend("tfjs")])]
    assert order == ["tflite", "tfjs"]
    every = [b.name for b in _with_needs(list(backends().values()))]
    assert every.index("tflite") < every.index("tfjs")
    assert sorted(every) == sorted(backends()) and len(every) == len(set(every))


def test_a_circle_of_needs_is_refused(tmp_path, monkeypatch):
    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "backend.toml").write_text(f'name = "{name}"\nneeds = ["{other}"]\n')
    found = {n: load_backend(f"pkg_{n}", tmp_path / n) for n in "ab"}
    monkeypatch.setattr("edgekit.backends.get_backend", found.__getitem__)
    with pytest.raises(SpecError, match="circle: a -> b -> a"):
        _with_needs([found["a"]])


def test_setup_check_lists_tflite_before_tfjs():
    r = subprocess.run([sys.executable, "-m", "edgekit", "setup", "--check", "tfjs"], capture_output=True, text=True)
    lines = [ln.split(":")[0] for ln in r.stdout.splitlines() if ":" in ln]
    assert lines and lines[0] == "tflite", r.stdout + r.stderr
    assert "tfjs" in lines
