"""ffe.obs."""
