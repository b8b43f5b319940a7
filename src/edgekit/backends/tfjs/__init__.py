"""The TF.js backend: TF.js graph models (model.json + weight shards), the tensorflowjs converter, a
Node.js runner (@tensorflow/tfjs on its WASM backend) and the browser (headless Chromium) as a device."""
