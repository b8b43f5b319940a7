"""``edgekit setup [BACKEND ...]``: complete a pip install with what cannot be a plain dependency.

Each backend lists such steps in its ``backend.toml`` (``[[setup]]``: pip arguments, the modules they
provide, why); e.g. a converter whose own hard pins would downgrade the rest of the stack is
installed ``--no-deps``, its real run-time dependencies coming from the backend's extra.
"""
from __future__ import annotations

import subprocess
import sys

from .app import _progress


def cmd_setup(args) -> int:
    from ..backends import backends, get_backend
    from ..core.lazy import available

    chosen = [get_backend(n) for n in args.backend] if args.backend else list(backends().values())
    steps = [(b, s) for b in chosen for s in b.setup]
    if not steps:
        print("nothing to set up: " + (", ".join(b.name for b in chosen)) + " need(s) no step beyond pip extras")
        return 0
    failed = 0
    for backend, step in steps:
        done = all(available(m) for m in step.provides) and step.provides
        label = f"{backend.name}: pip install {' '.join(step.pip)}"
        if done and not args.force:
            print(f"{label}  (already installed: {', '.join(step.provides)})")
            continue
        if args.check:
            print(f"{label}  (MISSING: {', '.join(m for m in step.provides if not available(m))})")
            failed += 1
            continue
        _progress(f"{label}" + (f"  ({step.why})" if step.why else ""))
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                               *step.pip], capture_output=True, text=True)
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
            from ..core.errors import SetupFailed

            raise SetupFailed(f"'pip install {' '.join(step.pip)}' failed for backend '{backend.name}': "
                              f"{(last or ['no output'])[-1][:200]}.",
                              f"Install the '{backend.extra}' extra first: pip install 'edgekit[{backend.extra}]'.")
        print(f"{label}  (installed)")
    return 1 if failed else 0
