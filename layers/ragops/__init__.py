"""ragops: retrieval-augmented generation on PostgreSQL + pgvector with ONNX models."""

__version__ = "0.1.0"
