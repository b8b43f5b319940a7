"""edgekit.backends.torch."""
