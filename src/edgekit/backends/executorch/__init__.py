"""The executorch backend: torch.export programs lowered to ExecuTorch ``.pte`` files with the XNNPACK
delegate (fp32, or int8 from the XNNPACK quantizer through PT2E, calibrated on the user's data), run
by ExecuTorch's Python runtime. ONNX sources reach it through the ONNX -> PyTorch edge."""
