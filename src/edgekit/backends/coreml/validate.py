"""What stands in for the proof where Core ML cannot run (anywhere but macOS): the package is read
(its spec and MIL program, never compiled or run) and checked against the source and the target:

- it is an ``mlprogram`` whose spec loads;
- its inputs and outputs have the source's names, in order, its shapes for one sample and the dtypes
  the converter gives them (float32; int32 for integer inputs: Core ML has no int64);
- the weights are stored as the target's recipe says (fp32 / fp16 / int8 / a palette of ``bits`` bits;
  int8 activations for W8A8), counted in weight elements;
- its op counts and size are recorded.

``facts`` lists the MIL program's operations for ``edgekit inspect``.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from ...core.artifacts import size_bytes

DEQUANT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
LUT_OP = "constexpr_lut_to_dense"
FLOAT = ("FLOAT16", "FLOAT32", "FLOAT64", "BFLOAT16")
SHARE = 0.5  # a compressed recipe must hold at least this share of the weight elements compressed
FP16_SHARE = 0.99  # fp16 compute: float weights stored in fp16 (but for a few tensors kept fp32)


def _dims(value_type) -> list[int]:
    return [int(d.constant.size) for d in value_type.tensorType.dimensions]


def _ops(block):
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _ops(inner)


def _immediate_ints(value) -> list[int]:
    t = value.immediateValue.tensor
    for field in ("ints", "longInts"):
        vals = list(getattr(t, field).values)
        if vals:
            return [int(v) for v in vals]
    if t.bytes.values:
        import numpy as np

        return [int(v) for v in np.frombuffer(t.bytes.values, dtype=np.uint32)]
    return []


def read(path: Path) -> dict:
    """The package's spec and program in figures (see the module's docstring)."""
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2

    from .stack import import_coremltools

    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    arrays = {v: k.lower() for k, v in FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}
    io = lambda fs: [{"name": f.name, "shape": [int(d) for d in f.type.multiArrayType.shape],  # noqa: E731
                      "dtype": arrays.get(int(f.type.multiArrayType.dataType), "?")} for f in fs]
    info = {"program": spec.WhichOneof("Type"), "spec_version": int(spec.specificationVersion),
            "inputs": io(spec.description.input), "outputs": io(spec.description.output),
            "size_bytes": size_bytes(Path(path)), "metadata": dict(spec.description.metadata.userDefined)}
    if info["program"] != "mlProgram":
        return info
    fn = spec.mlProgram.functions["main"]
    dtype = MIL_pb2.DataType.Name
    ops, consts = Counter(), {}
    for op in _ops(fn.block_specializations[fn.opset]):
        ops[op.type] += 1
        val = op.attributes.get("val") if op.type == "const" else None
        if val is not None and val.WhichOneof("value") == "blobFileValue":
            dims = _dims(val.type)
            consts[op.outputs[0].name] = (dtype(val.type.tensorType.dataType), dims, math.prod(dims))
    consumed, int8, palettes, bits = set(), 0, 0, set()
    for op in _ops(fn.block_specializations[fn.opset]):
        if op.type not in DEQUANT_OPS and op.type != LUT_OP:
            continue
        args = {k: consts.get(a.arguments[0].name) for k, a in op.inputs.items() if a.arguments and a.arguments[0].name}
        consumed |= {a.arguments[0].name for a in op.inputs.values() if a.arguments}
        attrs = {k: (dtype(v.type.tensorType.dataType), _dims(v.type)) for k, v in op.attributes.items()
                 if v.WhichOneof("value") == "blobFileValue"}
        if op.type in DEQUANT_OPS:
            data = attrs.get("quantized_data") or (args.get("data") or (None, []))[:2]
            int8 += math.prod(data[1]) if data[0] in ("INT8", "UINT8") else 0
            continue
        lut = attrs.get("lut") or (args.get("lut") or (None, []))[:2]
        if "indices" in attrs:  # iOS 16/17: packed uint8 indices, a 1-D table of 2**bits entries
            n_bits = int(math.log2(lut[1][-1])) if lut[1] else 0
            shape = _immediate_ints(op.attributes["shape"]) if "shape" in op.attributes else []
            dense = math.prod(shape) if shape else (math.prod(attrs["indices"][1]) * 8 // max(n_bits, 1))
        else:  # iOS 18: indices of dtype uint<bits> at the dense shape, a table [..., 2**bits, vector]
            idx = args.get("indices") or ("", [], 0)
            n_bits = int(idx[0][4:]) if idx[0].startswith("UINT") else 0
            dense = idx[2]
        bits.add(n_bits)
        palettes += dense
    floats, ints = Counter(), 0
    for name, (dt, _, n) in consts.items():
        if name in consumed:
            continue
        if dt in FLOAT:
            floats[dt.lower()] += n
        else:
            ints += n
    info.update(opset=fn.opset, ops=dict(ops.most_common()), activation_quantize_ops=ops["quantize"],
                weights={"int8": int8, "palettized": palettes, **dict(floats), "other": ints},
                palette_bits=sorted(bits), weight_file_bytes=sum(p.stat().st_size for p in Path(path).rglob("*.bin")))
    return info


def facts(path: Path) -> dict:
    """{"counts": {("mil", op): count}} of the package's program (``edgekit inspect``)."""
    info = read(Path(path))
    return {"counts": {("mil", op): n for op, n in (info.get("ops") or {}).items()}}


def validate(path: Path, target, inputs, outputs: dict) -> dict:
    """The package checked against the source (``inputs``: its TensorSpecs; ``outputs``: {name: shape of
    one sample}) and ``target``'s recipe: the figures of :func:`read` plus ``passed``, ``checks`` (what
    held) and ``failures`` (what did not, each a sentence naming the thing)."""
    from .converters import DEFAULT_BITS, io_dtype

    info = read(Path(path))
    failures, checks = [], []
    if info["program"] != "mlProgram":
        failures.append(f"the package holds a {info['program']}, not an mlProgram")
        return dict(info, passed=False, failures=failures, checks=checks)
    want_in = [{"name": s.name, "shape": list(s.fixed_shape()), "dtype": _np_name(io_dtype(s.dtype))} for s in inputs]
    failures += _compare("input", want_in, info["inputs"])
    want_out = [{"name": name, "shape": list(shape)} for name, shape in outputs.items()]
    failures += _compare("output", want_out, info["outputs"], dtypes=("float32", "int32"))
    if not failures:
        checks.append(f"inputs {', '.join(_io_text(x) for x in info['inputs'])}; outputs "
                      f"{', '.join(_io_text(x) for x in info['outputs'])}: as the source's")
    kind = target.recipe_spec.kind
    w = info["weights"]
    total = sum(w.values()) or 1
    fp16, fp32 = w.get("float16", 0), w.get("float32", 0)
    if kind == "none" and fp16:
        failures.append(f"fp32 compute, but {fp16} weight elements are stored in fp16")
    elif kind != "none" and fp32 > (1 - FP16_SHARE) * (fp16 + fp32) and fp16 + fp32 > 0:
        failures.append(f"fp16 compute, but {fp32} of {fp16 + fp32} float weight elements are stored in fp32")
    if kind == "int8-dynamic" and w["int8"] < SHARE * total:
        failures.append(f"int8 weights expected, but only {w['int8']} of {total} weight elements are int8")
    if kind == "palettize":
        want_bits = int(target.option("bits", DEFAULT_BITS))
        if w["palettized"] < SHARE * total:
            failures.append(f"palettized weights expected, but only {w['palettized']} of {total} weight elements are")
        elif info["palette_bits"] != [want_bits]:
            failures.append(f"{want_bits}-bit palettes expected, the package has {info['palette_bits']}-bit ones")
    if kind == "int8-static":
        if not info["activation_quantize_ops"]:
            failures.append("int8 activations expected, but the program quantizes none (no quantize op)")
        if not w["int8"]:
            failures.append("int8 weights expected, but the package stores none")
    if not failures:
        checks.append(f"weights as the recipe '{kind}' says: {weights_text(info)}")
    return dict(info, passed=not failures, failures=failures, checks=checks)


def weights_text(info: dict) -> str:
    """"int8 22,016 (94%), float16 1,450 (6%)" (+ palette bits, int8 activations)."""
    w = {k: v for k, v in info["weights"].items() if v}
    total = sum(w.values()) or 1
    parts = [f"{k} {v:,} ({100 * v / total:.0f}%)" for k, v in sorted(w.items(), key=lambda kv: -kv[1])]
    extra = [f"{'/'.join(map(str, info['palette_bits']))}-bit palettes"] if info.get("palette_bits") else []
    if info.get("activation_quantize_ops"):
        extra.append(f"{info['activation_quantize_ops']} int8 activation quantize ops")
    return ", ".join(parts) + " weight elements" + ("; " + ", ".join(extra) if extra else "")


def _compare(what: str, want: list, have: list, dtypes=None) -> list[str]:
    out = []
    if [x["name"] for x in want] != [x["name"] for x in have]:
        return [f"{what}s are {[x['name'] for x in have]}, the source's are {[x['name'] for x in want]}"]
    for w, h in zip(want, have):
        if list(w["shape"]) != list(h["shape"]):
            out.append(f"{what} '{h['name']}' has shape {h['shape']}, the source's is {w['shape']}")
        ok = dtypes if "dtype" not in w else (w["dtype"],)
        if h["dtype"] not in ok:
            out.append(f"{what} '{h['name']}' is {h['dtype']}, expected {' or '.join(ok)}")
    return out


def _io_text(x: dict) -> str:
    return f"{x['name']}:{'x'.join(map(str, x['shape']))}:{x['dtype']}"


def _np_name(dt) -> str:
    import numpy as np

    return "bool" if dt is bool else np.dtype(dt).name
