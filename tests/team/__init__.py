"""Team mode: PostgreSQL, the MLflow server over TLS, a second machine, shared DVC caches."""
