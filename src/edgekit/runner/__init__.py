"""edgekit.runner.worker."""
