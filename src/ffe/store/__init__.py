"""ffe.store."""
