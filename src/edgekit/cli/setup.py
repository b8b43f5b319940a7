"""``edgekit setup [BACKEND ...]``: complete a pip install with what cannot be a plain dependency.

Each backend lists such steps in its ``backend.toml`` (``[[setup]]``: pip arguments, the modules they
provide, why); e.g. a converter whose own hard pins would downgrade the rest of the stack is
installed ``--no-deps``, its real run-time dependencies coming from the backend's extra.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile

from .app import _progress


def cmd_setup(args) -> int:
    from ..backends import backends, get_backend
    from ..core.lazy import available

    chosen = _with_needs([get_backend(n) for n in args.backend] if args.backend else list(backends().values()))
    steps = [(b, s) for b in chosen for s in b.setup]
    if not steps:
        print("nothing to set up: " + (", ".join(b.name for b in chosen)) + " need(s) no step beyond pip extras")
        return 0
    failed = 0
    for backend, step in steps:
        done = _done(backend, step)
        label = f"{backend.name}: " + (f"pip install {' '.join(step.pip)}" if not step.run else step.why or step.run)
        if done and not args.force:
            print(f"{label}  (already installed: {', '.join(step.provides)})")
            continue
        if args.check:
            missing = step.provides if step.run else [m for m in step.provides if not available(m)]
            print(f"{label}  (MISSING: {', '.join(missing)})")
            failed += 1
            continue
        _progress(f"{label}" + (f"  ({step.why})" if step.why and not step.run else ""))
        if step.run:  # the backend's own step (it raises a typed error naming what failed)
            backend.hook(step.run)(_progress)
            if step.check and not backend.hook(step.check)():
                from ..core.errors import SetupFailed

                raise SetupFailed(f"after '{label}', {', '.join(step.provides)} is still not installed.")
            print(f"{label}  (installed)")
            continue
        with _pins(step.pip) as pins:  # pip may add, never move, what is installed
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                                   "--only-binary=:all:", "-c", pins, *step.pip], capture_output=True, text=True)
        if proc.returncode != 0:
            last = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
            from ..core.errors import SetupFailed

            raise SetupFailed(f"'pip install {' '.join(step.pip)}' failed for backend '{backend.name}': "
                              f"{(last or ['no output'])[-1][:200]}.",
                              f"Install the '{backend.extra}' extra first: pip install 'edgekit[{backend.extra}]'.")
        missing = [m for m in step.provides if not _imports(m, backend, step.check)]
        if missing:
            from ..core.errors import SetupFailed

            raise SetupFailed(f"after 'pip install {' '.join(step.pip)}', {', '.join(missing)} still does not import.",
                              f"Install the '{backend.extra}' extra first: pip install 'edgekit[{backend.extra}]'.")
        print(f"{label}  (installed)")
    if not args.check:
        print("note: 'pip check' now lists the pins these packages declare; they are not needed at run time.")
    return 1 if failed else 0


def _with_needs(chosen: list) -> list:
    """The backends in an order where each comes after those it ``needs`` (which are added if not chosen)."""
    from ..backends import get_backend

    out: list = []

    def visit(b, path=()):
        if b in out:
            return
        if b.name in path:
            from ..core.errors import SpecError

            raise SpecError(f"backends need each other in a circle: {' -> '.join(path + (b.name,))}.")
        for n in b.needs:
            visit(get_backend(n), path + (b.name,))
        out.append(b)

    for b in chosen:
        visit(b)
    return out


def _done(backend, step) -> bool:
    from ..core.lazy import available

    if step.run:
        return bool(step.check) and bool(backend.hook(step.check)())
    return bool(step.provides) and all(available(m) for m in step.provides)


@contextlib.contextmanager
def _pins(step_args=()):
    """A constraints file pinning every installed distribution but the step's own, so a setup step adds
    packages and never moves one that is there (a CPU build of a framework, numpy, protobuf)."""
    import re
    from importlib.metadata import distributions

    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    own = {norm(re.split(r"[<>=!~ \[]", a)[0]) for a in step_args if not a.startswith("-")}
    lines = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions()
                    if d.metadata["Name"] and norm(d.metadata["Name"]) not in own})
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        yield f.name
    finally:
        os.unlink(f.name)


def _imports(module: str, backend=None, check: str = "") -> bool:
    """Import in a child process (a fresh interpreter sees what pip just installed); through the
    backend's ``check`` hook when the step names one."""
    code = (f"from edgekit.backends import get_backend; get_backend({backend.name!r}).hook({check!r})()" if check
            else f"import {module}")
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
