"""edgekit.backends.tflite."""
