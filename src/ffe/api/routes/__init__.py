"""The API routes, one module per area; each route is a few lines over the facade."""
