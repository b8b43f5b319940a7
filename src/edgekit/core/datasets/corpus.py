"""A local text corpus for training recipes on text models: English sentences taken from the long
descriptions (README text) of the Python packages installed here and from Python's own reference
text (``pydoc_data``). Nothing is downloaded; the same
installed packages give the same corpus (sorted, de-duplicated, a seeded sample), kept in the cache
by their names and versions. Sentences that are also evaluation sentences are left out."""
from __future__ import annotations

import hashlib
import re

import numpy as np

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'\-]*[,;:]?$")


def _sentences(text: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        for s in _SPLIT.split(para):
            words = s.rstrip(".!?").split()
            # prose only: 6-30 plain words (no markup, code, paths or links), ending a sentence
            if 6 <= len(words) <= 30 and s[-1:] in ".!?" and sum(bool(_WORD.match(w)) for w in words) == len(words):
                out.append(s)
    return out


def package_sentences(limit: int = 3000, exclude: set | None = None, seed: int = 0) -> list[str]:
    """Up to ``limit`` sentences from installed packages' descriptions (a seeded sample)."""
    from importlib.metadata import distributions

    from ..artifacts import cache_root, write_text

    dists = sorted({(d.metadata.get("Name") or "", d.version or "") for d in distributions()})
    key = hashlib.sha256(repr((dists, limit, seed)).encode()).hexdigest()[:16]
    cached = cache_root() / "datasets" / f"package-sentences-{key}.txt"
    if cached.exists():
        found = cached.read_text(encoding="utf-8").splitlines()
    else:
        seen = set()
        for d in sorted(distributions(), key=lambda d: (d.metadata.get("Name") or "", d.version or "")):
            body = d.metadata.get_payload() if hasattr(d.metadata, "get_payload") else ""
            text = (d.metadata.get("Description") or "") + "\n\n" + (body or "")
            seen.update(_sentences(text))
        try:
            from pydoc_data.topics import topics
        except ImportError:  # a Python built without its documentation
            topics = {}
        for name in sorted(topics):
            seen.update(_sentences(topics[name]))
        pool = sorted(seen)
        pick = np.random.default_rng(seed).permutation(len(pool))[:limit]
        found = [pool[i] for i in sorted(pick)]
        write_text(cached, "\n".join(found) + "\n")
    exclude = exclude or set()
    return [s for s in found if s and s not in exclude]
