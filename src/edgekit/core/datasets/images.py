"""A folder of images as a data set (optionally one subfolder per class, which gives labels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import Dataset, split_arrays


def from_images(folder: Path, input_specs) -> Dataset:
    """A folder of images (optionally one subfolder per class, which gives labels)."""
    try:
        from PIL import Image
    except ImportError:
        from ..errors import MissingExtra

        raise MissingExtra("PIL", "images", "Reading a folder of images") from None
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    if not files:
        raise DataError(f"Folder '{folder}' holds no .png/.jpg/.bmp images.")
    spec = input_specs[0] if input_specs else None
    shape = spec.shape if spec else (None, 3, 224, 224)
    nchw = shape[1] in (1, 3)
    c, h, w = (shape[1], shape[2], shape[3]) if nchw else (shape[3], shape[1], shape[2])
    imgs = []
    for f in files:
        im = Image.open(f).convert("L" if c == 1 else "RGB").resize((int(w), int(h)))
        a = np.asarray(im, dtype=np.float32) / 255.0
        a = a[:, :, None] if a.ndim == 2 else a
        imgs.append(a.transpose(2, 0, 1) if nchw else a)
    classes = sorted({f.parent.name for f in files})
    labels = np.array([classes.index(f.parent.name) for f in files]) if len(classes) > 1 else None
    name = spec.name if spec else "x"
    return split_arrays(folder.name, {name: np.stack(imgs)}, labels,
                        "classification" if labels is not None else "generic")
