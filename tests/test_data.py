import numpy as np
import pytest

from edgekit.core.data import load_data, split_arrays
from edgekit.core.errors import DataError, UnknownName
from edgekit.core.signature import TensorSpec


def test_npz_with_labels_is_split_disjointly(tmp_path):
    x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    y = np.arange(100) % 3
    np.savez(tmp_path / "d.npz", x=x, labels=y)
    ds = load_data(str(tmp_path / "d.npz"))
    assert ds.n_calib + ds.n_eval == 100 and ds.n_eval == 25
    assert ds.task == "classification" and len(ds.labels) == 25
    cal = {r.tobytes() for r in ds.calib["x"]}
    assert not cal & {r.tobytes() for r in ds.eval["x"]}
    # labels follow their samples
    idx = [int(np.where((x == row).all(1))[0][0]) for row in ds.eval["x"]]
    assert (ds.labels == y[idx]).all()


def test_npz_explicit_calibration_split_and_renaming(tmp_path):
    np.savez(tmp_path / "d.npz", calib__data=np.ones((7, 2), np.float32), data=np.zeros((5, 2), np.float32))
    ds = load_data(str(tmp_path / "d.npz"), [TensorSpec("input", (1, 2))])
    assert ds.n_calib == 7 and ds.n_eval == 5 and set(ds.eval) == {"input"}


def test_npy_callable_and_random(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 3), np.float32))
    assert load_data(str(tmp_path / "a.npy")).n_eval == 2
    (tmp_path / "mk.py").write_text("import numpy as np\ndef data():\n    return {'x': np.ones((12, 2), 'float32'),"
                                    " 'labels': np.arange(12) % 2}\n")
    ds = load_data(f"{tmp_path / 'mk.py'}:data")
    assert ds.n_eval == 3 and ds.labels is not None
    rnd = load_data("random", [TensorSpec("x", (1, 3), "float32")])
    assert rnd.synthetic and rnd.notes and "RANDOM" in rnd.notes[0]


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = load_data(str(tmp_path / "imgs"), [TensorSpec("img", (1, 3, 8, 8))])
    assert ds.eval["img"].shape[1:] == (3, 8, 8) and ds.eval["img"].dtype == np.float32
    assert ds.n_calib + ds.n_eval == 8 and set(np.unique(ds.labels)) <= {0, 1}
    assert 0 <= ds.eval["img"].min() and ds.eval["img"].max() <= 1


def test_nan_and_unknown_names(tmp_path):
    x = np.zeros((10, 2), np.float32)
    x[3, 1] = np.nan
    np.savez(tmp_path / "n.npz", x=x)
    with pytest.raises(DataError, match="NaN"):
        load_data(str(tmp_path / "n.npz"))
    with pytest.raises(UnknownName, match="Did you mean 'digits'"):
        load_data("digit")


def test_split_needs_two_samples():
    with pytest.raises(DataError, match="at least 2"):
        split_arrays("one", {"x": np.zeros((1, 2))})


def test_digits_builtin_is_held_out_from_training():
    from edgekit.core.data import digits_split

    (xt, _), (xe, ye) = digits_split()
    ds = load_data("digits")
    assert ds.n_eval == 450 and ds.n_calib == 300
    train = {r.tobytes() for r in xt}
    assert all(r.tobytes() in train for r in ds.calib["x"])
    assert (ds.eval["x"] == xe).all() and (ds.labels == ye).all()


def test_every_source_says_how_it_was_split_and_the_splits_are_checked(tmp_path):
    x = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    ds = load_data(str(tmp_path / "d.npz"))
    assert (ds.n_calib, ds.n_eval) == (38, 12)
    assert ds.split == "seeded random split (seed 0) of the 50 samples: 75% calibration, 25% evaluation"
    assert ds.shared_samples() == 0
    np.savez(tmp_path / "e.npz", calib__x=x[:10], x=x[8:20])  # two samples in both: said, not hidden
    ex = load_data(str(tmp_path / "e.npz"))
    assert ex.split.startswith("explicit: the calib__ arrays of 'e.npz'") and ex.shared_samples() == 2
    assert load_data("digits").shared_samples() == 0 and "450 held-out test samples" in load_data("digits").split
    assert "drawn separately" in load_data("random", [TensorSpec("x", (1, 3), "float32")]).split


def test_calib_data_never_takes_evaluation_samples(tmp_path):
    """`--data d.npz --calib-data d.npz`: calibration used to be all 50 samples, the 12 held-out
    ones included, and the report still said "disjoint"."""
    from edgekit.core.data import with_calibration

    x = np.random.default_rng(2).standard_normal((50, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x)
    data, cal = load_data(str(tmp_path / "d.npz")), load_data(str(tmp_path / "d.npz"))
    ds = with_calibration(data, cal, str(tmp_path / "d.npz"))
    assert (ds.n_calib, ds.n_eval) == (38, 12) and ds.shared_samples() == 0
    assert "the 50 samples of --calib-data" in ds.split and "less 12 that are also evaluation samples" in ds.split
    np.savez(tmp_path / "other.npz", x=x[:5] + 100)  # other data: every sample calibrates
    ds = with_calibration(data, load_data(str(tmp_path / "other.npz")), "other.npz")
    assert ds.n_calib == 5 and "less" not in ds.split
