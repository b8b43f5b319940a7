"""Data for calibration and evaluation.

A :class:`Dataset` holds two disjoint splits: ``calib`` (for quantization) and ``eval`` (held
out, for parity and the task metric), each a dict of input name -> array with samples on axis 0,
plus optional ``labels`` for the eval split. Sources: ``.npz``/``.npy`` files, a folder of images,
a Python callable (``file.py:fn`` / ``pkg.mod:fn``), or a built-in name (``digits``, ``sentences``).
Random inputs exist only for smoke runs and are marked ``synthetic``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import DataError, SourceNotFound, UnknownName, did_you_mean
from .signature import TensorSpec

EVAL_FRACTION = 0.25


@dataclass(frozen=True)
class Dataset:
    name: str
    calib: dict
    eval: dict
    labels: np.ndarray | None = None
    task: str = "generic"  # classification | embedding | generic
    synthetic: bool = False
    notes: tuple = field(default_factory=tuple)
    # inputs whose samples are stacked on a new leading axis (fed one by one, without it); the
    # others are concatenated along the model's own axis 0. Decided by ``check_against``.
    stacked: tuple = ()
    split: str = ""  # how the calibration and evaluation samples were told apart (said in every report)
    # what training recipes learn from (never evaluation samples): ``train`` (+ ``train_labels``) when the
    # data has a training split of its own, else the calibration split (+ ``calib_labels``)
    calib_labels: np.ndarray | None = None
    train: dict = field(default_factory=dict)
    train_labels: np.ndarray | None = None

    @property
    def n_calib(self) -> int:
        return _count(self.calib)

    @property
    def n_eval(self) -> int:
        return _count(self.eval)

    def digest(self) -> str:
        h = hashlib.sha256(self.name.encode())
        for split in (self.calib, self.eval):
            for k in sorted(split):
                h.update(k.encode())
                h.update(np.ascontiguousarray(split[k]).tobytes())
        return h.hexdigest()[:16]

    def calib_digest(self) -> str:
        h = hashlib.sha256()
        for k in sorted(self.calib):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.calib[k]).tobytes())
        return h.hexdigest()[:16]

    def training_split(self) -> tuple[dict, np.ndarray | None, str]:
        """(inputs, labels or None, what they are) for training recipes: never evaluation samples."""
        arrays, labels = (self.train, self.train_labels) if self.train else (self.calib, self.calib_labels)
        what = "training split" if self.train else "calibration samples"
        keys = sorted(set(arrays) & set(self.eval))
        held = set(_sample_hashes(self.eval, keys)) if keys else set()
        keep = [i for i, h in enumerate(_sample_hashes(arrays, keys)) if h not in held] if keys else None
        if keep is not None and len(keep) < _count(arrays):  # an evaluation sample is never trained on
            arrays = {k: v[keep] for k, v in arrays.items()}
            labels = None if labels is None else labels[keep]
            what += " less those that are also evaluation samples"
        return arrays, labels, f"{_count(arrays)} samples: the {what} of '{self.name}'"

    def shared_samples(self) -> int:
        """How many evaluation samples also appear, value for value, among the calibration samples:
        the check behind "disjoint" (0 proves it for the data as loaded, whatever the split rule)."""
        keys = sorted(set(self.calib) & set(self.eval))
        if not keys or not self.n_calib:
            return 0
        seen = set(_sample_hashes(self.calib, keys))
        return sum(1 for h in _sample_hashes(self.eval, keys) if h in seen)

    def limit(self, n_calib: int | None = None, n_eval: int | None = None) -> "Dataset":
        calib = {k: v[:n_calib] for k, v in self.calib.items()} if n_calib else self.calib
        ev = {k: v[:n_eval] for k, v in self.eval.items()} if n_eval else self.eval
        labels = self.labels[:n_eval] if (self.labels is not None and n_eval) else self.labels
        cl = self.calib_labels[:n_calib] if (self.calib_labels is not None and n_calib) else self.calib_labels
        return replace(self, calib=calib, eval=ev, labels=labels, calib_labels=cl)

    def bench_sample(self) -> dict:
        """The first held-out sample (still with its sample axis; see ``stacked``)."""
        return {k: v[:1] for k, v in self.eval.items()}

    def rename_inputs(self, names: list[str]) -> "Dataset":
        """Map a single unnamed array (``x``) onto the model's single input name."""
        if set(names) <= set(self.eval) or len(names) != 1 or len(self.eval) != 1:
            return self
        old = next(iter(self.eval))
        train = {names[0]: self.train[old]} if old in self.train else self.train
        return replace(self, calib={names[0]: self.calib[old]}, eval={names[0]: self.eval[old]}, train=train)

    def check_against(self, specs: list[TensorSpec]) -> "Dataset":
        """This data set with its layout decided for the model's inputs (``TensorSpec.layout``):
        raises DataError/ShapeMismatch when an input is missing or fits neither layout."""
        stacked = []
        for spec in specs:
            if spec.name not in self.eval:
                raise DataError(f"data set '{self.name}' has no input '{spec.name}' (it has {sorted(self.eval)}).",
                                "Name the arrays in the data after the model's inputs.")
            kind = spec.layout(self.eval[spec.name], what=f"data '{self.name}' input")
            if spec.name in self.calib and self.calib[spec.name].size:
                ckind = spec.layout(self.calib[spec.name], what=f"calibration data '{self.name}' input")
                if ckind != kind:
                    raise DataError(f"data set '{self.name}': input '{spec.name}' is laid out as '{kind}' in the "
                                    f"evaluation split but '{ckind}' in the calibration split.",
                                    "Give both splits the same layout.")
            if kind == "stacked":
                stacked.append(spec.name)
        return replace(self, stacked=tuple(stacked))

    def describe_layout(self, specs: list[TensorSpec]) -> str:
        """One line saying how each input's array was read (printed, so the choice is never hidden)."""
        total = self.n_calib + self.n_eval
        parts = []
        for spec in specs:
            a = self.eval.get(spec.name)
            if a is not None:
                how = "stacked on a new axis" if spec.name in self.stacked else "along the model's axis 0"
                parts.append(f"{spec.name}: {total} samples {how}, each {list(a.shape[1:])}")
        return "; ".join(parts)


def _count(split: dict) -> int:
    return len(next(iter(split.values()))) if split else 0


def _sample_hashes(split: dict, keys: list[str]) -> list[bytes]:
    """One digest per sample over the named inputs (dtype, shape and bytes of each)."""
    out = []
    for i in range(_count({k: split[k] for k in keys})):
        h = hashlib.blake2b(digest_size=16)
        for k in keys:
            a = np.ascontiguousarray(split[k][i])
            h.update(f"{k}|{a.dtype.str}|{a.shape}".encode())
            h.update(a.tobytes())
        out.append(h.digest())
    return out


def with_calibration(data: Dataset | None, cal: Dataset, spec: str) -> Dataset:
    """``--calib-data``: every sample of ``cal`` (both its splits) calibrates; evaluation stays
    ``data``'s held-out split. Samples of ``cal`` that are also evaluation samples are left out,
    so the two stay disjoint even when both options name the same file."""
    pooled = {k: np.concatenate([cal.calib[k], cal.eval[k]]) for k in cal.calib if k in cal.eval}
    total = _count(pooled)
    if data is None:
        return replace(cal, calib=pooled, calib_labels=None, split=f"calibration and evaluation both from '{spec}' ({cal.split})")
    keys = sorted(set(pooled) & set(data.eval))
    held = set(_sample_hashes(data.eval, keys)) if keys else set()
    keep = [i for i, h in enumerate(_sample_hashes(pooled, keys)) if h not in held] if keys else list(range(total))
    dropped = total - len(keep)
    if not keep:
        raise DataError(f"every sample of the calibration data '{spec}' is also an evaluation sample of "
                        f"'{data.name}': nothing is left to calibrate on.",
                        "Pass calibration data that is not the held-out evaluation data.")
    calib = {k: v[keep] for k, v in pooled.items()}
    less = f", less {dropped} that are also evaluation samples" if dropped else ""
    return replace(data, calib=calib, calib_labels=None, split=f"calibration: the {total} samples of --calib-data '{spec}'{less}; "
                                            f"evaluation: the held-out samples of '{data.name}' ({data.split})")


def validate(ds: Dataset) -> Dataset:
    for split_name, split in (("calibration", ds.calib), ("evaluation", ds.eval)):
        n = None
        for k, v in split.items():
            if not isinstance(v, np.ndarray):
                raise DataError(f"data set '{ds.name}': '{k}' is not an array.")
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                bad = int((~np.isfinite(v)).sum())
                raise DataError(f"data set '{ds.name}' has {bad} NaN/inf values in {split_name} input '{k}'.",
                                "Clean or impute the data before converting.")
            if n is not None and len(v) != n:
                raise DataError(f"data set '{ds.name}': inputs of the {split_name} split have different sample counts.")
            n = len(v)
    if ds.labels is not None and len(ds.labels) != ds.n_eval:
        raise DataError(f"data set '{ds.name}': {len(ds.labels)} labels for {ds.n_eval} evaluation samples.")
    if ds.n_eval == 0:
        raise DataError(f"data set '{ds.name}' has no evaluation samples.")
    return ds


def split_arrays(name: str, arrays: dict, labels=None, task="generic", seed: int = 0) -> Dataset:
    """Disjoint calibration / evaluation split of one pool of samples (seeded)."""
    n = _count(arrays)
    counts = {k: len(v) for k, v in arrays.items()}
    if labels is not None:
        counts["labels"] = len(labels)
    if len(set(counts.values())) > 1:
        raise DataError(f"data set '{name}': arrays have different sample counts on axis 0 ({counts}).",
                        "Give every input (and labels) the same number of samples.")
    if n < 2:
        raise DataError(f"data set '{name}' has {n} sample(s); at least 2 are needed (calibration and evaluation).")
    order = np.random.default_rng(seed).permutation(n)
    n_eval = max(1, int(round(n * EVAL_FRACTION)))
    ev, cal = order[:n_eval], order[n_eval:]
    rule = (f"seeded random split (seed {seed}) of the {n} samples: {100 - round(100 * EVAL_FRACTION)}% "
            f"calibration, {round(100 * EVAL_FRACTION)}% evaluation")
    return Dataset(name, {k: v[cal] for k, v in arrays.items()}, {k: v[ev] for k, v in arrays.items()},
                   None if labels is None else np.asarray(labels)[ev], task, split=rule,
                   calib_labels=None if labels is None else np.asarray(labels)[cal])


# ---------------------------------------------------------------- built-ins

def digits_split():
    """The fixed split of scikit-learn's digits: 1347 train (calibration comes from here), 450 held out.
    The arrays are kept in the cache (by scikit-learn's version): a cached run does not import it."""
    from importlib.metadata import PackageNotFoundError, version

    from .artifacts import cache_root

    try:
        release = version("scikit-learn")
    except PackageNotFoundError:  # installed without its metadata: ask the module itself
        import sklearn

        release = sklearn.__version__
    cached = cache_root() / "datasets" / f"digits-sklearn-{release}.npz"
    if cached.exists():
        with np.load(cached) as z:
            x, y = z["x"], z["y"]
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # N x 1 x 8 x 8 in [0, 1]
        y = d.target.astype(np.int64)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".part.npz")
        np.savez(tmp, x=x, y=y)
        tmp.replace(cached)
    order = np.random.default_rng(0).permutation(len(x))
    test, train = order[:450], order[450:]
    return (x[train], y[train]), (x[test], y[test])


def _digits() -> Dataset:
    (xt, yt), (xe, ye) = digits_split()
    return Dataset("digits", {"x": xt[:300]}, {"x": xe}, ye, "classification",
                   split=f"scikit-learn digits, fixed seeded split: calibration from the {len(xt)}-sample training "
                         f"part, evaluation the {len(xe)} held-out test samples",
                   calib_labels=yt[:300], train={"x": xt}, train_labels=yt)


def _sentences() -> Dataset:
    from .datasets.sentences import load_sentences, training_sentences

    arrays, _ = load_sentences()
    n_cal = 100
    return Dataset("sentences", {k: v[:n_cal] for k, v in arrays.items()}, {k: v[n_cal:] for k, v in arrays.items()},
                   None, "embedding", split=f"the first {n_cal} sentences calibrate, the rest are held out",
                   train=training_sentences())


BUILTINS = {"digits": _digits, "sentences": _sentences}


def random_dataset(specs: list[TensorSpec], n_calib: int = 32, n_eval: int = 32, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)

    def make(n):
        out = {}
        for s in specs:
            shape = (n,) + tuple(d if isinstance(d, int) else 1 for d in s.shape[1:])
            if s.dtype.startswith("float"):
                out[s.name] = rng.standard_normal(shape).astype(s.dtype)
            else:
                out[s.name] = rng.integers(0, 100, size=shape).astype(s.dtype)
        return out

    return Dataset("random", make(n_calib), make(n_eval), None, "generic", synthetic=True,
                   split="random inputs, drawn separately for calibration and evaluation",
                   notes=("RANDOM INPUTS: a smoke run; parity on random data says little about real accuracy",))


# ---------------------------------------------------------------- loading

def load_data(spec: str, input_specs: list[TensorSpec] | None = None) -> Dataset:
    """Resolve ``--data``: a built-in name, an ``.npz``/``.npy`` file, an image folder, or a callable."""
    if spec in BUILTINS:
        ds = BUILTINS[spec]()
    elif spec == "random":
        if not input_specs:
            raise DataError("random data needs the model's input signature.", "Pass --input NAME:SHAPE:DTYPE.")
        ds = random_dataset(input_specs)
    elif ":" in spec and not Path(spec).exists() and not spec.endswith((".npz", ".npy")):
        ds = _from_callable(spec)
    else:
        path = Path(spec)
        if not path.exists():
            if "/" not in spec and "." not in spec:
                raise UnknownName(f"Unknown data set '{spec}'.",
                                  did_you_mean(spec, list(BUILTINS) + ["random"]) or
                                  f"Built-ins: {', '.join(BUILTINS)}; or pass a .npz/.npy file or an image folder.")
            raise SourceNotFound(f"Data file '{spec}' does not exist.", "Check the path.")
        if path.is_dir():
            from .datasets.images import from_images

            ds = from_images(path, input_specs)
        elif path.suffix == ".npz":
            ds = _from_npz(path)
        elif path.suffix == ".npy":
            arr = _np_load(path)
            if not isinstance(arr, np.ndarray) or arr.ndim == 0:
                raise DataError(f"Data file '{path}' does not hold one array of samples.",
                                "Write it with numpy.save (samples on axis 0), or use .npz for several inputs.")
            ds = split_arrays(path.stem, {"x": arr})
        else:
            raise DataError(f"Data file '{spec}' is neither .npz, .npy nor a folder of images.")
    if input_specs:
        ds = ds.rename_inputs([s.name for s in input_specs])
    if not ds.split:
        ds = replace(ds, split=f"as '{spec}' gave them")
    return validate(ds)


def _unreadable(path: Path, e: Exception, key: str | None = None) -> DataError:
    text = str(e)
    if "Object arrays" in text:
        why = "it holds Python objects (pickled), which edgekit never loads"
    elif "pickle" in text.lower():
        why = "it is not a numpy .npy/.npz file (numpy could only try to unpickle it, which edgekit never does)"
    else:
        why = " ".join((text.strip().splitlines() or [type(e).__name__])[0].split())[:200].rstrip(".")
    where = f"array '{key}' of data file '{path}'" if key else f"data file '{path}'"
    return DataError(f"Cannot read {where}: {why}.",
                     "Write numeric arrays with numpy.save/numpy.savez; the file may be truncated.")


def _np_load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise _unreadable(path, e) from None


def _from_npz(path: Path) -> Dataset:
    """Keys: input arrays by name; optional ``labels``; optional ``calib__NAME`` arrays for an explicit split."""
    z = _np_load(path)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"Data file '{path}' is a single .npy array, not an .npz archive.",
                        "Rename it to .npy, or write it with numpy.savez(x=...).")
    arrays = {}
    with z:
        for k in z.files:
            try:
                arrays[k] = z[k]
            except Exception as e:  # a member that is not a readable .npy (pickled objects, damage)
                raise _unreadable(path, e, k) from None
    if not arrays:
        raise DataError(f"Data file '{path}' holds no arrays.", "Write the inputs with numpy.savez(x=...).")
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray):
            raise DataError(f"Member '{k}' of data file '{path}' is not a numpy array (.npy).",
                            "Write the file with numpy.savez; it may be damaged.")
        if v.ndim == 0:
            raise DataError(f"Array '{k}' of data file '{path}' is a scalar, not a batch of samples.",
                            "Put the samples on axis 0.")
    labels = arrays.pop("labels", None)
    calib = {k[len("calib__"):]: arrays.pop(k) for k in list(arrays) if k.startswith("calib__")}
    task = "classification" if labels is not None and labels.dtype.kind in "iu" else "generic"
    if calib:
        return Dataset(path.stem, calib, arrays, labels, task, calib_labels=calib.pop("labels", None),
                       split=f"explicit: the calib__ arrays of '{path.name}' calibrate, its other arrays evaluate")
    return split_arrays(path.stem, arrays, labels, task)


def _from_callable(spec: str) -> Dataset:
    from .sources import import_callable

    fn = import_callable(spec)
    result = fn()
    if isinstance(result, Dataset):
        return result
    if isinstance(result, dict):
        labels = result.pop("labels", None)
        return split_arrays(spec, {k: np.asarray(v) for k, v in result.items()}, labels,
                            "classification" if labels is not None else "generic")
    return split_arrays(spec, {"x": np.asarray(result)})
