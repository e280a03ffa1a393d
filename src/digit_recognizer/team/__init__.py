"""Team mode: PostgreSQL, the authenticated MLflow server over TLS, users and their settings."""
