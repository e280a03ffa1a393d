"""Serving the champion: the scoring app and its page, batch prediction, the MLflow UI."""
