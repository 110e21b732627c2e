"""ffe.forecast."""
