"""The layout is the architecture: generic code names no backend, format or runtime, and every
module stays small. What counts as a name is read from the registry, so a new backend's names
are checked too."""
import io
import re
import tokenize
from pathlib import Path

from edgekit.backends import backends, formats, runtimes
from edgekit.core.graph import load_converters

SRC = Path(__file__).resolve().parents[1] / "src" / "edgekit"
BACKEND_FOLDERS = {p for p in (SRC / "backends").iterdir() if p.is_dir() and (p / "backend.toml").exists()}
# the frameworks behind the built-in backends: generic code must not import or mention them either
FRAMEWORKS = {"tensorflow", "onnxruntime", "ai_edge_litert", "onnx2tf", "litert_torch", "keras", "tflite_runtime"}


def _forbidden() -> set[str]:
    names = set(backends()) | set(formats()) | FRAMEWORKS
    for r in runtimes().values():
        names |= {r.name, r.module, *r.aliases}
    names |= set(load_converters())
    return {n.lower() for n in names}


def generic_modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if not any(f in p.parents for f in BACKEND_FOLDERS))


def _code_words(path: Path) -> list[tuple[int, str]]:
    """Identifiers and string contents of a module (comments and docstrings left out)."""
    out, prev = [], None
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type == tokenize.NAME:
            out.append((tok.start[0], tok.string))
        elif tok.type == tokenize.STRING:
            docstring = prev in (None, tokenize.INDENT, tokenize.NEWLINE, tokenize.DEDENT)
            if not docstring:
                out.append((tok.start[0], tok.string))
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            prev = tok.type
    return out


def test_generic_code_names_no_backend_format_or_runtime():
    forbidden = _forbidden()
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(sorted(map(re.escape, forbidden), key=len, reverse=True))
                         + r")(?![A-Za-z0-9_])", re.IGNORECASE)
    hits = []
    for path in generic_modules():
        for line, text in _code_words(path):
            for m in pattern.finditer(text):
                hits.append(f"{path.relative_to(SRC)}:{line}: {m.group(0)!r} in {text[:60]!r}")
    assert not hits, "generic code names backends/formats/runtimes:\n" + "\n".join(hits)


def test_every_module_is_under_400_lines():
    big = [f"{p.relative_to(SRC)}: {n}" for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) >= 400]
    assert not big, big


def test_each_backend_is_one_folder_with_its_parts():
    for b in backends().values():
        assert (b.root / "backend.toml").exists()
        for r in b.runtimes:
            assert all(f.exists() for f in r.runner_files()), r
        for kind in ("targets", "recipes"):
            for spec in (b.root / kind).glob("*.toml") if (b.root / kind).is_dir() else []:
                assert spec.stem
