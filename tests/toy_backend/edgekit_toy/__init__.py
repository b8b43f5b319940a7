"""A toy edgekit backend, shipped as its own package: linear ONNX models as JSON, run by numpy."""
