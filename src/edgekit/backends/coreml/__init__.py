"""The coreml backend: torch.export programs (or traced modules) converted by coremltools to Core ML
``mlprogram`` packages (``.mlpackage``): fp16 or fp32 compute, int8 or k-means palettized weights
(``coremltools.optimize.coreml``), int8 activations calibrated on the user's data (PT2E). Core ML
predicts only on macOS: elsewhere a package is validated against the source's signature (``validate.py``)
and its parity waits for a macOS device. ONNX sources reach it through the ONNX -> PyTorch edge."""
