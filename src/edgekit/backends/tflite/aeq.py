"""ai-edge-quantizer on a float .tflite: static int8 with chosen ops kept float, calibrated once per
set of samples (fed by signature input name, as the data names them), with float or int8 I/O.

An op is named by its output tensors as the quantizer scopes it (``a;b;``). Keeping an op float
keeps its computation float; the tensors it reads and writes are still quantized where an int8 op
reads them. So a *layer* kept float is its op plus the ops that read its output, through layout ops
(``TfliteGraph.group``): then its output is never quantized."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import ConversionError
from ...core.lazy import native_output_silenced
from ...runner.runtime_base import lookup_input, sample_feed

# ops that only move values: the quantizer gives them their input's quantization
LAYOUT = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SLICE", "CONCATENATION",
                    "SPLIT", "PACK", "UNPACK", "GATHER", "GATHER_ND", "PAD", "PADV2", "BROADCAST_TO", "TILE",
                    "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "CAST"})
# ops whose output takes their input's scale: an outlier passes through them unchanged
SAME_SCALE = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR",
                        "RESIZE_BILINEAR", "REDUCE_MAX", "MAXIMUM", "MINIMUM"})
# ops with a dynamic-range int8 kernel (int8 weights, activations quantized at run time)
DYNAMIC_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"})
CHECK_RUNS = 4  # calibration samples a new int8 model must run on
REPAIR_ROUNDS = 16  # ops the runtime refuses in int8 (a divisor quantized to zero), kept float one by one


@dataclass(frozen=True)
class Op:
    index: int
    op: str
    inputs: tuple[str, ...]  # tensor names (constants included)
    outputs: tuple[str, ...]

    @property
    def name(self) -> str:
        """The op's scope as the quantizer matches it (its output tensors' names)."""
        return "".join(f"{o};" for o in self.outputs)


@dataclass
class TfliteGraph:
    ops: list[Op]
    constants: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.producer = {o: op for op in self.ops for o in op.outputs}
        self.consumers: dict[str, list[Op]] = {}
        for op in self.ops:
            for i in op.inputs:
                self.consumers.setdefault(i, []).append(op)
        self.by_name = {op.name: op for op in self.ops}
        # what reports call an op: the last scopes of its name, without module paths, where that is unique
        short = {op.name: label(op.name) for op in self.ops}
        clash = {v for v in short.values() if list(short.values()).count(v) > 1}
        self.labels = {n: (n if v in clash else v) for n, v in short.items()}
        self.by_name.update({self.labels[op.name]: op for op in self.ops})

    def group(self, name: str, spare: frozenset = frozenset()) -> list[str]:
        """The op ``name`` (or label) with its output kept float: itself, the ops through which its
        values pass at the same scale (layout, ReLU, max pooling), and every op that then reads them
        (readers of an op type in ``spare`` stay as they are)."""
        op = self.by_name[name]
        out, todo, seen = [op.name], list(op.outputs), set()
        while todo:
            t = todo.pop()
            for c in self.consumers.get(t, []):
                if c.name not in seen and c.op not in spare:
                    seen.add(c.name)
                    out.append(c.name)
                    if c.op in LAYOUT or c.op in SAME_SCALE:
                        todo += list(c.outputs)
        return list(dict.fromkeys(out))

    def tensor_group(self, tensor: str) -> list[str]:
        """The ops to keep float so that ``tensor`` is never quantized: its producer and its readers."""
        if tensor in self.producer:
            return self.group(self.producer[tensor].name)
        return [c.name for c in self.consumers.get(tensor, [])]


def label(name: str) -> str:
    """``a/pkg.mod.Block_3/pkg.mod.Linear_dense;2;`` -> ``Block_3/Linear_dense;2``."""
    parts = name.rstrip(";").split("/")
    return "/".join(p.rsplit(".", 1)[-1] if "." in p else p for p in parts[-3:])


def interpreter(path_or_bytes, all_tensors: bool = False):
    """A LiteRT interpreter without delegates (whose fused partitions hide the tensors inside)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    where = {"model_content": bytes(path_or_bytes)} if isinstance(path_or_bytes, (bytes, bytearray)) \
        else {"model_path": str(path_or_bytes)}
    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is what this is for
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(**where, experimental_preserve_all_tensors=all_tensors,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def read_graph(path) -> TfliteGraph:
    interp = interpreter(path)
    names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
    ops = [Op(d["index"], d["op_name"], tuple(names[i] for i in d["inputs"] if i >= 0 and i in names),
              tuple(names[i] for i in d["outputs"] if i in names)) for d in interp._get_ops_details()]
    made = {o for op in ops for o in op.outputs}
    inputs = {d["name"] for d in interp.get_input_details()}
    constants = {n for op in ops for n in op.inputs if n not in made and n not in inputs}
    return TfliteGraph(ops, constants)


class Quantizer:
    """Quantizes one float model again and again (other ops float, other samples): the calibration
    of a set of samples is measured once."""

    def __init__(self, float_path: Path, work: Path, recipe, io_dtype: str, data, edge: str, only: tuple = ()):
        self.path, self.work, self.recipe, self.io_dtype, self.data, self.edge = \
            Path(float_path), Path(work), recipe, io_dtype, data, edge
        self.only = only  # TFLite op types to quantize (empty: every op the quantizer can)
        self.work.mkdir(parents=True, exist_ok=True)
        interp = interpreter(self.path)
        sigs = interp.get_signature_list()
        if not sigs:
            raise ConversionError(edge, "the float model has no signature, which ai-edge-quantizer calibrates by.",
                                  "Convert it with a converter that writes one (litert-torch, the TFLite converter).")
        self.signature = next(iter(sigs))
        runner = interp.get_signature_runner(self.signature)
        self.inputs = {name: np.dtype(d["dtype"]) for name, d in runner.get_input_details().items()}
        self.graph = read_graph(self.path)
        self._qsvs: dict[tuple, dict] = {}
        self.made = 0
        self.refused: list[str] = []  # ops kept float because LiteRT could not run them in int8

    def feed(self, i: int) -> dict:
        """Calibration sample ``i`` as the signature takes it (by input name; cast to its types)."""
        one = sample_feed(self.data.calib, i, tuple(self.data.stacked))
        try:
            return {name: np.ascontiguousarray(np.asarray(lookup_input(one, name)).astype(dtype))
                    for name, dtype in self.inputs.items()}
        except KeyError as e:
            raise ConversionError(self.edge, f"no calibration array for the model's input ({e.args[0]}).") from None

    def default_calib(self) -> range:
        return range(min(self.data.n_calib, self.recipe.calibration.samples))

    def _recipe(self, float_ops: list[str], dynamic_ops: list[str] = ()):
        from ai_edge_quantizer import qtyping

        cal = self.recipe.calibration
        granularity = "CHANNELWISE" if cal.per_channel else "TENSORWISE"
        config = {"activation_tensor_config": {"num_bits": 8, "symmetric": cal.symmetric, "granularity": "TENSORWISE",
                                               "dtype": "INT"},
                  "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": granularity, "dtype": "INT"},
                  "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
                  "min_weight_elements": 0}
        ops = list(self.only) or ["*"]
        rules = [{"regex": ".*", "operation": op, "algorithm_key": "min_max_uniform_quantize", "op_config": config}
                 for op in ops]
        # an embedding table (no static int8 kernel): int8 weights, looked up into float (a hybrid kernel)
        rules.append({"regex": ".*", "operation": "EMBEDDING_LOOKUP", "algorithm_key": "min_max_uniform_quantize",
                      "op_config": {"weight_tensor_config": dict(config["weight_tensor_config"], granularity="CHANNELWISE"),
                                    "compute_precision": "INTEGER", "explicit_dequantize": False,
                                    "skip_checks": False, "min_weight_elements": 0}})
        if self.io_dtype == "float32":  # float inputs/outputs: QUANTIZE/DEQUANTIZE at the edges
            rules += [{"regex": ".*", "operation": io, "algorithm_key": "no_quantize"}
                      for io in (qtyping.TFLOperationName.INPUT.value, qtyping.TFLOperationName.OUTPUT.value)]
        rules += [{"regex": "^" + re.escape(name) + "$", "operation": "*", "algorithm_key": "no_quantize"}
                  for name in dict.fromkeys(float_ops)]
        # dynamic-range int8: int8 weights, activations quantized at run time, float output
        dynamic = {"weight_tensor_config": config["weight_tensor_config"], "compute_precision": "INTEGER",
                   "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0}
        rules += [{"regex": "^" + re.escape(name) + "$", "operation": self.graph.by_name[name].op,
                   "algorithm_key": "min_max_uniform_quantize", "op_config": dynamic}
                  for name in dict.fromkeys(dynamic_ops) if self.graph.by_name[name].op in DYNAMIC_OPS]
        return rules

    def calibration(self, calib: range) -> dict:
        key = (calib.start, calib.stop)
        if key not in self._qsvs:
            from ai_edge_quantizer import calibrator, recipe_manager
            from ai_edge_quantizer.utils import qsv_utils

            feeds = [self.feed(i) for i in calib]
            try:
                rules = recipe_manager.RecipeManager()
                rules.load_quantization_recipe(self._recipe([]))
                # min/max over all samples (the recipe's method), not the quantizer's default moving
                # average of each sample's range: that clips the rarer large values (digits: the
                # logits' error 0.14 against 0.02)
                with native_output_silenced():
                    cal = calibrator.Calibrator(self.path.read_bytes(), num_threads=2,
                                                qsv_update_func=qsv_utils.min_max_update)
                    cal.calibrate({self.signature: feeds}, rules)
                self._qsvs[key] = cal.get_model_qsvs()
            except (ValueError, RuntimeError) as e:
                raise self._failed(e, "calibration") from None
        return self._qsvs[key]

    def _failed(self, e: Exception, step: str) -> ConversionError:
        first = next((ln for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)
        return ConversionError(self.edge, f"ai-edge-quantizer failed ({step}): {first[:300]}")

    def quantize(self, float_ops: list[str], calib: range | None = None, dynamic_ops: list[str] = ()) -> Path:
        """A new int8 model with the ops ``float_ops`` (names) kept float and ``dynamic_ops`` at
        dynamic-range int8; ``calib``: the calibration sample indices (default: the recipe's first ones)."""
        from ai_edge_quantizer import quantizer

        calib = calib if calib is not None else self.default_calib()
        qsvs = self.calibration(calib)
        q = quantizer.Quantizer(str(self.path), self._recipe(float_ops, dynamic_ops))
        try:
            with native_output_silenced():
                blob = q.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False).quantized_model
        except (ValueError, RuntimeError) as e:
            raise self._failed(e, "quantization") from None
        path = self.work / f"int8-{self.made}.tflite"
        self.made += 1
        path.write_bytes(bytes(blob))
        return path

    def runnable(self, float_ops: list[str], calib: range | None = None) -> Path:
        """``quantize``, then the ops the runtime refuses to run in int8 (an int8 divisor that holds
        its zero point) kept float too (added to ``refused``), until the model runs on a few
        calibration samples."""
        refused = self.refused
        samples = [self.feed(i) for i in range(min(CHECK_RUNS, self.data.n_calib))]
        for _ in range(REPAIR_ROUNDS):
            path = self.quantize(list(float_ops) + refused, calib)
            bad = self._refused_op(path, samples)
            if bad is None:
                return path
            if bad in refused or bad not in self.graph.by_name:
                raise ConversionError(self.edge, f"LiteRT cannot run the int8 model: op {label(bad)} fails even "
                                      "with its inputs kept float.")
            # the op and what it reads, float (an int8 divisor that holds its zero point stays float)
            for n in [bad] + [n for t in self.graph.by_name[bad].inputs if t not in self.graph.constants
                              for n in self.graph.tensor_group(t)]:
                if n not in refused:
                    refused.append(n)
        raise ConversionError(self.edge, f"LiteRT cannot run the int8 model: {len(refused)} ops kept float and one "
                              "still fails.")

    def _refused_op(self, path: Path, samples: list[dict]) -> str | None:
        """The name of the op whose int8 kernel fails on one of ``samples`` (None: the model runs)."""
        interp = interpreter(path)
        runner = interp.get_signature_runner(self.signature)
        details = runner.get_input_details()
        try:
            for feed in samples:
                runner(**{k: _as_input(v, details[k]) for k, v in feed.items()})
            return None
        except (RuntimeError, ValueError) as e:
            m = re.search(r"Node number (\d+) \((\w+)\) failed", str(e))
            if not m:
                first = next((ln for ln in str(e).strip().splitlines() if ln.strip()), type(e).__name__)
                raise ConversionError(self.edge, f"LiteRT cannot run the int8 model: {first[:300]}") from None
            names = {d["index"]: d["name"] for d in interp.get_tensor_details()}
            op = next(d for d in interp._get_ops_details() if d["index"] == int(m.group(1)))
            return "".join(f"{names[o]};" for o in op["outputs"] if o in names)


def _as_input(a: np.ndarray, detail: dict) -> np.ndarray:
    """A float sample as an input takes it: quantized with the input's scale and zero point where the
    model has integer inputs (int8 I/O), else as it is."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype.kind in "iu" and a.dtype.kind == "f" and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(a / scale + zero), info.min, info.max).astype(dtype)
    return a
