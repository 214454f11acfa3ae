"""The no-Docker local stack: embedded PostgreSQL, moto S3/SQS, queue worker, API server."""
