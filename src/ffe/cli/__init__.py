"""ffe.cli."""
