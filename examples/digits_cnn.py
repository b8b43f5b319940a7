"""A small CNN trained on scikit-learn's digits (8x8 grey images, 10 classes) in a few seconds.

``build()`` returns ``(module, example_inputs)``. Training is seeded and deterministic; the
weights are cached (``$EDGEKIT_CACHE/examples``) and loaded with ``weights_only=True``. It
trains only on the training split of ``edgekit.core.data.digits_split()``: the 450 held-out
samples of the built-in ``digits`` data set are never seen.

    edgekit run examples/digits_cnn.py:build --targets onnx,tflite-int8 --data digits
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

EPOCHS = 30


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 2x2
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def train(epochs: int = EPOCHS) -> DigitsCNN:
    from edgekit.core.data import digits_split

    (x, y), _ = digits_split()
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def build():
    from edgekit.core.artifacts import cache_root

    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    cached = cache_root() / "examples" / f"digits_cnn-{code}.pt"
    model = DigitsCNN()
    if cached.exists():
        model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
    else:
        with torch.inference_mode(False):
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # single-threaded training is bit-for-bit repeatable
            try:
                model = train()
            finally:
                torch.set_num_threads(threads)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part")
        torch.save(model.state_dict(), tmp)
        tmp.replace(cached)
    model.eval()
    return model, {"x": torch.zeros(1, 1, 8, 8)}
