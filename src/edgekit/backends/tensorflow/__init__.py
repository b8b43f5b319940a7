"""edgekit.backends.tensorflow."""
