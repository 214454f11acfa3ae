"""Structured logs, metrics and tracing hooks: one module per concern, no framework in them."""
