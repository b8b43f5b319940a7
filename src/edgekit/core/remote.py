"""Where training steps run: on this host (default) or as Ray tasks (``--workers ray``).

A Ray task gets no live model: it loads the source again from its spec, from the driver's folder
(and checks its digest), or,
for a later recipe of a chain, opens the previous step's file sent as bytes. It runs the training
edge into a scratch folder of its own and returns that folder's files as bytes (the ``torch.export``
program and ``training.json``), written here into the step's cache entry: nothing is unpickled into a
module on either side. The data set, the target and the recipe travel as Ray arguments (plain data).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from pathlib import Path

WORKERS = ("local", "ray")
_workers: contextvars.ContextVar[str] = contextvars.ContextVar("edgekit_training_workers", default="local")


@contextlib.contextmanager
def training_workers(name: str):
    """Run the training steps started inside this block on ``name`` (one of :data:`WORKERS`)."""
    token = _workers.set(name if name in WORKERS else "local")
    try:
        yield
    finally:
        _workers.reset(token)


def current_workers() -> str:
    return _workers.get()


def ensure_ray(log_to_driver: bool = False):
    """``ray``, initialised: RAY_ADDRESS joins an existing cluster, else a local instance on loopback."""
    try:
        import ray
    except ImportError:
        from .errors import UserError

        raise UserError("--workers ray needs Ray, which is not installed here.",
                        "pip install 'ray[default]', or leave out --workers ray (training runs on this host).") from None
    if not ray.is_initialized():
        kw = {} if os.environ.get("RAY_ADDRESS") else {"_node_ip_address": "127.0.0.1"}
        ray.init(include_dashboard=False, log_to_driver=log_to_driver, **kw)
    return ray


def _train_task(*args) -> dict:
    """Runs in a Ray worker: one training edge, its output folder returned as bytes (an edgekit error as
    its one line: Ray cannot send edgekit's exceptions back)."""
    from .errors import EdgekitError

    try:
        return _train(*args)
    except EdgekitError as e:
        return {"error": e.one_line()}


def _train(edge_name: str, source_spec: str, inputs: list, source_digest: str, input_file: bytes | None,
           input_name: str, art_format: str, art_digest: str, target, recipe, data, cache: str, cwd: str) -> dict:
    import dataclasses
    import tempfile

    if cache:
        os.environ["EDGEKIT_CACHE"] = cache  # the driver's (a worker serves tasks of many runs)
    from ..backends import backend_of_format, get_format
    from .errors import ConversionError
    from .graph import Artifact, ConvertContext, load_converters
    from .sources import load_source

    edge = load_converters()[edge_name]
    here = os.getcwd()
    try:  # the spec as the user gave it, from the driver's folder where it exists (its digest names it)
        if Path(cwd).is_dir():
            os.chdir(cwd)
        source = load_source(source_spec, inputs)
    finally:
        os.chdir(here)
    if source.digest != source_digest:
        raise ConversionError(edge_name, f"the Ray worker loaded '{source_spec}' with other contents than here.",
                              "Make the same model file (and weights) reachable from the Ray workers.")
    with tempfile.TemporaryDirectory(prefix="edgekit-train-") as tmp:
        obj = source.obj
        if input_file is not None:  # a later recipe of a chain: the previous step's file
            path = Path(tmp) / "in" / input_name
            path.parent.mkdir()
            path.write_bytes(input_file)
            obj = backend_of_format(art_format).hook(get_format(art_format).opener)(path)
        out = Path(tmp) / "out"
        out.mkdir()
        current = dataclasses.replace(source, obj=obj)
        ctx = ConvertContext(target, recipe, current, data)
        produced = Path(edge().convert(Artifact(art_format, art_digest, None, obj), out, ctx))
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        return {"files": files, "artifact": produced.relative_to(out).as_posix(), "notes": list(ctx.notes)}


def ray_runner(edge, source, artifact, input_path: Path | None):
    """A stand-in for ``edge().convert`` that runs it as a Ray task (see the module's doc)."""

    def run(art, out_dir: Path, ctx):
        from .terminal import say

        ray = ensure_ray()
        say(f"[edgekit] {ctx.recipe.name}: training as a Ray task ({edge.name()}; its progress is in the Ray "
            "worker's log)")
        blob = Path(input_path).read_bytes() if input_path is not None else None
        task = ray.remote(_train_task)
        result = ray.get(task.remote(edge.name(), source.spec, list(source.inputs), source.digest,
                                     blob, Path(input_path).name if input_path else "", art.format, art.digest,
                                     ctx.target, ctx.recipe, ctx.data, os.environ.get("EDGEKIT_CACHE", ""),
                                     os.getcwd()))
        if "error" in result:
            from .errors import ConversionError

            raise ConversionError(edge.name(), f"the Ray task failed: {result['error']}",
                                  "Rerun without --workers ray to train on this host.")
        for rel, content in result["files"].items():
            dest = Path(out_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        ctx.notes.extend(result["notes"] + ["trained as a Ray task"])
        return Path(out_dir) / result["artifact"]

    return run
