"""The toy runtime inside the runner: numpy only."""
import json
import os

import numpy as np

try:
    from runtime_base import Model, lookup_input
except ImportError:
    from edgekit.runner.runtime_base import Model, lookup_input


class ToyModel(Model):
    runtime = "toyrt"

    def __init__(self, path, threads):
        with open(path) as f:
            data = json.load(f)
        self.version = os.environ.get("TOYRT_GREETING", "no greeting")
        self.input, self.output = data["input"], data["output"]
        self.w = np.asarray(data["w"], np.float32)
        self.b = np.asarray(data["b"], np.float32)

    def input_specs(self):
        return [{"name": self.input, "shape": [None, int(self.w.shape[0])], "dtype": "float32"}]

    def output_names(self):
        return [self.output]

    def prepare(self, feed):
        return {self.input: np.ascontiguousarray(lookup_input(feed, self.input), dtype=np.float32)}

    def run(self, feed):
        return {self.output: feed[self.input] @ self.w + self.b}


MODEL = ToyModel
