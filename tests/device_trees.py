"""A small folder to move to and from devices: nested subfolders, an empty one, an executable, a
name with a space, binary data; and a byte-for-byte, mode-for-mode snapshot to compare copies."""
from __future__ import annotations

import os
import stat
from pathlib import Path

SCRIPT = "#!/bin/sh\necho \"ran $1 in $(basename \"$(pwd)\")\"\n"
# what a device sees: every file, sorted, relative to the folder
FILES = ["bin/run.sh", "config.json", "name with space.txt", "sub/deeper/leaf.txt", "weights.bin"]


def make_tree(root: Path, seed: int = 0, weights: int = 200_000) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(os.urandom(weights) if seed is None else bytes(
        (i * 7 + seed) % 251 for i in range(weights)))
    (root / "config.json").write_text('{"layers": 3, "seed": %d}\n' % seed)
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_text(SCRIPT)
    os.chmod(root / "bin" / "run.sh", 0o755)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "leaf.txt").write_text(f"leaf {seed}\n")
    os.chmod(root / "sub" / "deeper" / "leaf.txt", 0o640)
    (root / "name with space.txt").write_text("spaced\n")
    (root / "empty").mkdir()
    return root


def snapshot(root: Path) -> dict:
    """{relative path: (file bytes or None for a folder, permission bits)} for everything under root."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        mode = stat.S_IMODE(p.stat().st_mode)
        rel = p.relative_to(root).as_posix()
        out[rel] = (None, "dir") if p.is_dir() else (p.read_bytes(), oct(mode))
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporary names (``.part``, ``.old``) left in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir() if ".part" in p.name or p.name.endswith(".old"))
