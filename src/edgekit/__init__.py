"""edgekit: convert a trained model for the edge, check its parity, benchmark it on the device."""
__version__ = "0.1.0"
