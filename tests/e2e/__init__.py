"""End-to-end tests: real dvc repro, registry promotions, servers and a real browser."""
