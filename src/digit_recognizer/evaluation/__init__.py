"""Scoring models: scores, charts, the same evaluation for every model, the comparison."""
