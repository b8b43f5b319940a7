"""edgekit.reports."""
