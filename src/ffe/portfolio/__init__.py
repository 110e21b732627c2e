"""ffe.portfolio."""
