"""TFLite model metadata, the kind ML Kit's custom-model APIs and Android Studio's model binding read:
model name, description, version, author, license; per input its normalisation (mean/std) and what
it holds (an image or features); per output its labels file. Written in the TFLite metadata schema
(tflite-support's ``metadata_schema.fbs``, file identifier ``M001``) as tflite-support packs it: the
metadata flatbuffer in the buffer that the model's ``metadata`` entry ``TFLITE_METADATA`` points to,
and the associated files (labels.txt) appended to the model file as a zip archive.

tflite-support itself (0.4.4, the last release) would move protobuf to 3.20 under TensorFlow 2.21, so
the flatbuffer is built here with the ``flatbuffers`` package (``Builder``/``Table``), field by field
in the schema's order, and read back the same way.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

FIELD_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER = "1.0.0"  # no field of schema 1.0.1+ is written (no vocabularies, tensor groups, custom metadata)
LABELS_TYPE = 2  # AssociatedFileType.TENSOR_AXIS_LABELS
FEATURE, IMAGE = 1, 2  # ContentProperties union types
NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions
COLOR_CODE = {"RGB": 1, "GRAYSCALE": 2}
TEXT_FIELDS = ("model_name", "description", "version", "author", "license")


# ---- writing ------------------------------------------------------------------------------------

def _table(b, n: int, fields: list) -> int:
    """A table of ``n`` slots from (slot, kind, value) with kind: "off" | "u8" | "i8" | "u32"."""
    b.StartObject(n)
    for slot, kind, value in fields:
        if value is None:
            continue
        if kind == "off":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "u8":
            b.PrependUint8Slot(slot, value, 0)
        elif kind == "i8":
            b.PrependInt8Slot(slot, value, 0)
        elif kind == "u32":
            b.PrependUint32Slot(slot, value, 0)
    return b.EndObject()


def _offsets(b, offs: list) -> int:
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _floats(b, values: list) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _s(b, text):
    return b.CreateString(text) if text else None


def build(meta: dict) -> bytes:
    """The ModelMetadata flatbuffer of ``meta``: {model_name, description, version, author, license,
    inputs: [{name, description, mean, std, image: {"color": "RGB", "width", "height"} | None}],
    outputs: [{name, description, labels_file}]}."""
    b = flatbuffers.Builder(1024)

    def tensor(t: dict, is_input: bool) -> int:
        name, desc = _s(b, t.get("name")), _s(b, t.get("description"))
        image = t.get("image")
        if image:
            size = _table(b, 2, [(0, "u32", image.get("width")), (1, "u32", image.get("height"))])
            props = _table(b, 2, [(0, "i8", COLOR_CODE.get(image.get("color"), 0)), (1, "off", size)])
        else:
            props = _table(b, 0, [])
        content = _table(b, 3, [(0, "u8", IMAGE if image else FEATURE), (1, "off", props)])
        units = None
        if is_input and t.get("mean") is not None:
            norm = _table(b, 2, [(0, "off", _floats(b, t["mean"])), (1, "off", _floats(b, t["std"]))])
            units = _offsets(b, [_table(b, 2, [(0, "u8", NORMALIZATION), (1, "off", norm)])])
        files = None
        if t.get("labels_file"):
            f = _table(b, 5, [(0, "off", b.CreateString(t["labels_file"])),
                              (1, "off", b.CreateString("labels of the output's classes, one per line")),
                              (2, "i8", LABELS_TYPE)])
            files = _offsets(b, [f])
        return _table(b, 7, [(0, "off", name), (1, "off", desc), (3, "off", content), (4, "off", units),
                             (6, "off", files)])

    ins = _offsets(b, [tensor(t, True) for t in meta["inputs"]])
    outs = _offsets(b, [tensor(t, False) for t in meta["outputs"]])
    sub = _table(b, 10, [(2, "off", ins), (3, "off", outs)])
    subs = _offsets(b, [sub])
    text = {k: _s(b, meta.get(k)) for k in TEXT_FIELDS}
    root = _table(b, 8, [(0, "off", text["model_name"]), (1, "off", text["description"]),
                         (2, "off", text["version"]), (3, "off", subs), (4, "off", text["author"]),
                         (5, "off", text["license"]), (7, "off", b.CreateString(MIN_PARSER))])
    b.Finish(root, file_identifier=IDENTIFIER)
    return bytes(b.Output())


def attach(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """The model with ``metadata`` as its TFLITE_METADATA buffer (replacing one it had) and ``files``
    appended as a zip archive."""
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))
    if any(getattr(buf, "offset", 0) > 1 for buf in (m.buffers or [])):
        raise ValueError("its weights live outside the flatbuffer (a model over 2 GB), which this writer cannot "
                         "repack")
    m.buffers = m.buffers or []
    m.metadata = m.metadata or []
    buf = fb.BufferT()
    buf.data = list(metadata)
    entry = next((e for e in m.metadata if (e.name or b"").decode() == FIELD_NAME), None)
    if entry is None:
        m.buffers.append(buf)
        entry = fb.MetadataT()
        entry.name = FIELD_NAME
        entry.buffer = len(m.buffers) - 1
        m.metadata.append(entry)
    else:
        m.buffers[entry.buffer] = buf
    b = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, io.SEEK_END)
    if files:
        with zipfile.ZipFile(out, "a") as z:
            for name, data in files.items():
                z.writestr(name, data)
    return out.getvalue()


# ---- reading back ------------------------------------------------------------------------------

def _field(t: Table, slot: int) -> int:
    return t.Offset(4 + 2 * slot)


def _str(t: Table, slot: int):
    o = _field(t, slot)
    return t.String(o + t.Pos).decode() if o else None


def _sub(t: Table, slot: int):
    o = _field(t, slot)
    return Table(t.Bytes, t.Indirect(o + t.Pos)) if o else None


def _vec(t: Table, slot: int) -> list[Table]:
    o = _field(t, slot)
    if not o:
        return []
    start = t.Vector(o)
    return [Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(t.VectorLen(o))]


def _fvec(t: Table, slot: int) -> list[float]:
    o = _field(t, slot)
    if not o:
        return []
    start = t.Vector(o)
    return [t.Get(N.Float32Flags, start + 4 * i) for i in range(t.VectorLen(o))]


def _scalar(t: Table, slot: int, flags, default=0):
    o = _field(t, slot)
    return t.Get(flags, o + t.Pos) if o else default


def parse(metadata: bytes) -> dict:
    """The metadata flatbuffer as a dict (the fields this writer knows)."""
    if metadata[4:8] != IDENTIFIER:
        raise ValueError(f"not TFLite metadata (file identifier {metadata[4:8]!r}, not {IDENTIFIER!r})")
    root = Table(metadata, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, metadata, 0))

    def tensor(t: Table) -> dict:
        out = {"name": _str(t, 0), "description": _str(t, 1)}
        content = _sub(t, 3)
        if content is not None:
            kind = _scalar(content, 0, N.Uint8Flags)
            out["content"] = {FEATURE: "features", IMAGE: "image"}.get(kind, f"type {kind}")
            props = _sub(content, 1)
            if kind == IMAGE and props is not None:
                out["color_space"] = {1: "RGB", 2: "GRAYSCALE"}.get(_scalar(props, 0, N.Int8Flags), "UNKNOWN")
        for unit in _vec(t, 4):
            if _scalar(unit, 0, N.Uint8Flags) == NORMALIZATION:
                norm = _sub(unit, 1)
                out["mean"], out["std"] = _fvec(norm, 0), _fvec(norm, 1)
        files = [{"name": _str(f, 0), "type": _scalar(f, 2, N.Int8Flags)} for f in _vec(t, 6)]
        if files:
            out["associated_files"] = files
        return out

    subs = _vec(root, 3)
    sub = subs[0] if subs else None
    return {"model_name": _str(root, 0), "description": _str(root, 1), "version": _str(root, 2),
            "author": _str(root, 4), "license": _str(root, 5), "min_parser_version": _str(root, 7),
            "inputs": [tensor(t) for t in _vec(sub, 2)] if sub else [],
            "outputs": [tensor(t) for t in _vec(sub, 3)] if sub else []}


def read(path: Path) -> dict:
    """The metadata of a .tflite file and the files packed with it (name -> text), or {} without metadata."""
    from ai_edge_litert import schema_py_generated as fb

    data = Path(path).read_bytes()
    model = fb.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == FIELD_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            out = parse(raw)
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    out["files"] = {n: z.read(n).decode("utf-8", "replace") for n in z.namelist()}
            except zipfile.BadZipFile:
                out["files"] = {}
            return out
    return {}
