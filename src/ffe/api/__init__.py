"""ffe.api."""
