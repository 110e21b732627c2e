"""ffe.tune."""
