"""ffe.web."""
