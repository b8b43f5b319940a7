"""The digits CNN with a planted int8 trap: channel 5 of its second convolution is scaled up 1000x and
the next convolution reads that channel 1000x weaker. ReLU and max pooling commute with a positive
scale, so the float model computes the same function; but the second convolution's activation now
holds a huge outlier channel, and per-tensor int8 activations crush its 31 other channels.
``edgekit diagnose`` must name that convolution first; the accuracy-aware recipe must keep it float."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

CHANNEL, SCALE = 5, 1000.0
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits_cnn.py"


def build():
    spec = importlib.util.spec_from_file_location("digits_cnn_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model, example = mod.build()
    conv, nxt = model.features[2], model.features[5]
    with torch.no_grad():
        conv.weight[CHANNEL] *= SCALE
        conv.bias[CHANNEL] *= SCALE
        nxt.weight[:, CHANNEL] /= SCALE
    return model.eval(), example
