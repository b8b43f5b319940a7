"""edgekit.backends.onnx."""
