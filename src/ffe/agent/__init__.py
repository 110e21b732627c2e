"""ffe.agent."""
