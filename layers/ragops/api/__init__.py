"""The HTTP API: Litestar apps for the query and health functions."""
