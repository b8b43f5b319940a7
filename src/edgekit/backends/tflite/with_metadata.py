"""tflite -> tflite with ML Kit metadata: a finishing step the planner appends to a TFLite target's
route when the target sets any metadata option (``--option labels=labels.txt --option mean=0.5 ...``).

Options (all strings): ``labels`` (a text file, one label per line, for the first output's classes),
``mean`` and ``std`` (the input normalisation ``(x - mean) / std`` an app applies: one value, or one per
channel, comma-separated), ``model_name``, ``description``, ``version``, ``author``, ``license``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ...core.errors import UserError
from ...core.graph import Converter

OPTIONS = ("labels", "mean", "std", "model_name", "description", "version", "author", "license")


def _floats(name: str, text) -> list[float]:
    try:
        values = [float(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError:
        raise UserError(f"option '{name}={text}' is not a number or comma-separated numbers.",
                        f"Example: --option {name}=127.5 or --option {name}=0.485,0.456,0.406") from None
    if not values:
        raise UserError(f"option '{name}' is empty.")
    return values


def _io(data: bytes) -> tuple[list[dict], list[dict]]:
    from ai_edge_litert import schema_py_generated as fb

    g = fb.Model.GetRootAsModel(data, 0).Subgraphs(0)

    def spec(i):
        t = g.Tensors(i)
        return {"name": t.Name().decode(), "shape": [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []}

    return [spec(g.Inputs(k)) for k in range(g.InputsLength())], [spec(g.Outputs(k)) for k in range(g.OutputsLength())]


def _labels(path_text: str, output: dict) -> tuple[str, bytes]:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"labels file '{path_text}' does not exist.", "Give a text file with one label per line.")
    labels = [x.strip() for x in path.read_text(encoding="utf-8").splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    classes = output["shape"][-1] if output["shape"] else 1
    if classes > 1 and len(labels) != classes:
        raise UserError(f"labels file '{path_text}' has {len(labels)} labels; the model's output "
                        f"'{output['name']}' has {classes} classes.", "Give one label per class, one per line.")
    return path.name, ("\n".join(labels) + "\n").encode()


class TfliteWithMetadata(Converter):
    src, dst = "tflite", "tflite"
    finishing = True
    cost = 0.0
    requires = (("flatbuffers", "tflite"), ("ai_edge_litert", "tflite"))
    tools = ("flatbuffers",)
    target_options = OPTIONS

    @classmethod
    def key_material(cls, ctx):
        labels = ctx.target.option("labels")
        if labels and Path(labels).expanduser().is_file():  # the file's content, not only its name
            return {"labels_sha256": hashlib.sha256(Path(labels).expanduser().read_bytes()).hexdigest()}
        return None

    def convert(self, artifact, out_dir, ctx):
        from .metadata import attach, build

        opt = ctx.target.option
        data = Path(artifact.path).read_bytes()
        inputs, outputs = _io(data)
        mean, std = opt("mean"), opt("std")
        if (mean is None) != (std is None):
            raise UserError("options 'mean' and 'std' go together (the input normalisation (x - mean) / std).",
                            "Give both, e.g. --option mean=127.5 --option std=127.5")
        ins = []
        for spec in inputs:
            t = {"name": spec["name"], "description": f"input {spec['name']} {'x'.join(map(str, spec['shape']))}"}
            if mean is not None:
                t["mean"], t["std"] = _floats("mean", mean), _floats("std", std)
                if len(t["mean"]) != len(t["std"]):
                    raise UserError(f"options 'mean' ({len(t['mean'])} values) and 'std' ({len(t['std'])}) differ "
                                    "in length.")
            shape = spec["shape"]
            if len(shape) == 4 and shape[-1] in (1, 3):  # NHWC: what ML Kit and model binding take as an image
                t["image"] = {"color": "GRAYSCALE" if shape[-1] == 1 else "RGB", "width": shape[2], "height": shape[1]}
            ins.append(t)
        files = {}
        outs = [{"name": o["name"], "description": f"output {o['name']} {'x'.join(map(str, o['shape']))}"}
                for o in outputs]
        if opt("labels") and outs:
            name, text = _labels(opt("labels"), outputs[0])
            outs[0]["labels_file"] = name
            files[name] = text
        meta = {k: (str(opt(k)) if opt(k) is not None else None) for k in OPTIONS[3:]}
        meta.update(inputs=ins, outputs=outs)
        try:
            out = attach(data, build(meta), files)
        except ValueError as e:
            from ...core.errors import ConversionError

            raise ConversionError(self.name(), f"cannot add metadata: {e}") from None
        path = out_dir / "model.tflite"
        path.write_bytes(out)
        said = [f"{k}={meta[k]!r}" for k in OPTIONS[3:] if meta.get(k)]
        if mean is not None:
            said.append(f"normalisation mean {ins[0]['mean']} std {ins[0]['std']}")
        for name, text in files.items():
            said.append(f"labels {name} ({len(text.splitlines())} classes)")
        ctx.notes.append("ML Kit metadata (TFLite metadata schema, TFLITE_METADATA): " + ", ".join(said)
                         + f"; {len(data)} -> {len(out)} bytes")
        return path
