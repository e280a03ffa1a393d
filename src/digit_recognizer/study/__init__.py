"""A study: the whole pipeline over several seeds as DVC experiments, aggregated and
compared, recorded in MLflow, and written into the pages users read."""
