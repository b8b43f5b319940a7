"""The tvm backend: Apache TVM (Relax). ONNX graphs and torch.export programs imported into Relax,
compiled for this host, cross-compiled for ARM64 boards, or tuned with MetaSchedule by measuring
on the device that will run them; run by the TVM runtime's Relax VM, here, on a device, or on a
TVM RPC server (the ``tvm-rpc`` device kind)."""
